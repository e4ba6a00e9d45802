"""Money in: charges opened, payments settled onto invoices, failures and cancels, duplicates owed back."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session, selectinload

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


def lock_charges(session: Session, charge_ids: Iterable[str]) -> dict[str, Charge]:
    """The charges by id, under their accounts' locks and their own row locks, as settlement takes them.

    Three statements for any number of charges (and a fourth for their invoice links); an id with no
    charge is absent from the answer.
    """
    ids = sorted(set(charge_ids))
    if not ids:
        return {}
    lock_accounts(session, session.scalars(select(Charge.account_id).where(Charge.id.in_(ids))))
    locked = session.scalars(
        select(Charge)
        .where(Charge.id.in_(ids))
        .order_by(Charge.id)
        .with_for_update()
        .options(selectinload(Charge.invoice_links))
    )
    return {charge.id: charge for charge in locked}


def lock_charge(session: Session, charge_id: str) -> Charge:
    """The charge, under its account's lock and its own row lock, as settlement takes them (NotFound if none)."""
    charge = lock_charges(session, [charge_id]).get(charge_id)
    if charge is None:
        raise NotFound(f"no charge {charge_id!r}")
    return charge


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
    return settle_locked_charge(session, lock_charge(session, charge_id), payment, now)


def settle_locked_charge(session: Session, charge: Charge, payment: ConfirmedPayment, now: datetime) -> Settlement:
    """`settle_charge` for a charge this transaction already holds by `lock_charge`."""
    return settle_locked_charges(session, [(charge, payment)], now)[0]


@dataclass
class _Books:
    """What a batch of settlements reads before it decides anything: a few statements for the whole batch."""

    payments: dict[tuple[str, str], Payment]
    invoices: dict[str, Invoice]
    early_refunds: dict[tuple[str, str], list[Refund]]
    links: dict[str, set[str]]
    """Each invoice's charges."""
    pending: dict[str, Charge]
    """The locked charges a settlement may supersede: the batch's own, and the pending others of its invoices."""


def _read_books(session: Session, items: Sequence[tuple[Charge, ConfirmedPayment]]) -> _Books:
    by_gateway: dict[str, set[str]] = defaultdict(set)
    for _, payment in items:
        by_gateway[payment.gateway].add(payment.gateway_payment_id)
    payments = {
        (known.gateway, known.gateway_payment_id): known
        for gateway, payment_ids in by_gateway.items()
        for known in session.scalars(
            select(Payment).where(Payment.gateway == gateway, Payment.gateway_payment_id.in_(sorted(payment_ids)))
        )
    }
    invoice_ids = sorted({invoice_id for charge, _ in items for invoice_id in charge.invoice_ids})
    invoices = {
        invoice.id: invoice
        for invoice in session.scalars(
            select(Invoice).where(Invoice.id.in_(invoice_ids)).order_by(Invoice.id).with_for_update()
        )
    }
    early_refunds: dict[tuple[str, str], list[Refund]] = defaultdict(list)
    charge_ids = sorted({charge.id for charge, _ in items})
    for refund in session.scalars(
        select(Refund).where(Refund.charge_id.in_(charge_ids), Refund.payment_id.is_(None)).order_by(Refund.id)
    ):
        early_refunds[(refund.charge_id, refund.gateway_payment_id or "")].append(refund)
    links: dict[str, set[str]] = defaultdict(set)
    for linked_charge, invoice_id in session.execute(
        select(ChargeInvoice.charge_id, ChargeInvoice.invoice_id).where(ChargeInvoice.invoice_id.in_(invoice_ids))
    ):
        links[invoice_id].add(linked_charge)
    pending = {charge.id: charge for charge, _ in items}
    # Found through the invoices' links first, then locked by id: in one join, a planner whose statistics
    # predate the tick's new charges (right after day 1 opened 100,000 of them) walks every pending charge
    # for each settlement instead of the invoices' few links.
    others = sorted(set().union(*links.values()) - set(pending)) if links else []
    if others:
        pending |= {
            other.id: other
            for other in session.scalars(
                select(Charge)
                .where(Charge.id.in_(others), Charge.status == ChargeStatus.PENDING)
                .order_by(Charge.id)
                .with_for_update()
            )
        }
    return _Books(payments, invoices, early_refunds, links, pending)


