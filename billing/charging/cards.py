"""One card attempt: claim the charge, ask the gateway to charge the saved card, record what it said."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from billing.calendar import BillingCalendar
from billing.charging.customers import ensure_gateway_customer
from billing.charging.leases import (
    LEASE,
    Decline,
    attempt_numbers,
    finish_attempt,
    finish_attempts,
    give_back,
    leased,
    take_lease,
    was_sent,
)
from billing.charging.outcomes import ChargeOutcome
from billing.charging.planning import card_ref
from billing.errors import NotFound
from billing.models import (
    Account,
    AttemptOutcome,
    Charge,
    ChargeStatus,
    Invoice,
    InvoiceStatus,
    Subscription,
)
from billing.ports import Books, CardCharge, CardDeclined, Gateway, GatewayPayment, GatewayRejected
from billing.remote_ip import MISSING_DECLINE
from billing.settlement import (
    ConfirmedPayment,
    lock_charge,
    lock_charges,
    record_failure,
    record_gateway_cancel,
    settle_locked_charges,
)

PRODUCT_NAMES = {"platform": "Mensalidade", "mentorship": "Mentoria"}


@dataclass(frozen=True)
class CardResult:
    """How one card attempt ended, for the job's log and the checkout's answer."""

    charge_id: str
    outcome: ChargeOutcome
    status: str
    decline: Decline | None = None


def describe(invoices: Sequence[Invoice]) -> str:
    months = ", ".join(f"{invoice.period_start:%m/%Y}" for invoice in invoices)
    return f"{PRODUCT_NAMES.get(invoices[0].product, invoices[0].product)} {months}"


def charge_invoices(session: Session, charge: Charge) -> list[Invoice]:
    return list(
        session.scalars(select(Invoice).where(Invoice.id.in_(charge.invoice_ids)).order_by(Invoice.period_start))
    )


def fail(session: Session, charge: Charge, decline: Decline, now: datetime) -> CardResult:
    """The gateway (or regua, lacking what it needs) refused: the charge failed, its attempt says why."""
    record_failure(session, charge.id, decline.reason, now)
    finish_attempt(session, charge, AttemptOutcome.DECLINED, now, decline)
    return CardResult(charge.id, ChargeOutcome.DECLINED, charge.status, decline)


def cancel_unchargeable(charge: Charge) -> None:
    """Paid meanwhile, or in verification: not charged now (and canceled at the gateway if it holds it)."""
    charge.status = ChargeStatus.CANCELED.value
    charge.canceled_reason = ChargeOutcome.NOTHING_TO_CHARGE.value
    charge.gateway_cancel_owed = was_sent(charge)


@dataclass(frozen=True)
class _Payers:
    """What a batch of claims reads at once: the charges' invoices, their accounts, the saved cards."""

    invoices: dict[str, Invoice]
    customers: dict[str, str | None]
    cards: dict[tuple[str, str], tuple[str | None, str | None]]
    attempts: dict[str, int]


def _read_payers(session: Session, charges: Sequence[Charge], *, saved_cards: bool) -> _Payers:
    invoice_ids = sorted({invoice_id for charge in charges for invoice_id in charge.invoice_ids})
    accounts = sorted({charge.account_id for charge in charges})
    invoices = {invoice.id: invoice for invoice in session.scalars(select(Invoice).where(Invoice.id.in_(invoice_ids)))}
    customers = {
        str(account_id): customer
        for account_id, customer in session.execute(
            select(Account.id, Account.gateway_customer_id).where(Account.id.in_(accounts))
        )
    }
    cards: dict[tuple[str, str], tuple[str | None, str | None]] = {}
    if saved_cards:
        saved = select(Subscription.account_id, Subscription.product, Subscription.card_token, Subscription.remote_ip)
        for row in session.execute(saved.where(Subscription.account_id.in_(accounts))):
            cards[(row.account_id, row.product)] = (row.card_token, row.remote_ip)
    return _Payers(invoices, customers, cards, attempt_numbers(session, [charge.id for charge in charges]))


