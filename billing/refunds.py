"""Money going back: refunds owed and made (each at its own amount, once), chargebacks, refunds made by hand."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

from sqlalchemy import and_, false, func, or_, select, update
from sqlalchemy.orm import Session

from billing.blocking import reconcile_blocks
from billing.errors import Conflict, NotFound
from billing.installments import keep_covered_months, pay_lost_months
from billing.models import (
    Charge,
    ChargeStatus,
    InstallmentChargeback,
    Invoice,
    InvoiceStatus,
    Payment,
    PaymentStatus,
    Refund,
    RefundReason,
    RefundStatus,
    new_id,
)
from billing.settlement import PaymentNotYetKnown, cancel_other_charges, find_payment, lock_charge, refund_of
from billing.states import Applied

REFUNDABLE_GATEWAYS = ("asaas",)
"""Gateways regua can give money back through (the port's `refund`); every other refund is made by hand."""


def refunded_cents(session: Session, payment_id: str) -> int:
    return int(
        session.scalar(
            select(func.coalesce(func.sum(Refund.amount_cents), 0)).where(
                Refund.payment_id == payment_id, Refund.status == RefundStatus.DONE
            )
        )
        or 0
    )


def settle_refunds(session: Session, payment: Payment) -> None:
    """Once refunds made (with what installments charged back took) cover a payment, it is refunded, and so
    are the invoices it paid."""
    back = refunded_cents(session, payment.id) + payment.chargeback_cents
    if payment.status != PaymentStatus.CONFIRMED or back < payment.amount_cents:
        return
    payment.status = PaymentStatus.REFUNDED.value
    session.execute(
        update(Invoice)
        .where(Invoice.payment_id == payment.id, Invoice.status == InvoiceStatus.PAID)
        .values(status=InvoiceStatus.REFUNDED.value)
    )


def refund_made(
    session: Session, payment: Payment, gateway_refund_id: str, amount_cents: int, at: datetime, now: datetime
) -> Refund:
    """A refund the gateway made, matched to what it refunds by its amount and the payment's own state.

    An owed refund of the same amount is that one, made. Otherwise the refund makes what regua owes back
    of this payment first (oldest first; part of one if it falls short: the rest stays owed), and whatever
    goes beyond what was owed back is a refund of reason `gateway`: money given back from the months the
    payment paid, which stay paid while money is left on them (a partial refund, rule 3.5) and are refunded
    once nothing is. Returns the refund recorded under the gateway's id (the part beyond, if any, is recorded
    under that id with a suffix).
    """
    owed = list(
        session.scalars(
            select(Refund)
            .where(Refund.payment_id == payment.id, Refund.status.in_((RefundStatus.OWED, RefundStatus.PENDING)))
            .order_by(Refund.created_at, Refund.id)
        )
    )
    same = next((refund for refund in owed if refund.amount_cents == amount_cents), None)
    made = [same] if same is not None else _owed_first(payment, owed, amount_cents, now)
    for position, refund in enumerate(made):
        refund.status, refund.refunded_at, refund.claimed_until = RefundStatus.DONE.value, at, None
        refund.gateway_refund_id = gateway_refund_id if position == 0 else _part_id(gateway_refund_id, refund, position)
        session.add(refund)
    session.flush()
    settle_refunds(session, payment)
    return made[0]


def _owed_first(payment: Payment, owed: list[Refund], amount_cents: int, now: datetime) -> list[Refund]:
    """The refunds a gateway refund of another amount makes: those owed, oldest first (part of one, if it falls
    short: the rest of it stays owed), then a `gateway` refund of what goes beyond them."""
    made: list[Refund] = []
    left = amount_cents
    for other in owed:
        if left == 0:
            break
        if other.amount_cents <= left:
            made.append(other)
            left -= other.amount_cents
        else:
            made.append(refund_of(payment, left, other.reason, now))
            other.amount_cents -= left
            left = 0
    if left > 0:
        made.append(refund_of(payment, left, RefundReason.GATEWAY, now))
    return made


def _part_id(gateway_refund_id: str, refund: Refund, position: int) -> str:
    """The id of a further part of one gateway refund, within the column's 100 characters."""
    part = "beyond_owed" if refund.reason == RefundReason.GATEWAY else f"owed{position + 1}"
    whole = f"{gateway_refund_id}:{part}"
    if len(whole) <= 100:
        return whole
    digest = hashlib.sha256(gateway_refund_id.encode()).hexdigest()[:16]
    return f"{gateway_refund_id[: 100 - len(part) - 18]}~{digest}:{part}"


def plan_payment(session: Session, charge: Charge, gateway: str, gateway_payment_id: str) -> Payment | None:
    """The payment an event speaks of; for a card plan in installments, the plan's one payment (its first)."""
    payment = find_payment(session, gateway, gateway_payment_id)
    if payment is None and charge.installments > 1:
        payment = session.scalar(
            select(Payment).where(Payment.charge_id == charge.id).order_by(Payment.paid_at, Payment.id).limit(1)
        )
    return payment


def record_refund(
    session: Session,
    charge_id: str,
    gateway: str,
    gateway_payment_id: str,
    refund_id: str,
    amount_cents: int,
    at: datetime,
    now: datetime,
    *,
    whole: bool = False,
) -> Applied:
    """The gateway gave money back (`whole`: all that was left of the payment; of a card plan's installment,
    that installment's `amount_cents`). Recorded once, at its amount.

    Before the payment's confirmation is known, it is kept as a refund of that gateway payment and
    taken into account when the confirmation arrives.
    """
    charge = lock_charge(session, charge_id)
    if session.scalar(select(Refund.id).where(Refund.gateway_refund_id == refund_id)) is not None:
        return Applied.ALREADY_RECORDED
    payment = plan_payment(session, charge, gateway, gateway_payment_id)
    if payment is None:
        session.add(
            Refund(
                id=new_id("ref"),
                payment_id=None,
                charge_id=charge.id,
                gateway_payment_id=gateway_payment_id,
                account_id=charge.account_id,
                amount_cents=amount_cents,
                reason=RefundReason.GATEWAY.value,
                status=RefundStatus.DONE.value,
                gateway_refund_id=refund_id,
                created_at=now,
                refunded_at=at,
            )
        )
        if charge.status == ChargeStatus.PENDING:
            charge.status = ChargeStatus.REFUNDED.value
        return Applied.REFUND_BEFORE_CONFIRMATION
    if whole:
        left = payment.amount_cents - refunded_cents(session, payment.id) - payment.chargeback_cents
        # An installment's whole is that installment (its own amount), never the rest of the plan.
        amount_cents = min(amount_cents, left) if charge.installments > 1 else left
        if amount_cents <= 0:
            return Applied.ALREADY_RECORDED
    refund_made(session, payment, refund_id, amount_cents, at, now)
    if payment.status == PaymentStatus.REFUNDED and charge.status == ChargeStatus.CONFIRMED:
        charge.status = ChargeStatus.REFUNDED.value
    reconcile_blocks(session, [charge.account_id], now)
    return Applied.REFUNDED if payment.status == PaymentStatus.REFUNDED else Applied.PARTIALLY_REFUNDED


def record_chargeback(
    session: Session,
    charge_id: str,
    gateway: str,
    gateway_payment_id: str,
    now: datetime,
    *,
    amount_cents: int | None = None,
) -> Applied:
    """The customer disputed a payment: it takes back only what that payment still held.

    A refund of it still owed is canceled (the money went back once); the months it paid are open
    again and block by the rules. A duplicate's chargeback reopens nothing: another payment paid them.
    Of a card plan in installments, a chargeback that says its `amount_cents` (the disputed installment's
    own value) takes back that installment alone, and the plan keeps the months it still covers
    (billing.installments); without an amount it takes back the whole plan.
    """
    charge = lock_charge(session, charge_id)
    payment = plan_payment(session, charge, gateway, gateway_payment_id)
    if payment is None:
        raise PaymentNotYetKnown(f"chargeback for {gateway_payment_id} before its confirmation")
    if payment.status == PaymentStatus.CHARGEBACK:
        return Applied.ALREADY_RECORDED
    plan = charge.installments > 1 and payment.status in (PaymentStatus.CONFIRMED, PaymentStatus.DUPLICATE)
    if amount_cents is not None and plan:
        return _installment_chargeback(session, charge, payment, gateway, gateway_payment_id, amount_cents, now)
    take_back(session, payment, PaymentStatus.CHARGEBACK, "the payment was charged back", now)
    reconcile_blocks(session, [charge.account_id], now)
    return Applied.CHARGEBACK


def take_back(session: Session, payment: Payment, status: PaymentStatus, why: str, now: datetime) -> bool:
    """What a payment still held is taken back (a chargeback, a receipt undone): a refund of it still owed is
    canceled (the money goes back once), and the months it paid are open again. Returns whether it paid any
    (a duplicate pays none: another payment paid its months)."""
    session.execute(
        update(Refund)
        .where(Refund.payment_id == payment.id, Refund.status == RefundStatus.OWED)
        .values(status=RefundStatus.CANCELED.value, note=why)
    )
    payment.chargeback_cents = max(0, payment.amount_cents - refunded_cents(session, payment.id))
    payment.charged_back_at = now
    pays_invoices = payment.status == PaymentStatus.CONFIRMED
    payment.status = status.value
    if pays_invoices:
        session.execute(
            update(Invoice)
            .where(Invoice.payment_id == payment.id, Invoice.status == InvoiceStatus.PAID)
            .values(status=InvoiceStatus.OPEN.value, paid_at=None, charge_id=None, payment_id=None)
        )
    return pays_invoices


def _installment_chargeback(
    session: Session,
    charge: Charge,
    payment: Payment,
    gateway: str,
    gateway_payment_id: str,
    amount_cents: int,
    now: datetime,
) -> Applied:
    """One installment of a plan disputed: its amount taken back once, the plan's months fitted to what is left."""
    already = select(InstallmentChargeback.id).where(
        InstallmentChargeback.gateway == gateway, InstallmentChargeback.gateway_payment_id == gateway_payment_id
    )
    if session.scalar(already) is not None:
        return Applied.ALREADY_RECORDED
    left = payment.amount_cents - refunded_cents(session, payment.id) - payment.chargeback_cents
    taken = max(0, min(amount_cents, left))
    session.add(
        InstallmentChargeback(
            id=new_id("icb"),
            payment_id=payment.id,
            gateway=gateway,
            gateway_payment_id=gateway_payment_id,
            amount_cents=taken,
            charged_back_at=now,
        )
    )
    payment.chargeback_cents += taken
    payment.charged_back_at = now
    keep_covered_months(session, payment, now)
    pays = select(Invoice.id).where(Invoice.payment_id == payment.id, Invoice.status == InvoiceStatus.PAID)
    if session.scalar(pays.limit(1)) is None:
        payment.status = PaymentStatus.CHARGEBACK.value
    session.flush()
    reconcile_blocks(session, [charge.account_id], now)
    return Applied.CHARGEBACK


def reverse_installment_chargeback(
    session: Session, charge: Charge, payment: Payment, gateway: str, gateway_payment_id: str, now: datetime
) -> Applied | None:
    """The merchant won the dispute of one installment of a plan: its amount is the plan's again (once), and the
    months the plan lost are paid again as far as it reaches (billing.installments). None when no chargeback of
    that installment is on record: the whole payment's reversal applies."""
    row = session.scalar(
        select(InstallmentChargeback).where(
            InstallmentChargeback.gateway == gateway, InstallmentChargeback.gateway_payment_id == gateway_payment_id
        )
    )
    if row is None:
        return None
    if row.reversed_at is not None:
        return Applied.ALREADY_RECORDED
    row.reversed_at = now
    payment.chargeback_cents -= row.amount_cents
    payment.reinstated_at = now
    repaid = pay_lost_months(session, payment, now)
    pays = select(Invoice.id).where(Invoice.payment_id == payment.id, Invoice.status == InvoiceStatus.PAID)
    if session.scalar(pays.limit(1)) is not None:
        payment.status = PaymentStatus.CONFIRMED.value
    elif payment.status == PaymentStatus.CHARGEBACK:
        payment.status = PaymentStatus.DUPLICATE.value  # its months were paid by others meanwhile: owed back
    session.flush()
    cancel_other_charges(session, charge.id, repaid)
    reconcile_blocks(session, [charge.account_id], now)
    return Applied.CHARGEBACK_REVERSED


STUCK_AFTER = timedelta(days=3)
"""A refund the gateway accepted and has not finished after this long is shown to a person."""


def refunds_by_hand(session: Session, now: datetime | None = None) -> list[Refund]:
    """Refunds a person must see to: owed ones no gateway can make for regua (PIX by the BACEN API, Standard
    Webhooks gateways, card plans in installments), ones the gateway denied, and, given `now`, ones the
    gateway accepted and has not finished for three days. A person makes them and records them done."""
    stuck = Refund.sent_at <= now - STUCK_AFTER if now is not None else false()
    return list(
        session.scalars(
            select(Refund)
            .join(Charge, Charge.id == Refund.charge_id)
            .join(Payment, Payment.id == Refund.payment_id)
            .where(
                or_(
                    and_(
                        Refund.status == RefundStatus.OWED,
                        or_(
                            Payment.gateway.not_in(REFUNDABLE_GATEWAYS),
                            Charge.installments > 1,
                            Refund.denied_at.is_not(None),
                        ),
                    ),
                    and_(Refund.status == RefundStatus.PENDING, stuck),
                )
            )
            .order_by(Refund.created_at, Refund.id)
        )
    )


def mark_refund_done(session: Session, refund_id: str, *, by: str, note: str | None, now: datetime) -> Refund:
    """A person made this owed refund outside regua: recorded done, by whom and when."""
    charge_id = session.scalar(select(Refund.charge_id).where(Refund.id == refund_id))
    if charge_id is None:
        raise NotFound(f"no refund {refund_id!r}")
    lock_charge(session, charge_id)
    refund = session.get(Refund, refund_id, with_for_update=True)
    assert refund is not None
    if refund.status not in (RefundStatus.OWED, RefundStatus.PENDING):
        raise Conflict(f"refund {refund_id} is {refund.status}: only an owed or pending refund can be recorded done")
    refund.status, refund.refunded_at, refund.done_by, refund.note = RefundStatus.DONE.value, now, by, note
    refund.gateway_refund_id = refund.gateway_refund_id or f"manual:{refund.id}"
    session.flush()
    payment = session.get(Payment, refund.payment_id) if refund.payment_id else None
    if payment is not None:
        settle_refunds(session, payment)
    return refund