def settle_locked_charges(
    session: Session, items: Sequence[tuple[Charge, ConfirmedPayment]], now: datetime
) -> list[Settlement]:
    """Settle confirmed payments of charges this transaction holds by `lock_charges`, in order, as if one by one.

    What the batch reads is read once for all of it, and what it writes is written together; a later
    payment sees what an earlier one of the batch did (an invoice it paid, a charge it superseded).
    """
    if not items:
        return []
    books = _read_books(session, items)
    settlements: list[Settlement] = []
    owed: list[tuple[Settlement, Payment, dict[str, int], list[Invoice]]] = []
    for charge, payment in items:
        settlement = Settlement(charge_id=charge.id)
        settlements.append(settlement)
        known = books.payments.get((payment.gateway, payment.gateway_payment_id))
        if known is not None:
            settlement.payment_id, settlement.already_recorded = known.id, True
            continue
        invoices = sorted(
            (books.invoices[invoice_id] for invoice_id in charge.invoice_ids),
            key=lambda invoice: (invoice.period_start, invoice.id),
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
        books.payments[(payment.gateway, payment.gateway_payment_id)] = record
        settlement.payment_id = record.id
        for invoice in payable:
            invoice.status, invoice.paid_at = InvoiceStatus.PAID.value, payment.paid_at
            invoice.charge_id, invoice.payment_id = charge.id, record.id
            invoice.verifying_until = invoice.verifying_charge_id = None
            settlement.invoices_paid.append(invoice.id)
        if charge.status in (ChargeStatus.PENDING, ChargeStatus.FAILED, ChargeStatus.CANCELED):
            charge.status, charge.confirmed_at = ChargeStatus.CONFIRMED.value, now
            charge.gateway_payment_id = charge.gateway_payment_id or payment.gateway_payment_id
        owed.append((settlement, record, _owed_back(payment, charge, payable), payable))
        settlement.charges_canceled = _supersede(books, charge.id, settlement.invoices_paid)
    session.flush()  # the payments exist before the invoices and refunds that name them
    for settlement, record, amounts, payable in owed:
        _give_back(session, books, settlement, record, amounts, payable, now)
    session.flush()
    accounts = sorted({charge.account_id for charge, _ in items})
    changes = reconcile_blocks(session, accounts, now) if owed else BlockChanges()
    for (charge, _), settlement in zip(items, settlements, strict=True):
        if not settlement.already_recorded:
            settlement.blocks = BlockChanges(
                [block for block in changes.applied if block.account_id == charge.account_id],
                [block for block in changes.lifted if block.account_id == charge.account_id],
            )
    return settlements


def _owed_back(payment: ConfirmedPayment, charge: Charge, payable: Sequence[Invoice]) -> dict[str, int]:
    """What of a payment pays nothing, by reason: short, a duplicate, or more than the charge asked."""
    if payment.amount_cents < charge.amount_cents:
        return {RefundReason.AMOUNT_MISMATCH: payment.amount_cents}
    if not payable:
        return {RefundReason.DUPLICATE: payment.amount_cents}
    settled = sum(invoice.total_cents for invoice in payable)
    duplicate = min(payment.amount_cents - settled, charge.amount_cents - settled)
    return {RefundReason.DUPLICATE: duplicate, RefundReason.OVERPAYMENT: payment.amount_cents - settled - duplicate}


def _give_back(
    session: Session,
    books: _Books,
    settlement: Settlement,
    record: Payment,
    amounts: dict[str, int],
    payable: Sequence[Invoice],
    now: datetime,
) -> None:
    """Owe back what pays nothing, less what the gateway already gave back (a refund that came before)."""
    early = books.early_refunds.pop((record.charge_id, record.gateway_payment_id), [])
    given_back = 0
    for refund in early:
        refund.payment_id = record.id
        given_back += refund.amount_cents
    for reason, amount in amounts.items():
        covered = min(amount, given_back)
        given_back -= covered
        if amount - covered > 0:
            owed_back = refund_of(record, amount - covered, reason, now)
            session.add(owed_back)
            settlement.refunds_owed.append(owed_back.id)
    from_gateway = sum(refund.amount_cents for refund in early)
    if early and record.status == PaymentStatus.CONFIRMED and from_gateway >= record.amount_cents:
        record.status = PaymentStatus.REFUNDED.value
        for invoice in payable:
            invoice.status = InvoiceStatus.REFUNDED.value


def _supersede(books: _Books, paid_by: str, invoice_ids: Sequence[str]) -> list[str]:
    """Every other pending charge for these invoices: canceled here, and owed a cancel at its gateway."""
    others = sorted({charge_id for invoice_id in invoice_ids for charge_id in books.links.get(invoice_id, ())})
    canceled = []
    for other_id in others:
        other = books.pending.get(other_id)
        if other_id == paid_by or other is None or other.status != ChargeStatus.PENDING:
            continue
        other.status = ChargeStatus.CANCELED.value
        other.gateway_cancel_owed, other.superseded_by, other.canceled_reason = True, paid_by, "superseded"
        canceled.append(other_id)
    return canceled


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
    charge = lock_charge(session, charge_id)
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
    charge = lock_charge(session, charge_id)
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
