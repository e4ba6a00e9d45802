"""One card attempt: claim the charge, ask the gateway to charge the saved card, record what it said."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from billing.calendar import BillingCalendar
from billing.charging.customers import ensure_gateway_customer
from billing.charging.leases import Decline, finish_attempt, leased, release_lease, take_lease, was_sent
from billing.charging.outcomes import ChargeOutcome
from billing.charging.planning import card_ref
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
    record_failure,
    record_gateway_cancel,
    settle_locked_charge,
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


def claim_card_charge(
    session: Session,
    charge_id: str,
    now: datetime,
    calendar: BillingCalendar,
    card_token: str | None = None,
    remote_ip: str | None = None,
) -> CardCharge | CardResult:
    """Lock a pending card charge and take its lease; or say why it must not be sent now.

    The card is the one given (a checkout's, with the customer's IP) or else the subscription's, with the IP
    it was saved with. A card without an IP is never sent: Asaas requires the buyer's IP and the server's
    must not stand in, so it is declined hard here (`remote_ip_missing`), as a stolen card would be.
    """
    charge = lock_charge(session, charge_id)
    if charge.method != "card":
        return CardResult(charge_id, ChargeOutcome.NOT_A_CARD_CHARGE, charge.status)
    if charge.status != ChargeStatus.PENDING:
        return CardResult(charge_id, ChargeOutcome.NOT_PENDING, charge.status)
    if charge.gateway_payment_id is not None:
        return CardResult(charge_id, ChargeOutcome.AWAITING_GATEWAY, charge.status)
    if leased(charge, now):
        return CardResult(charge_id, ChargeOutcome.IN_FLIGHT, charge.status)
    invoices = charge_invoices(session, charge)
    if any(invoice.status != InvoiceStatus.OPEN for invoice in invoices):
        cancel_unchargeable(charge)
        return CardResult(charge_id, ChargeOutcome.NOTHING_TO_CHARGE, charge.status)
    account = session.get(Account, charge.account_id)
    assert account is not None
    token, ip = card_token, remote_ip
    if not token:
        saved = session.execute(
            select(Subscription.card_token, Subscription.remote_ip).where(
                Subscription.account_id == charge.account_id, Subscription.product == charge.product
            )
        ).first()
        token, ip = (saved.card_token, saved.remote_ip) if saved is not None else (None, None)
    if not account.gateway_customer_id or not token:
        reason = "no_gateway_customer" if not account.gateway_customer_id else "no_card_token"
        take_lease(session, charge, now, card_ref=card_ref(token))
        return fail(session, charge, Decline(False, reason, f"the account has no {reason[3:]}"), now)
    if not ip:
        take_lease(session, charge, now, card_ref=card_ref(token))
        missing = Decline(True, MISSING_DECLINE, "the card was saved without the customer's IP: not sent")
        return fail(session, charge, missing, now)
    first_contact = not was_sent(charge)
    take_lease(session, charge, now, card_ref=card_ref(token))
    return CardCharge(
        charge_id=charge.id,
        customer_id=account.gateway_customer_id,
        amount_cents=charge.amount_cents,
        due_date=calendar.local_date(now),
        card_token=token,
        remote_ip=ip,
        installments=charge.installments,
        description=describe(invoices),
        first_contact=first_contact,
    )


def _method(payment: GatewayPayment, charge: Charge) -> str:
    return payment.method if payment.method in ("card", "pix", "boleto") else charge.method


def record_gateway_answer(
    session: Session, charge_id: str, payment: GatewayPayment, now: datetime, *, release: bool = True
) -> CardResult:
    """What the gateway says of our charge, in the books: settled if paid, canceled if deleted, else waiting.

    Settling here and settling from the gateway's webhook are the same payment id, so whichever
    comes second is a no-op.
    """
    charge = lock_charge(session, charge_id)
    charge.gateway_status = payment.status[:40]
    if payment.invoice_url:
        charge.invoice_url = payment.invoice_url[:500]
    if release:
        finish_attempt(session, charge, AttemptOutcome.ANSWERED, now)
    if charge.gateway_payment_id is None:
        charge.gateway_payment_id = payment.id
    if payment.is_paid:
        # An installment plan answers with its first installment; the card was authorized for all of it.
        plan = payment.installment_id is not None and charge.installments > 1
        amount = charge.amount_cents if plan else payment.amount_cents
        confirmed = ConfirmedPayment(charge.gateway, payment.id, amount, _method(payment, charge), now)
        settlement = settle_locked_charge(session, charge, confirmed, now)
        if settlement.already_recorded:
            outcome = ChargeOutcome.ALREADY_RECORDED
        else:
            outcome = ChargeOutcome.SETTLED if settlement.invoices_paid else ChargeOutcome.DUPLICATE
        return CardResult(charge_id, outcome, charge.status)
    if payment.state == "canceled":
        record_gateway_cancel(session, charge_id)
        return CardResult(charge_id, ChargeOutcome.CANCELED_AT_GATEWAY, charge.status)
    return CardResult(charge_id, ChargeOutcome.AWAITING_GATEWAY, charge.status)


def make_card_charge(
    books: Books, gateway: Gateway, charge_id: str, *, card_token: str | None = None, remote_ip: str | None = None
) -> CardResult:
    """Charge a pending card charge once: claim, ask the gateway, record. Safe to run twice.

    `card_token` and `remote_ip` come together (a checkout's card); without them, the subscription's card.

    An account without a gateway customer gets one first (looked up by the account id, so never two).
    A decline fails the charge (its class kept on the attempt for the planner); GatewayUnavailable is
    raised with the lease released, for the caller to retry (the client finds a charge it made by our id).
    """
    payer = select(Charge.account_id, Account.gateway_customer_id).join(Account, Account.id == Charge.account_id)
    found = books.read(lambda session: session.execute(payer.where(Charge.id == charge_id)).first())
    if found is not None and found.gateway_customer_id is None:
        ensure_gateway_customer(books, gateway, found.account_id)
    claim = books.transaction(
        lambda session: claim_card_charge(session, charge_id, books.clock.now(), books.calendar, card_token, remote_ip)
    )
    if isinstance(claim, CardResult):
        return claim
    try:
        payment = gateway.charge_card(claim)
    except CardDeclined as declined:
        decline = Decline(declined.hard, declined.reason, declined.description)
        return books.transaction(lambda session: fail(session, lock_charge(session, charge_id), decline, _now(books)))
    except GatewayRejected as rejected:
        refusal = Decline(False, "gateway_rejected", str(rejected))

        def reject(session: Session) -> CardResult:
            failed = fail(session, lock_charge(session, charge_id), refusal, _now(books))
            return CardResult(charge_id, ChargeOutcome.REJECTED, failed.status, refusal)

        return books.transaction(reject)
    except BaseException:
        books.transaction(lambda session: release_lease(session, charge_id, _now(books)))
        raise
    return books.transaction(lambda session: record_gateway_answer(session, charge_id, payment, _now(books)))


def _now(books: Books) -> datetime:
    return books.clock.now()
