"""What charging owes the gateway after the books moved: refunds to give back, superseded charges to cancel."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from billing.charging.leases import was_sent
from billing.charging.outcomes import ChargeOutcome
from billing.models import Charge, ChargeStatus, Payment, Refund, RefundStatus
from billing.money import json_cents
from billing.ports import Books, Gateway, GatewayPayment, GatewayRejected, PaymentNotFound
from billing.refund_progress import DONE, follow
from billing.refunds import REFUNDABLE_GATEWAYS, record_refund
from billing.settlement import lock_charge

log = logging.getLogger("regua.charging")

REFUND_CLAIM = timedelta(minutes=5)
REFUND_WAIT = timedelta(hours=1)
"""How long a refund the gateway accepted but has not finished (or refused) waits before it is asked again."""


def gateway_refund_key(payment_id: str, position: int) -> str:
    """The key of the `position`-th refund (from 1) a gateway lists on a payment: each recorded once, at its amount."""
    return f"{payment_id}:refund{position}"


def owed_refunds(session: Session, now: datetime) -> list[str]:
    """Refunds a gateway can make for regua (Asaas payments, not card plans in installments) to send or follow:
    owed and never denied, or sent and not done yet; not claimed."""
    return list(
        session.scalars(
            select(Refund.id)
            .join(Charge, Charge.id == Refund.charge_id)
            .join(Payment, Payment.id == Refund.payment_id)
            .where(
                ((Refund.status == RefundStatus.OWED.value) & Refund.denied_at.is_(None))
                | (Refund.status == RefundStatus.PENDING.value),
                Payment.gateway.in_(REFUNDABLE_GATEWAYS),
                Charge.installments == 1,
                (Refund.claimed_until.is_(None)) | (Refund.claimed_until <= now),
            )
            .order_by(Refund.created_at, Refund.id)
        )
    )


@dataclass(frozen=True)
class _RefundClaim:
    charge_id: str
    gateway: str
    gateway_payment_id: str
    amount_cents: int
    whole: bool


def _claim_refund(session: Session, refund_id: str, now: datetime) -> _RefundClaim | None:
    charge_id = session.scalar(select(Refund.charge_id).where(Refund.id == refund_id))
    if charge_id is None:
        return None
    lock_charge(session, charge_id)
    refund = session.get(Refund, refund_id, with_for_update=True)
    assert refund is not None
    payment = session.get(Payment, refund.payment_id) if refund.payment_id else None
    if payment is None or refund.status not in (RefundStatus.OWED, RefundStatus.PENDING) or refund.denied_at:
        return None
    if refund.claimed_until is not None and refund.claimed_until > now:
        return None
    refund.claimed_until = now + REFUND_CLAIM
    return _RefundClaim(
        charge_id,
        payment.gateway,
        payment.gateway_payment_id,
        refund.amount_cents,
        refund.amount_cents >= payment.amount_cents,
    )


@dataclass(frozen=True)
class ListedRefund:
    amount_cents: int
    status: str
    """The gateway's own word for it; a refund listed without one is taken as DONE (older answers)."""


def listed_refunds(payment: GatewayPayment) -> list[ListedRefund]:
    """The refunds the gateway lists on a payment, in its order (what its webhooks read too)."""
    items = payment.raw.get("refunds")
    if not isinstance(items, list):
        return []
    return [
        ListedRefund(json_cents(item.get("value")), str(item.get("status") or DONE))
        for item in items
        if isinstance(item, dict)
    ]


