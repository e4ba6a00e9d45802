"""Money in: charges opened, payments settled onto invoices, verification, duplicates owed back."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from billing.blocking import BlockChanges, lock_accounts, reconcile_blocks
from billing.errors import Conflict, InvalidInput, NotFound
from billing.models import (
    UNPAID,
    Charge,
    ChargeInvoice,
    ChargeStatus,
    Invoice,
    InvoiceStatus,
    Payment,
    PaymentStatus,
    Refund,
    RefundStatus,
    new_charge_id,
    new_id,
)
from billing.policy import Policy


def open_charge(
    session: Session,
    invoice_ids: Sequence[str],
    method: str,
    now: datetime,
    *,
    idempotency_key: str | None = None,
    installments: int = 1,
    gateway: str = "asaas",
) -> Charge:
    """A pending charge for unpaid invoices of one account and product, for their summed total."""
    if not invoice_ids:
        raise InvalidInput("invoice_ids", "a charge collects at least one invoice")
    invoices = list(session.scalars(select(Invoice).where(Invoice.id.in_(invoice_ids)).order_by(Invoice.period_start)))
    if len(invoices) != len(set(invoice_ids)):
        raise NotFound("some of these invoices do not exist")
    if len({(invoice.account_id, invoice.product) for invoice in invoices}) != 1:
        raise InvalidInput("invoice_ids", "a charge collects invoices of one account and product")
    if any(invoice.status not in UNPAID for invoice in invoices):
        raise Conflict("only open or verifying invoices can be charged")
    charge_id = new_charge_id()
    charge = Charge(
        id=charge_id,
        account_id=invoices[0].account_id,
        product=invoices[0].product,
        method=method,
        amount_cents=sum(invoice.total_cents for invoice in invoices),
        installments=installments,
        status=ChargeStatus.PENDING.value,
        idempotency_key=idempotency_key or charge_id,
        gateway=gateway,
        details={},
        created_at=now,
        invoice_links=[ChargeInvoice(invoice_id=invoice.id) for invoice in invoices],
    )
    session.add(charge)
    session.flush()
    return charge


@dataclass(frozen=True)
class ConfirmedPayment:
    """What a gateway says moved: trusted only after its provider authenticated it."""

    gateway: str
    gateway_payment_id: str
    amount_cents: int
    method: str
    paid_at: datetime


@dataclass
class Settlement:
    charge_id: str
    payment_id: str | None = None
    already_recorded: bool = False
    invoices_paid: list[str] = field(default_factory=list)
    charges_canceled: list[str] = field(default_factory=list)
    refunds_owed: list[str] = field(default_factory=list)
    blocks: BlockChanges = field(default_factory=BlockChanges)


def _locked_charge(session: Session, charge_id: str) -> Charge:
    account_id = session.scalar(select(Charge.account_id).where(Charge.id == charge_id))
    if account_id is None:
        raise NotFound(f"no charge {charge_id!r}")
    lock_accounts(session, [account_id])
    charge = session.scalar(select(Charge).where(Charge.id == charge_id).with_for_update())
    assert charge is not None
    return charge


def lock_charge(session: Session, charge_id: str) -> Charge:
    """The charge, under its account's lock and its own row lock, as settlement takes them (NotFound if none)."""
    return _locked_charge(session, charge_id)


def settle_charge(session: Session, charge_id: str, payment: ConfirmedPayment, now: datetime) -> Settlement:
    """Record a confirmed payment of a charge and everything that follows from it, in one transaction.

    The invoices it pays are marked paid, other pending charges for them canceled, and the blocks
    they cleared lifted (rules 3.4, 3.5, 3.6). Money that pays nothing (an invoice some other
    payment already settled, a short payment, an excess) is recorded and owed back. Recording the
    same gateway payment again changes nothing, so a job that runs twice settles once.
    """
    charge = _locked_charge(session, charge_id)
    settlement = Settlement(charge_id=charge.id)
    known = _payment(session, payment.gateway, payment.gateway_payment_id)
    if known is not None:
        settlement.payment_id, settlement.already_recorded = known.id, True
        return settlement

    invoices = list(
        session.scalars(
            select(Invoice).where(Invoice.id.in_(charge.invoice_ids)).order_by(Invoice.period_start).with_for_update()
        )
    )
    early_refunds = [
        r for r in charge.details.get("early_refunds", []) if r["payment_id"] == payment.gateway_payment_id
    ]
    short = payment.amount_cents < charge.amount_cents
    payable = [] if short else [invoice for invoice in invoices if invoice.status in UNPAID]
    record = Payment(
        id=new_id("pay"),
        charge_id=charge.id,
        account_id=charge.account_id,
        amount_cents=payment.amount_cents,
        method=payment.method,
        status=PaymentStatus.CONFIRMED.value if payable else PaymentStatus.DUPLICATE.value,
        gateway=payment.gateway,
        gateway_payment_id=payment.gateway_payment_id,
        invoice_ids=[invoice.id for invoice in payable] or [invoice.id for invoice in invoices],
        paid_at=payment.paid_at,
    )
    session.add(record)
    session.flush()
    settlement.payment_id = record.id
    for invoice in payable:
        invoice.status, invoice.paid_at, invoice.charge_id = (
            InvoiceStatus.PAID.value,
            payment.paid_at,
            charge.id,
        )
        invoice.verifying_until = None
        settlement.invoices_paid.append(invoice.id)
    if charge.status in (ChargeStatus.PENDING, ChargeStatus.FAILED, ChargeStatus.CANCELED):
        charge.status, charge.confirmed_at = ChargeStatus.CONFIRMED.value, now
        charge.gateway_payment_id = charge.gateway_payment_id or payment.gateway_payment_id

    if short:
        owed = {"amount_mismatch": payment.amount_cents}
    elif not payable:
        owed = {"duplicate": payment.amount_cents}
    else:
        settled = sum(invoice.total_cents for invoice in payable)
        owed = {"duplicate": min(payment.amount_cents - settled, charge.amount_cents - settled)}
        owed["overpayment"] = payment.amount_cents - settled - owed["duplicate"]
    if early_refunds:
        # The gateway already gave this money back (its refund arrived before its confirmation).
        owed = {}
        for early in early_refunds:
            _refund_done(session, record, early["refund_id"], early["amount_cents"], _instant(early["at"]), now)
    for reason, amount in owed.items():
        if amount > 0:
            settlement.refunds_owed.append(_refund_owed(session, record, amount, reason, now).id)
    session.flush()
    settlement.charges_canceled = _cancel_other_charges(session, charge.id, settlement.invoices_paid)
    settlement.blocks = reconcile_blocks(session, [charge.account_id], now)
    return settlement


