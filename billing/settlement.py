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
    charge_id = new_id("chg")
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


def settle_charge(session: Session, charge_id: str, payment: ConfirmedPayment, now: datetime) -> Settlement:
    """Record a confirmed payment of a charge and everything that follows from it, in one transaction.

    The invoices it pays are marked paid, other pending charges for them canceled, and the blocks
    they cleared lifted (rules 3.4, 3.5, 3.6). Money for an invoice some other payment already
    settled is recorded as a duplicate and owed back. Recording the same gateway payment again
    changes nothing, so a job that runs twice settles once.
    """
    charge = _locked_charge(session, charge_id)
    settlement = Settlement(charge_id=charge.id)
    known = session.scalar(
        select(Payment).where(
            Payment.gateway == payment.gateway, Payment.gateway_payment_id == payment.gateway_payment_id
        )
    )
    if known is not None:
        settlement.payment_id, settlement.already_recorded = known.id, True
        return settlement

    invoices = list(
        session.scalars(
            select(Invoice).where(Invoice.id.in_(charge.invoice_ids)).order_by(Invoice.period_start).with_for_update()
        )
    )
    payable = [invoice for invoice in invoices if invoice.status in UNPAID]
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
    settlement.payment_id = record.id
    for invoice in payable:
        invoice.status, invoice.paid_at, invoice.charge_id = InvoiceStatus.PAID.value, payment.paid_at, charge.id
        invoice.verifying_until = None
        settlement.invoices_paid.append(invoice.id)
    if charge.status != ChargeStatus.CONFIRMED:
        charge.status, charge.confirmed_at = ChargeStatus.CONFIRMED.value, now
        charge.gateway_payment_id = charge.gateway_payment_id or payment.gateway_payment_id

    already_paid = sum(invoice.total_cents for invoice in invoices if invoice not in payable)
    owed = min(payment.amount_cents, already_paid) if payable else payment.amount_cents
    if owed > 0:
        refund = Refund(
            id=new_id("ref"),
            payment_id=record.id,
            account_id=charge.account_id,
            amount_cents=owed,
            reason="duplicate",
            status=RefundStatus.OWED.value,
            created_at=now,
        )
        session.add(refund)
        settlement.refunds_owed.append(refund.id)
    session.flush()
    settlement.charges_canceled = _cancel_other_charges(session, charge.id, settlement.invoices_paid)
    settlement.blocks = reconcile_blocks(session, [charge.account_id], now)
    return settlement


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