def claim_card_charges(
    session: Session,
    charge_ids: Sequence[str],
    now: datetime,
    calendar: BillingCalendar,
    card_token: str | None = None,
    remote_ip: str | None = None,
) -> dict[str, CardCharge | CardResult]:
    """Lock pending card charges and take their leases; or say of each why it must not be sent now.

    A few statements for the whole batch, whatever its size; a charge id that does not exist is absent.
    The card is the one given (a checkout's, with the customer's IP) or else each subscription's, with the
    IP it was saved with. A card without an IP is never sent: Asaas requires the buyer's IP and the
    server's must not stand in, so it is declined hard here (`remote_ip_missing`), as a stolen card would be.
    """
    locked = lock_charges(session, charge_ids)
    claims: dict[str, CardCharge | CardResult] = {}
    live = []
    for charge_id in dict.fromkeys(charge_ids):
        charge = locked.get(charge_id)
        if charge is None:
            continue
        if charge.method != "card":
            claims[charge_id] = CardResult(charge_id, ChargeOutcome.NOT_A_CARD_CHARGE, charge.status)
        elif charge.status != ChargeStatus.PENDING:
            claims[charge_id] = CardResult(charge_id, ChargeOutcome.NOT_PENDING, charge.status)
        elif charge.gateway_payment_id is not None:
            claims[charge_id] = CardResult(charge_id, ChargeOutcome.AWAITING_GATEWAY, charge.status)
        elif leased(charge, now):
            claims[charge_id] = CardResult(charge_id, ChargeOutcome.IN_FLIGHT, charge.status)
        else:
            live.append(charge)
    payers = _read_payers(session, live, saved_cards=not card_token)
    for charge in live:
        claims[charge.id] = _claim(session, charge, payers, now, calendar, card_token, remote_ip)
    return claims


def _claim(
    session: Session,
    charge: Charge,
    payers: _Payers,
    now: datetime,
    calendar: BillingCalendar,
    card_token: str | None,
    remote_ip: str | None,
) -> CardCharge | CardResult:
    invoices = sorted(
        (payers.invoices[invoice_id] for invoice_id in charge.invoice_ids), key=lambda invoice: invoice.period_start
    )
    if any(invoice.status != InvoiceStatus.OPEN for invoice in invoices):
        cancel_unchargeable(charge)
        return CardResult(charge.id, ChargeOutcome.NOTHING_TO_CHARGE, charge.status)
    customer = payers.customers.get(charge.account_id)
    token, ip = card_token, remote_ip
    if not token:
        token, ip = payers.cards.get((charge.account_id, charge.product), (None, None))
    last_attempt = payers.attempts.get(charge.id, 0)
    if not customer or not token:
        reason = "no_gateway_customer" if not customer else "no_card_token"
        take_lease(session, charge, now, card_ref=card_ref(token), last_attempt=last_attempt)
        return fail(session, charge, Decline(False, reason, f"the account has no {reason[3:]}"), now)
    if not ip:
        take_lease(session, charge, now, card_ref=card_ref(token), last_attempt=last_attempt)
        missing = Decline(True, MISSING_DECLINE, "the card was saved without the customer's IP: not sent")
        return fail(session, charge, missing, now)
    first_contact = not was_sent(charge)
    take_lease(session, charge, now, card_ref=card_ref(token), last_attempt=last_attempt)
    return CardCharge(
        charge_id=charge.id,
        customer_id=customer,
        amount_cents=charge.amount_cents,
        due_date=calendar.local_date(now),
        card_token=token,
        remote_ip=ip,
        installments=charge.installments,
        description=describe(invoices),
        first_contact=first_contact,
    )


def claim_card_charge(
    session: Session,
    charge_id: str,
    now: datetime,
    calendar: BillingCalendar,
    card_token: str | None = None,
    remote_ip: str | None = None,
) -> CardCharge | CardResult:
    """`claim_card_charges` of one charge (NotFound if there is none)."""
    claim = claim_card_charges(session, [charge_id], now, calendar, card_token, remote_ip).get(charge_id)
    if claim is None:
        raise NotFound(f"no charge {charge_id!r}")
    return claim