def _payment(session: Session, gateway: str, gateway_payment_id: str) -> Payment | None:
    return session.scalar(
        select(Payment).where(Payment.gateway == gateway, Payment.gateway_payment_id == gateway_payment_id)
    )


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _refund_owed(session: Session, payment: Payment, amount_cents: int, reason: str, now: datetime) -> Refund:
    refund = Refund(
        id=new_id("ref"),
        payment_id=payment.id,
        account_id=payment.account_id,
        amount_cents=amount_cents,
        reason=reason,
        status=RefundStatus.OWED.value,
        created_at=now,
    )
    session.add(refund)
    return refund


def _refund_done(
    session: Session, payment: Payment, refund_id: str, amount_cents: int, at: datetime, now: datetime
) -> Refund:
    """A refund the gateway confirmed: one we owed, or one made at the gateway by someone else."""
    owed = session.scalar(
        select(Refund)
        .where(Refund.payment_id == payment.id, Refund.status == RefundStatus.OWED)
        .order_by(Refund.created_at)
        .limit(1)
    )
    refund = owed or Refund(
        id=new_id("ref"),
        payment_id=payment.id,
        account_id=payment.account_id,
        reason="gateway",
        created_at=now,
    )
    refund.amount_cents = amount_cents
    refund.status, refund.gateway_refund_id, refund.refunded_at = RefundStatus.DONE.value, refund_id, at
    session.add(refund)
    session.flush()
    refunded = sum(
        session.scalars(
            select(Refund.amount_cents).where(Refund.payment_id == payment.id, Refund.status == RefundStatus.DONE)
        )
    )
    if refunded >= payment.amount_cents and payment.status == PaymentStatus.CONFIRMED:
        payment.status = PaymentStatus.REFUNDED.value
        session.execute(
            update(Invoice)
            .where(Invoice.id.in_(payment.invoice_ids), Invoice.charge_id == payment.charge_id)
            .values(status=InvoiceStatus.REFUNDED.value)
        )
    return refund


def record_refund(
    session: Session,
    charge_id: str,
    gateway: str,
    gateway_payment_id: str,
    refund_id: str,
    amount_cents: int,
    at: datetime,
    now: datetime,
) -> str:
    """The gateway gave money back. Before its confirmation is known, it waits on the charge."""
    charge = _locked_charge(session, charge_id)
    if session.scalar(select(Refund.id).where(Refund.gateway_refund_id == refund_id)) is not None:
        return "already_recorded"
    payment = _payment(session, gateway, gateway_payment_id)
    if payment is None:
        early = list(charge.details.get("early_refunds", []))
        if any(item["refund_id"] == refund_id for item in early):
            return "already_recorded"
        early.append(
            {
                "refund_id": refund_id,
                "payment_id": gateway_payment_id,
                "amount_cents": amount_cents,
                "at": at.isoformat(),
            }
        )
        charge.details = {**charge.details, "early_refunds": early}
        if charge.status == ChargeStatus.PENDING:
            charge.status = ChargeStatus.REFUNDED.value
        return "refund_before_confirmation"
    _refund_done(session, payment, refund_id, amount_cents, at, now)
    if payment.status == PaymentStatus.REFUNDED:
        charge.status = ChargeStatus.REFUNDED.value
    session.flush()
    return "refunded"


