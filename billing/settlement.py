"""Money in: charges opened, payments settled onto invoices, failures and cancels, duplicates owed back."""

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
    RefundReason,
    RefundStatus,
    new_charge_id,
    new_id,
)
from billing.states import Applied


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


def find_payment(session: Session, gateway: str, gateway_payment_id: str) -> Payment | None:
    return session.scalar(
        select(Payment).where(Payment.gateway == gateway, Payment.gateway_payment_id == gateway_payment_id)
    )


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
    known = find_payment(session, payment.gateway, payment.gateway_payment_id)
    if known is not None:  # a payment once recorded stays: no lock needed to say so (the usual redelivery)
        return Settlement(charge_id=charge_id, payment_id=known.id, already_recorded=True)
    return settle_locked_charge(session, _locked_charge(session, charge_id), payment, now)


def settle_locked_charge(session: Session, charge: Charge, payment: ConfirmedPayment, now: datetime) -> Settlement:
    """`settle_charge` for a charge this transaction already holds by `lock_charge`."""
    settlement = Settlement(charge_id=charge.id)
    known = find_payment(session, payment.gateway, payment.gateway_payment_id)
    if known is not None:
        settlement.payment_id, settlement.already_recorded = known.id, True
        return settlement

    invoices = list(
        session.scalars(
            select(Invoice).where(Invoice.id.in_(charge.invoice_ids)).order_by(Invoice.period_start).with_for_update()
        )
    )
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
        invoice.status, invoice.paid_at = InvoiceStatus.PAID.value, payment.paid_at
        invoice.charge_id, invoice.payment_id = charge.id, record.id
        invoice.verifying_until = invoice.verifying_charge_id = None
        settlement.invoices_paid.append(invoice.id)
    if charge.status in (ChargeStatus.PENDING, ChargeStatus.FAILED, ChargeStatus.CANCELED):
        charge.status, charge.confirmed_at = ChargeStatus.CONFIRMED.value, now
        charge.gateway_payment_id = charge.gateway_payment_id or payment.gateway_payment_id

    if short:
        owed = {RefundReason.AMOUNT_MISMATCH: payment.amount_cents}
    elif not payable:
        owed = {RefundReason.DUPLICATE: payment.amount_cents}
    else:
        settled = sum(invoice.total_cents for invoice in payable)
        owed = {RefundReason.DUPLICATE: min(payment.amount_cents - settled, charge.amount_cents - settled)}
        owed[RefundReason.OVERPAYMENT] = payment.amount_cents - settled - owed[RefundReason.DUPLICATE]
    # The gateway may already have given some of it back (its refund arrived before this confirmation).
    early = list(
        session.scalars(
            select(Refund).where(
                Refund.charge_id == charge.id,
                Refund.payment_id.is_(None),
                Refund.gateway_payment_id == payment.gateway_payment_id,
            )
        )
    )
    given_back = 0
    for refund in early:
        refund.payment_id = record.id
        given_back += refund.amount_cents
    for reason, amount in owed.items():
        covered = min(amount, given_back)
        given_back -= covered
        if amount - covered > 0:
            owed_back = refund_of(record, amount - covered, reason, now)
            session.add(owed_back)
            settlement.refunds_owed.append(owed_back.id)
    session.flush()
    if early:
        from_gateway = sum(refund.amount_cents for refund in early)
        if record.status == PaymentStatus.CONFIRMED and from_gateway >= record.amount_cents:
            record.status = PaymentStatus.REFUNDED.value
            for invoice in payable:
                invoice.status = InvoiceStatus.REFUNDED.value
    session.flush()
    settlement.charges_canceled = cancel_other_charges(session, charge.id, settlement.invoices_paid)
    settlement.blocks = reconcile_blocks(session, [charge.account_id], now)
    return settlement


def refund_of(payment: Payment, amount_cents: int, reason: str, now: datetime) -> Refund:
    """A new refund of (part of) a payment: owed until a gateway or a person makes it."""
    return Refund(
        id=new_id("ref"),
        payment_id=payment.id,
        charge_id=payment.charge_id,
        gateway_payment_id=payment.gateway_payment_id,
        account_id=payment.account_id,
        amount_cents=amount_cents,
        reason=reason,
        status=RefundStatus.OWED.value,
        created_at=now,
    )


def record_failure(session: Session, charge_id: str, failure_code: str | None, now: datetime) -> Applied:
    """A declined or refused attempt: the charge failed; its invoices stay open for the régua."""
    charge = _locked_charge(session, charge_id)
    if charge.status != ChargeStatus.PENDING:
        return Applied.IGNORED
    charge.status, charge.failure_code = ChargeStatus.FAILED.value, failure_code or "failed"
    charge.failed_at = now
    # Only the gateway failing that very payment ends a verification; a receipt ops recorded stands (3.7).
    session.execute(
        update(Invoice)
        .where(
            Invoice.id.in_(charge.invoice_ids),
            Invoice.status == InvoiceStatus.VERIFYING,
            Invoice.verifying_charge_id == charge.id,
        )
        .values(status=InvoiceStatus.OPEN.value, verifying_until=None, verifying_charge_id=None)
    )
    reconcile_blocks(session, [charge.account_id], now)
    return Applied.FAILED


def record_gateway_cancel(session: Session, charge_id: str) -> Applied:
    charge = _locked_charge(session, charge_id)
    if charge.status != ChargeStatus.PENDING:
        return Applied.IGNORED
    charge.status = ChargeStatus.CANCELED.value
    return Applied.CANCELED


class PaymentNotYetKnown(Exception):
    """An event that needs a payment regua has not recorded yet: retried until it is."""


def cancel_other_charges(session: Session, paid_by: str, invoice_ids: Sequence[str]) -> list[str]:
    """Every other pending charge for these invoices: canceled here, and owed a cancel at its gateway.

    The charges are found through their invoices' links first, then locked by id: in one join, a
    planner whose statistics predate the tick's new charges (right after day 1 opened 100,000 of them)
    walks every pending charge for each settlement instead of the invoices' few links.
    """
    if not invoice_ids:
        return []
    links = select(ChargeInvoice.charge_id).where(ChargeInvoice.invoice_id.in_(invoice_ids))
    linked = set(session.scalars(links)) - {paid_by}
    if not linked:
        return []
    others = list(
        session.scalars(
            select(Charge)
            .where(Charge.id.in_(sorted(linked)), Charge.status == ChargeStatus.PENDING)
            .order_by(Charge.id)
            .with_for_update()
        )
    )
    for other in others:
        other.status = ChargeStatus.CANCELED.value
        other.gateway_cancel_owed, other.superseded_by, other.canceled_reason = True, paid_by, "superseded"
    return [other.id for other in others]