def send_refund(books: Books, gateway: Gateway, refund_id: str) -> ChargeOutcome:
    """Give an owed refund back through the gateway, once, and follow it until the gateway says DONE.

    The payment is fetched first, so a refund whose answer was lost (or that is already on its way) is
    followed, not sent again. Only a refund the gateway lists as DONE is recorded as money back, under
    the key the webhook path derives from the gateway's list, so the PAYMENT_REFUNDED that follows finds
    it recorded; one in progress is `pending`; one the gateway denied is owed again and left to a person.
    """
    claim = books.transaction(lambda session: _claim_refund(session, refund_id, books.clock.now()))
    if claim is None:
        return ChargeOutcome.NOT_OWED
    try:
        current = gateway.get_payment(claim.gateway_payment_id)
        listed = listed_refunds(current)
        if current.state == "paid" and claim.amount_cents not in [item.amount_cents for item in listed]:
            answer = gateway.refund(
                claim.gateway_payment_id,
                None if claim.whole else claim.amount_cents,
                description="Pagamento em duplicidade",
            )
            current = (
                gateway.get_payment(claim.gateway_payment_id) if not answer.raw else _with_raw(current, answer.raw)
            )
            listed = listed_refunds(current)
    except GatewayRejected as rejected:
        why = str(rejected)
        books.transaction(lambda session: _hold(session, refund_id, books.clock.now(), why))
        return ChargeOutcome.REFUSED
    ours = [position for position, item in enumerate(listed, start=1) if item.amount_cents == claim.amount_cents]
    done = [position for position in ours if listed[position - 1].status.upper() == DONE]
    if done:
        books.transaction(
            lambda session: record_refund(
                session,
                claim.charge_id,
                claim.gateway,
                claim.gateway_payment_id,
                gateway_refund_key(current.id, max(done)),
                claim.amount_cents,
                books.clock.now(),
                books.clock.now(),
            )
        )
        return ChargeOutcome.REFUNDED
    if ours:
        status = listed[max(ours) - 1].status

        def follow_it(session: Session) -> bool:
            refund = session.get(Refund, refund_id, with_for_update=True)
            assert refund is not None
            follow(refund, status, books.clock.now())
            refund.claimed_until = None if refund.denied_at else books.clock.now() + REFUND_WAIT
            return refund.denied_at is not None

        denied = books.transaction(follow_it)
        return ChargeOutcome.REFUSED if denied else ChargeOutcome.REQUESTED
    # Not listed at all (a payment not captured yet, REFUND_REQUESTED without its list): asked again later.
    books.transaction(lambda session: _hold(session, refund_id, books.clock.now(), current.status))
    return ChargeOutcome.REQUESTED


def _with_raw(payment: GatewayPayment, raw: object) -> GatewayPayment:
    return replace(payment, raw=dict(raw)) if isinstance(raw, dict) else payment


def _hold(session: Session, refund_id: str, now: datetime, why: str) -> None:
    refund = session.get(Refund, refund_id, with_for_update=True)
    if refund is not None:
        refund.claimed_until, refund.gateway_note = now + REFUND_WAIT, why[:200]


def owed_gateway_cancels(session: Session) -> list[str]:
    """Charges canceled in the books (another charge paid their invoices) still to cancel at the gateway."""
    return list(
        session.scalars(
            select(Charge.id).where(Charge.status == ChargeStatus.CANCELED.value, Charge.gateway_cancel_owed.is_(True))
        )
    )


def cancel_at_gateway(books: Books, gateway: Gateway, charge_id: str) -> ChargeOutcome:
    """Cancel a superseded charge at its gateway so it can no longer be paid; then it is owed no more.

    Too late (the customer paid it meanwhile) is an answer too: that payment arrives as a duplicate
    and is refunded.
    """
    charge = books.read(lambda session: session.get(Charge, charge_id))
    if charge is None or charge.status != ChargeStatus.CANCELED or not charge.gateway_cancel_owed:
        return ChargeOutcome.NOT_OWED
    note = ""
    if charge.gateway not in REFUNDABLE_GATEWAYS:
        result = ChargeOutcome.NOT_SUPPORTED
    elif not was_sent(charge):
        result = ChargeOutcome.NEVER_SENT
    else:
        result = ChargeOutcome.CANCELED
        try:
            payment_id = charge.gateway_payment_id
            if payment_id is None:
                found = gateway.find_by_reference(charge_id)
                payment_id = found.id if found is not None else None
            if payment_id is None:
                result = ChargeOutcome.NOT_AT_GATEWAY
            else:
                gateway.cancel(payment_id)
        except PaymentNotFound:
            result = ChargeOutcome.NOT_AT_GATEWAY
        except GatewayRejected as rejected:
            result, note = ChargeOutcome.REFUSED, f": {rejected}"

    def settle_cancel(session: Session) -> None:
        locked = lock_charge(session, charge_id)
        locked.gateway_cancel_owed = False
        locked.gateway_cancel_result = f"{result.value}{note}"[:200]
        locked.gateway_canceled_at = books.clock.now()

    books.transaction(settle_cancel)
    return result


def run_follow_ups(books: Books, gateway: Gateway) -> Counter[str]:
    """Send every owed refund and cancel every superseded charge at the gateway; each safe to repeat."""
    counts: Counter[str] = Counter()
    refunds = books.read(lambda session: owed_refunds(session, books.clock.now()))
    cancels = books.read(owed_gateway_cancels)
    for refund_id in refunds:
        try:
            counts[f"refund_{send_refund(books, gateway, refund_id)}"] += 1
        except Exception as error:
            log.warning("refund %s not sent: %s: %s", refund_id, type(error).__name__, error)
            counts["refund_error"] += 1
    for charge_id in cancels:
        try:
            counts[f"cancel_{cancel_at_gateway(books, gateway, charge_id)}"] += 1
        except Exception as error:
            log.warning("charge %s not canceled at the gateway: %s: %s", charge_id, type(error).__name__, error)
            counts["cancel_error"] += 1
    return counts