def record_failure(session: Session, charge_id: str, failure_code: str | None, now: datetime) -> str:
    """A declined or refused attempt: the charge failed; its invoices stay open for the régua."""
    charge = _locked_charge(session, charge_id)
    if charge.status != ChargeStatus.PENDING:
        return f"ignored_{charge.status}"
    charge.status, charge.failure_code = ChargeStatus.FAILED.value, failure_code or "failed"
    charge.details = {**charge.details, "failed_at": now.isoformat()}
    session.execute(
        update(Invoice)
        .where(Invoice.id.in_(charge.invoice_ids), Invoice.status == InvoiceStatus.VERIFYING)
        .values(status=InvoiceStatus.OPEN.value, verifying_until=None)
    )
    reconcile_blocks(session, [charge.account_id], now)
    return "failed"


def record_chargeback(session: Session, charge_id: str, gateway: str, gateway_payment_id: str, now: datetime) -> str:
    """The customer disputed a payment: its money is gone, so the months it paid are open again."""
    charge = _locked_charge(session, charge_id)
    payment = _payment(session, gateway, gateway_payment_id)
    if payment is None:
        raise PaymentNotYetKnown(f"chargeback for {gateway_payment_id} before its confirmation")
    if payment.status == PaymentStatus.CHARGEBACK:
        return "already_recorded"
    payment.status = PaymentStatus.CHARGEBACK.value
    session.execute(
        update(Invoice)
        .where(
            Invoice.id.in_(payment.invoice_ids),
            Invoice.charge_id == charge.id,
            Invoice.status == InvoiceStatus.PAID,
        )
        .values(status=InvoiceStatus.OPEN.value, paid_at=None, charge_id=None)
    )
    reconcile_blocks(session, [charge.account_id], now)
    return "chargeback"


def record_gateway_cancel(session: Session, charge_id: str) -> str:
    charge = _locked_charge(session, charge_id)
    if charge.status != ChargeStatus.PENDING:
        return f"ignored_{charge.status}"
    charge.status = ChargeStatus.CANCELED.value
    return "canceled"


class PaymentNotYetKnown(Exception):
    """An event that needs a payment regua has not recorded yet: retried until it is."""


def _cancel_other_charges(session: Session, paid_by: str, invoice_ids: Sequence[str]) -> list[str]:
    """Every other pending charge for these invoices: canceled here, and owed a cancel at its gateway."""
    if not invoice_ids:
        return []
    others = list(
        session.scalars(
            select(Charge)
            .join(ChargeInvoice, ChargeInvoice.charge_id == Charge.id)
            .where(
                ChargeInvoice.invoice_id.in_(invoice_ids),
                Charge.id != paid_by,
                Charge.status == ChargeStatus.PENDING,
            )
            .with_for_update()
        ).unique()
    )
    for other in others:
        other.status = ChargeStatus.CANCELED.value
        other.details = {**other.details, "gateway_cancel_owed": True, "superseded_by": paid_by}
    return [other.id for other in others]


def record_receipt(session: Session, invoice_id: str, now: datetime, policy: Policy) -> tuple[Invoice, BlockChanges]:
    """Ops hold a receipt the customer sent: the invoice is in verification (rule 3.7)."""
    account_id = session.scalar(select(Invoice.account_id).where(Invoice.id == invoice_id))
    if account_id is None:
        raise NotFound(f"no invoice {invoice_id!r}")
    lock_accounts(session, [account_id])
    invoice = session.get(Invoice, invoice_id, with_for_update=True)
    assert invoice is not None
    if invoice.status not in UNPAID:
        raise Conflict(f"invoice {invoice_id} is {invoice.status}: only an unpaid invoice can be verified")
    invoice.status = InvoiceStatus.VERIFYING.value
    invoice.verifying_until = now + policy.verification_window
    session.flush()
    return invoice, reconcile_blocks(session, [account_id], now)


def mark_charge_verifying(session: Session, charge_id: str, now: datetime, policy: Policy) -> BlockChanges:
    """A gateway reports the charge's payment started but not cleared: its invoices are verifying."""
    charge = _locked_charge(session, charge_id)
    if charge.status != ChargeStatus.PENDING:
        return BlockChanges()
    session.execute(
        update(Invoice)
        .where(Invoice.id.in_(charge.invoice_ids), Invoice.status.in_(UNPAID))
        .values(status=InvoiceStatus.VERIFYING.value, verifying_until=now + policy.verification_window)
    )
    return reconcile_blocks(session, [charge.account_id], now)


def expire_verifications(session: Session, now: datetime) -> list[str]:
    """Verifications past their window: the invoices are open (and overdue) again."""
    expired = list(
        session.scalars(
            select(Invoice.id).where(Invoice.status == InvoiceStatus.VERIFYING, Invoice.verifying_until <= now)
        )
    )
    if expired:
        session.execute(
            update(Invoice)
            .where(Invoice.id.in_(expired), Invoice.status == InvoiceStatus.VERIFYING)
            .values(status=InvoiceStatus.OPEN.value, verifying_until=None)
        )
    return expired
