"""Money that comes back after it was taken back, or that was never there: chargebacks won, cash receipts undone.

A chargeback (rule 3.5) takes back what a payment held and reopens the months it paid. When the
merchant wins the dispute, the gateway gives the money back: the payment pays again, in period order
and whole months only, the months it paid that are still open; a month some other payment settled
meanwhile is not paid twice, and what the payment holds beyond the months it pays again is owed back
to the customer. A cash receipt the merchant records at the gateway and then undoes is the reverse: the
money never came, the months it paid are open again (and block by rule 3.4), and the gateway's payment
can be paid again, which reinstates it the same way.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from billing.blocking import reconcile_blocks
from billing.models import (
    TAKEN_BACK,
    UNPAID,
    Charge,
    ChargeStatus,
    Invoice,
    InvoiceStatus,
    Payment,
    PaymentStatus,
    Refund,
    RefundReason,
    RefundStatus,
)
from billing.refunds import plan_payment, refunded_cents, reverse_installment_chargeback, take_back
from billing.settlement import PaymentNotYetKnown, cancel_other_charges, find_payment, lock_charge, refund_of
from billing.states import Applied

STILL_GOING_BACK = (RefundStatus.OWED, RefundStatus.PENDING)


def reverse_chargeback(
    session: Session, charge_id: str, gateway: str, gateway_payment_id: str, now: datetime
) -> Applied:
    """The dispute was won: what the chargeback took back is the payment's again (once)."""
    charge = lock_charge(session, charge_id)
    payment = plan_payment(session, charge, gateway, gateway_payment_id)
    if payment is None:
        raise PaymentNotYetKnown(f"chargeback reversal for {gateway_payment_id} before its confirmation")
    installment = reverse_installment_chargeback(session, charge, payment, gateway, gateway_payment_id, now)
    if installment is not None:  # one installment of a card plan: only its amount comes back
        return installment
    if payment.status != PaymentStatus.CHARGEBACK:
        return Applied.ALREADY_RECORDED
    reinstate(session, charge, payment, now)
    return Applied.CHARGEBACK_REVERSED


def undo_cash_receipt(
    session: Session, charge_id: str, gateway: str, gateway_payment_id: str, now: datetime
) -> Applied:
    """A receipt in cash undone at the gateway: the months it paid are open again, nothing is owed back."""
    charge = lock_charge(session, charge_id)
    payment = find_payment(session, gateway, gateway_payment_id)
    if payment is None:
        return Applied.IGNORED  # never recorded: its confirmation, if it comes, finds the payment open again
    if payment.status in TAKEN_BACK or payment.status == PaymentStatus.REFUNDED:
        return Applied.ALREADY_RECORDED
    pays_invoices = take_back(session, payment, PaymentStatus.UNDONE, "the cash receipt was undone", now)
    if pays_invoices and charge.status == ChargeStatus.CONFIRMED:
        # Its months are open again and the gateway's payment can be paid again: the charge is pending. An undone
        # duplicate reopens nothing, and its charge stays as it is (another payment pays its months).
        charge.status, charge.confirmed_at = ChargeStatus.PENDING.value, None
    reconcile_blocks(session, [charge.account_id], now)
    return Applied.UNDONE


def reinstate(
    session: Session, charge: Charge, payment: Payment, now: datetime, *, paid_at: datetime | None = None
) -> None:
    """A payment taken back holds its money again: it pays its still-open months in order, whole months only,
    and what it holds beyond them is owed back (a duplicate when another payment paid one of its months)."""
    kept = payment.amount_cents - refunded_cents(session, payment.id)
    going_back = int(
        session.scalar(
            select(func.coalesce(func.sum(Refund.amount_cents), 0)).where(
                Refund.payment_id == payment.id, Refund.status.in_(STILL_GOING_BACK)
            )
        )
        or 0
    )
    invoices = list(
        session.scalars(
            select(Invoice).where(Invoice.id.in_(payment.invoice_ids)).order_by(Invoice.period_start).with_for_update()
        )
    )
    payment.chargeback_cents, payment.reinstated_at = 0, now
    if paid_at is not None:
        payment.paid_at = paid_at
    left = kept - going_back
    repaid: list[Invoice] = []
    for invoice in invoices:
        if invoice.status in UNPAID and invoice.total_cents <= left:
            repaid.append(invoice)
            left -= invoice.total_cents
    for invoice in repaid:
        invoice.status, invoice.paid_at = InvoiceStatus.PAID.value, payment.paid_at
        invoice.charge_id, invoice.payment_id = payment.charge_id, payment.id
        invoice.verifying_until = invoice.verifying_charge_id = None
    if repaid:
        payment.status, payment.invoice_ids = PaymentStatus.CONFIRMED.value, [invoice.id for invoice in repaid]
    else:
        payment.status = PaymentStatus.DUPLICATE.value
    if left > 0:
        paid_by_another = any(invoice.status == InvoiceStatus.PAID and invoice not in repaid for invoice in invoices)
        reason = RefundReason.DUPLICATE if paid_by_another or not repaid else RefundReason.OVERPAYMENT
        session.add(refund_of(payment, left, reason, now))
    if charge.status in (ChargeStatus.PENDING, ChargeStatus.FAILED, ChargeStatus.CANCELED):
        charge.status, charge.confirmed_at = ChargeStatus.CONFIRMED.value, now
    session.flush()
    cancel_other_charges(session, charge.id, [invoice.id for invoice in repaid])
    reconcile_blocks(session, [charge.account_id], now)


def receive_again(
    session: Session, charge_id: str, gateway: str, gateway_payment_id: str, paid_at: datetime, now: datetime
) -> Applied:
    """The gateway says paid again of a payment regua had taken back: a chargeback won (told by the payment's
    status alone), or a receipt undone and then paid, which is paid at its new instant."""
    charge = lock_charge(session, charge_id)
    payment = find_payment(session, gateway, gateway_payment_id)
    if payment is None or payment.status not in TAKEN_BACK:
        return Applied.ALREADY_RECORDED
    if payment.status == PaymentStatus.CHARGEBACK:
        reinstate(session, charge, payment, now)
        return Applied.CHARGEBACK_REVERSED
    reinstate(session, charge, payment, now, paid_at=paid_at)
    return Applied.SETTLED


def restore_charge(session: Session, charge_id: str) -> Applied:
    """A payment deleted at the gateway was restored there: its charge is open again while its months are, with its
    codes asked for afresh."""
    charge = lock_charge(session, charge_id)
    if charge.status != ChargeStatus.CANCELED or charge.superseded_by is not None:
        return Applied.IGNORED
    statuses = set(session.scalars(select(Invoice.status).where(Invoice.id.in_(charge.invoice_ids))))
    if not statuses or not statuses <= {status.value for status in UNPAID}:
        return Applied.IGNORED  # another payment settled them meanwhile: paying this one would be a duplicate
    charge.status, charge.canceled_reason, charge.gateway_cancel_owed = ChargeStatus.PENDING.value, None, False
    # Fresh codes: the next pass finds the charge pending without them and asks the gateway again (the restored
    # payment, found by our reference), so no PIX code or boleto line of the deleted payment is shown again.
    charge.pix_code = charge.pix_qr = charge.pix_expires_at = None
    charge.boleto_line = charge.boleto_url = charge.boleto_bar_code = None
    return Applied.RESTORED