def _method(payment: GatewayPayment, charge: Charge) -> str:
    return payment.method if payment.method in ("card", "pix", "boleto") else charge.method


def record_gateway_answers(
    session: Session, answers: Sequence[tuple[str, GatewayPayment]], now: datetime, *, release: bool = True
) -> dict[str, CardResult]:
    """What the gateway says of our charges, in the books: settled if paid, canceled if deleted, else waiting.

    The paid ones are settled together (`settle_locked_charges`). Settling here and settling from the
    gateway's webhook are the same payment id, so whichever comes second is a no-op.
    """
    locked = lock_charges(session, [charge_id for charge_id, _ in answers])
    missing = [charge_id for charge_id, _ in answers if charge_id not in locked]
    if missing:
        raise NotFound(f"no charge {missing[0]!r}")
    if release:
        finish_attempts(session, [locked[charge_id] for charge_id, _ in answers], AttemptOutcome.ANSWERED, now)
    results: dict[str, CardResult] = {}
    paid: list[tuple[Charge, ConfirmedPayment]] = []
    for charge_id, payment in answers:
        charge = locked[charge_id]
        charge.gateway_status = payment.status[:40]
        if payment.invoice_url:
            charge.invoice_url = payment.invoice_url[:500]
        if charge.gateway_payment_id is None:
            charge.gateway_payment_id = payment.id
        if payment.is_paid:
            # An installment plan answers with its first installment; the card was authorized for all of it.
            plan = payment.installment_id is not None and charge.installments > 1
            amount = charge.amount_cents if plan else payment.amount_cents
            paid.append((charge, ConfirmedPayment(charge.gateway, payment.id, amount, _method(payment, charge), now)))
        elif payment.state == "canceled":
            record_gateway_cancel(session, charge_id)
            results[charge_id] = CardResult(charge_id, ChargeOutcome.CANCELED_AT_GATEWAY, charge.status)
        else:
            results[charge_id] = CardResult(charge_id, ChargeOutcome.AWAITING_GATEWAY, charge.status)
    for (charge, _), settlement in zip(paid, settle_locked_charges(session, paid, now), strict=True):
        if settlement.already_recorded:
            outcome = ChargeOutcome.ALREADY_RECORDED
        else:
            outcome = ChargeOutcome.SETTLED if settlement.invoices_paid else ChargeOutcome.DUPLICATE
        results[charge.id] = CardResult(charge.id, outcome, charge.status)
    return results


def record_gateway_answer(
    session: Session, charge_id: str, payment: GatewayPayment, now: datetime, *, release: bool = True
) -> CardResult:
    """`record_gateway_answers` of one charge."""
    return record_gateway_answers(session, [(charge_id, payment)], now, release=release)[charge_id]


CALLS_WITHIN = LEASE / 2
"""A batch calls the gateway only this long after its claim: every call then ends well within its lease
(one call, with the client's own retries, takes under LEASE / 2), so no other job can take a claim over
while it is being sent. The claims left are given back unsent, for the next job."""


@dataclass
class _Calls:
    """What the gateway said to each claim of a batch, and the claims it was not asked about."""

    answers: list[tuple[str, GatewayPayment]] = field(default_factory=list)
    refusals: list[tuple[str, Decline, ChargeOutcome]] = field(default_factory=list)
    unclear: str | None = None
    """The claim whose call raised: it may have reached the gateway (its attempt says `unavailable`)."""
    untried: list[CardCharge] = field(default_factory=list)
    error: BaseException | None = None


def _seconds() -> float:
    """Elapsed time for a batch's budget: the machine's monotonic clock (the business clock may stand still)."""
    return time.monotonic()


