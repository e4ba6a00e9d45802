"""Asking the gateway again about charges still pending an hour late: a missed webhook never leaves a paying
customer blocked (rule 3.8)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from billing.charging.cards import make_card_charge, record_gateway_answer
from billing.charging.leases import leased, was_sent
from billing.charging.manual import issue_manual_charge
from billing.charging.outcomes import ChargeOutcome
from billing.models import Charge, ChargeSource, ChargeStatus
from billing.ports import Books, Gateway, PaymentNotFound
from billing.settlement import record_failure

RECHECK_AFTER = timedelta(hours=1)
RECHECK_FOR = timedelta(days=35)
RECHECK_BATCH = 1000


@dataclass
class RecheckPlan:
    requeue: list[str]
    """Auto-debit charges never sent: their job was lost (a broker outage). Queued again."""
    ask: list[str]
    """Charges the gateway holds, or may hold: asked what became of them."""
    issue: list[str] = field(default_factory=list)
    """PIX and boleto charges of issued invoices still without codes (job lost, gateway down): issued again."""


def charges_to_recheck(session: Session, now: datetime) -> RecheckPlan:
    """Charges still pending an hour after they were made, each at most once an hour (rule 3.8).

    Rows another transaction holds are skipped (the next pass sees them).
    """
    last = func.coalesce(Charge.rechecked_at, Charge.sent_at, Charge.created_at)
    chosen = list(
        session.scalars(
            select(Charge.id)
            .where(
                Charge.status == ChargeStatus.PENDING.value,
                Charge.created_at <= now - RECHECK_AFTER,
                Charge.created_at >= now - RECHECK_FOR,
                (Charge.lease_until.is_(None)) | (Charge.lease_until <= now),
                last <= now - RECHECK_AFTER,
            )
            .order_by(last, Charge.id)
            .limit(RECHECK_BATCH)
        )
    )
    plan = RecheckPlan([], [])
    if not chosen:
        return plan
    for charge in session.scalars(
        select(Charge)
        .where(Charge.id.in_(chosen), Charge.status == ChargeStatus.PENDING.value)
        .order_by(Charge.id)
        .with_for_update(skip_locked=True)
    ):
        if charge.source == ChargeSource.MANUAL and not charge.has_codes:
            target = plan.issue
        elif was_sent(charge):
            target = plan.ask
        elif charge.source == ChargeSource.AUTO_DEBIT:
            target = plan.requeue
        else:
            continue  # a checkout charge is sent in its own request; one never sent has nothing to ask
        charge.rechecked_at = now
        target.append(charge.id)
    return plan


def recheck_charge(books: Books, gateway: Gateway, charge_id: str) -> ChargeOutcome:
    """Ask the gateway about one pending charge and put its answer in the books."""
    charge = books.read(lambda session: session.get(Charge, charge_id))
    if charge is None or charge.status != ChargeStatus.PENDING:
        return ChargeOutcome.NOT_PENDING
    if leased(charge, books.clock.now()):
        return ChargeOutcome.IN_FLIGHT
    if charge.source == ChargeSource.MANUAL and not charge.has_codes:
        return issue_manual_charge(books, gateway, charge_id)
    if not was_sent(charge):
        if charge.method == "card":
            return make_card_charge(books, gateway, charge_id).outcome
        return ChargeOutcome.NEVER_SENT
    try:
        payment = (
            gateway.get_payment(charge.gateway_payment_id)
            if charge.gateway_payment_id
            else gateway.find_by_reference(charge_id)
        )
    except PaymentNotFound:
        payment = None
    if payment is not None:
        answer = books.transaction(
            lambda session: record_gateway_answer(session, charge_id, payment, books.clock.now(), release=False)
        )
        return answer.outcome
    if charge.method == "card" and charge.source == ChargeSource.AUTO_DEBIT:
        # The gateway never got it (every try failed before reaching it): try again.
        return make_card_charge(books, gateway, charge_id).outcome
    books.transaction(lambda session: record_failure(session, charge_id, "not_at_gateway", books.clock.now()))
    return ChargeOutcome.NOT_AT_GATEWAY