def _call(gateway: Gateway, claims: Sequence[CardCharge]) -> _Calls:
    calls = _Calls()
    deadline = _seconds() + CALLS_WITHIN.total_seconds()
    for position, claim in enumerate(claims):
        if _seconds() > deadline:
            calls.untried = list(claims[position:])
            break
        try:
            calls.answers.append((claim.charge_id, gateway.charge_card(claim)))
        except CardDeclined as declined:
            decline = Decline(declined.hard, declined.reason, declined.description)
            calls.refusals.append((claim.charge_id, decline, ChargeOutcome.DECLINED))
        except GatewayRejected as rejected:
            refusal = Decline(False, "gateway_rejected", str(rejected))
            calls.refusals.append((claim.charge_id, refusal, ChargeOutcome.REJECTED))
        except BaseException as error:  # no trustworthy answer: this one is unclear, the rest wait for a retry
            calls.error, calls.unclear = error, claim.charge_id
            calls.untried = list(claims[position + 1 :])
            break
    return calls


def _record(session: Session, calls: _Calls, now: datetime) -> dict[str, CardResult]:
    results = record_gateway_answers(session, calls.answers, now) if calls.answers else {}
    for charge_id, decline, outcome in calls.refusals:
        failed = fail(session, lock_charge(session, charge_id), decline, now)
        results[charge_id] = CardResult(charge_id, outcome, failed.status, decline)
    if calls.unclear is not None:
        finish_attempt(session, lock_charge(session, calls.unclear), AttemptOutcome.UNAVAILABLE, now)
    if calls.untried:
        untried = lock_charges(session, [claim.charge_id for claim in calls.untried])
        give_back(session, list(untried.values()), {claim.charge_id for claim in calls.untried if claim.first_contact})
        for charge in untried.values():
            results[charge.id] = CardResult(charge.id, ChargeOutcome.NOT_SENT, charge.status)
    return results


def make_card_charges(
    books: Books,
    gateway: Gateway,
    charge_ids: Sequence[str],
    *,
    card_token: str | None = None,
    remote_ip: str | None = None,
) -> list[CardResult]:
    """Charge pending card charges, each once: one claim for them all, one gateway call each, one record.

    `card_token` and `remote_ip` come together (a checkout's card); without them, each subscription's card.
    Accounts without a gateway customer get one first (looked up by the account id, so never two). A
    decline fails its charge (its class kept on the attempt for the planner). When the gateway stops
    answering, what it said so far is recorded, the rest of the batch is given back unsent, and the error
    is raised for the caller to retry (the client finds a charge it made by our id); claims the batch had
    no time left to send are given back too, as `not_sent`, for the caller to queue again. Safe to run twice.
    """
    ids = list(dict.fromkeys(charge_ids))
    no_customer = (
        select(Charge.account_id)
        .join(Account, Account.id == Charge.account_id)
        .where(Charge.id.in_(ids), Account.gateway_customer_id.is_(None))
        .distinct()
    )
    for account_id in books.read(lambda session: list(session.scalars(no_customer))):
        ensure_gateway_customer(books, gateway, account_id)
    claims = books.transaction(
        lambda session: claim_card_charges(session, ids, books.clock.now(), books.calendar, card_token, remote_ip)
    )
    calls = _call(gateway, [claim for claim in claims.values() if isinstance(claim, CardCharge)])
    results = {charge_id: claim for charge_id, claim in claims.items() if isinstance(claim, CardResult)}
    if calls.answers or calls.refusals or calls.unclear or calls.untried:
        results |= books.transaction(lambda session: _record(session, calls, books.clock.now()))
    if calls.error is not None:
        raise calls.error
    return [results[charge_id] for charge_id in ids if charge_id in results]


def make_card_charge(
    books: Books, gateway: Gateway, charge_id: str, *, card_token: str | None = None, remote_ip: str | None = None
) -> CardResult:
    """`make_card_charges` of one charge (NotFound if there is none)."""
    results = make_card_charges(books, gateway, [charge_id], card_token=card_token, remote_ip=remote_ip)
    if not results:
        raise NotFound(f"no charge {charge_id!r}")
    return results[0]
