"""The months a card plan still pays once an installment was taken back: whole months, in order.

A card plan in installments is one payment for its whole charge (recorded at the first installment's
confirmation), while each installment is a gateway payment of its own. When one installment is charged
back, the plan keeps only the money it still holds: its amount less what chargebacks took back and less
what regua owes or gave back itself (a duplicate, an overpayment). That money covers the months the plan
paid in period order, whole months only, each at its invoice's own monthly price:

- a month it still covers stays paid; an invoice it covers in part is cut at the last month covered and
  the latest months go to a new invoice of their own, at the same monthly price;
- the months it no longer covers are owed like an unpaid month: open, due at once, blocking after the
  usual tolerance (rule 3.4);
- what it holds beyond the months it covers (part of a month) is owed back to the customer;
- a chargeback that takes back more than the months held (money that was owed back already) takes it off
  what is still owed back, and owes nothing more.

A refund of an installment is a partial refund (rule 3.5): the months stay paid until refunds and
chargebacks together leave nothing on the plan, and then the plan and its months are refunded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from billing.calendar import add_months, last_of_month
from billing.clock import as_utc
from billing.models import (
    OWED_BACK,
    UNPAID,
    Invoice,
    InvoiceStatus,
    Payment,
    Refund,
    RefundReason,
    RefundStatus,
    new_id,
)
from billing.settlement import refund_of

OWED_OR_GIVEN = (RefundStatus.OWED, RefundStatus.PENDING, RefundStatus.DONE)


@dataclass
class MonthsKept:
    """What taking money back from a plan did to its months."""

    invoices_cut: list[str] = field(default_factory=list)
    """Paid invoices shortened to the months still covered."""
    invoices_owed: list[str] = field(default_factory=list)
    """Invoices open again, or new ones holding the months no longer covered."""
    owed_back_cents: int = 0
    """Part of a month the plan still held: owed back to the customer."""
    canceled_back_cents: int = 0
    """What the chargeback took off refunds regua still owed."""


def held_for_months(session: Session, payment: Payment) -> int:
    """The payment's money that pays months: its amount less chargebacks and less what regua owes or gave back
    of its own accord. Refunds made at the gateway by someone else leave the months paid (partial refunds)
    while any money is left on the payment; once none is, no month is held."""
    owed_back = given_back = 0
    for reason, cents in session.execute(
        select(Refund.reason, func.sum(Refund.amount_cents))
        .where(Refund.payment_id == payment.id, Refund.status.in_(OWED_OR_GIVEN))
        .group_by(Refund.reason)
    ):
        if reason in OWED_BACK:
            owed_back += int(cents or 0)
        else:
            given_back += int(cents or 0)
    held = payment.amount_cents - payment.chargeback_cents - owed_back
    return min(held, 0) if held - given_back <= 0 else held


def month_starts(invoice: Invoice) -> list[date]:
    """The calendar months an invoice covers, by their first day; one entry for a period of part of a month."""
    starts = [invoice.period_start]
    if invoice.period_start.day != 1 or invoice.period_end != last_of_month(invoice.period_end):
        return starts
    while (following := add_months(starts[-1], 1)) <= invoice.period_end:
        starts.append(following)
    if invoice.subtotal_cents % len(starts) or invoice.discount_cents:
        return [invoice.period_start]  # not whole months at one price: it stands or falls whole
    return starts


def keep_covered_months(session: Session, payment: Payment, now: datetime) -> MonthsKept:
    """Fit the plan's paid months to the money it holds now (see the module docstring); safe to run again."""
    kept = MonthsKept()
    left = held_for_months(session, payment)
    invoices = list(
        session.scalars(
            select(Invoice)
            .where(Invoice.payment_id == payment.id, Invoice.status == InvoiceStatus.PAID)
            .order_by(Invoice.period_start)
            .with_for_update()
        )
    )
    still_covering = True
    for invoice in invoices:
        starts = month_starts(invoice)
        price = invoice.total_cents // len(starts)
        affordable = len(starts) if price == 0 else max(left, 0) // price
        covered = min(len(starts), affordable) if still_covering else 0
        left -= covered * price
        if covered == len(starts):
            continue
        still_covering = False
        if covered == 0:
            _reopen(invoice, now)
        else:
            kept.invoices_cut.append(invoice.id)
            invoice = _cut(session, invoice, starts[covered], covered * price, now)
            payment.invoice_ids = [*payment.invoice_ids, invoice.id]
        kept.invoices_owed.append(invoice.id)
    if left > 0:
        session.add(refund_of(payment, left, RefundReason.OVERPAYMENT.value, now))
        kept.owed_back_cents = left
    elif left < 0:
        kept.canceled_back_cents = _take_off_owed_refunds(session, payment, -left)
    session.flush()
    return kept


def pay_lost_months(session: Session, payment: Payment, now: datetime) -> list[str]:
    """Money came back to the plan (a dispute won): the months it lost that are still open are paid again, in
    order and whole months only. Part of a month it owed back is counted in again; what is left is owed back
    (as a duplicate when the plan pays no month at all). Returns the invoices paid again."""
    leftovers = session.scalars(
        select(Refund).where(
            Refund.payment_id == payment.id,
            Refund.status == RefundStatus.OWED,
            Refund.reason == RefundReason.OVERPAYMENT,
        )
    )
    for refund in leftovers:
        refund.status, refund.note = RefundStatus.CANCELED.value, "the plan holds it again (a dispute won)"
    session.flush()
    paid = session.scalar(
        select(func.coalesce(func.sum(Invoice.total_cents), 0)).where(
            Invoice.payment_id == payment.id, Invoice.status == InvoiceStatus.PAID
        )
    )
    extra = held_for_months(session, payment) - int(paid or 0)
    lost = session.scalars(
        select(Invoice)
        .where(Invoice.id.in_(payment.invoice_ids), Invoice.status.in_(UNPAID))
        .order_by(Invoice.period_start)
        .with_for_update()
    )
    repaid: list[str] = []
    for invoice in lost:
        starts = month_starts(invoice)
        price = invoice.total_cents // len(starts)
        affordable = min(len(starts), len(starts) if price == 0 else max(extra, 0) // price)
        if affordable == 0:
            break
        if affordable < len(starts):
            rest = _cut(session, invoice, starts[affordable], affordable * price, now)
            payment.invoice_ids = [*payment.invoice_ids, rest.id]
        invoice.status, invoice.paid_at = InvoiceStatus.PAID.value, payment.paid_at
        invoice.charge_id, invoice.payment_id = payment.charge_id, payment.id
        invoice.verifying_until = invoice.verifying_charge_id = None
        extra -= invoice.total_cents
        repaid.append(invoice.id)
        if affordable < len(starts):
            break
    if extra > 0:
        pays_a_month = bool(repaid) or int(paid or 0) > 0
        reason = RefundReason.OVERPAYMENT if pays_a_month else RefundReason.DUPLICATE
        session.add(refund_of(payment, extra, reason.value, now))
    session.flush()
    return repaid


def due_at_once(invoice: Invoice, now: datetime) -> tuple[date, datetime]:
    """Today in the billing calendar and the block instant of an invoice due today.

    The calendar's zone is read off the invoice's own dates: its block instant is 00:00 of a local day,
    so its distance from that day's UTC midnight is the zone's offset (America/Sao_Paulo keeps one offset).
    """
    block_at = as_utc(invoice.block_at)
    behind_utc = block_at - datetime.combine(block_at.date(), time(0), tzinfo=UTC)
    if behind_utc > timedelta(hours=12):
        behind_utc -= timedelta(days=1)  # a zone east of UTC: its 00:00 falls on the day before in UTC
    today = (as_utc(now) - behind_utc).date()
    return today, block_at + (today - invoice.due_date)


def _reopen(invoice: Invoice, now: datetime) -> None:
    invoice.due_date, invoice.block_at = due_at_once(invoice, now)
    invoice.status, invoice.paid_at = InvoiceStatus.OPEN.value, None
    invoice.charge_id = invoice.payment_id = None


def _cut(session: Session, invoice: Invoice, first_owed: date, covered_cents: int, now: datetime) -> Invoice:
    """Shorten a paid invoice to its months still covered; the rest becomes a new open invoice, due at once."""
    due_date, block_at = due_at_once(invoice, now)
    invoice.cut_from = invoice.cut_from or invoice.period_start
    rest = Invoice(
        id=new_id("inv"),
        cut_from=invoice.cut_from,
        subscription_id=invoice.subscription_id,
        account_id=invoice.account_id,
        product=invoice.product,
        period_start=first_owed,
        period_end=invoice.period_end,
        due_date=due_date,
        block_at=block_at,
        payment_method=invoice.payment_method,
        subtotal_cents=invoice.total_cents - covered_cents,
        discount_cents=0,
        total_cents=invoice.total_cents - covered_cents,
        status=InvoiceStatus.OPEN.value,
        issued_at=now,
    )
    invoice.period_end = first_owed - timedelta(days=1)
    invoice.subtotal_cents = invoice.total_cents = covered_cents
    session.flush()  # the shorter period first: the new invoice's days must be free when it is inserted
    session.add(rest)
    return rest


def _take_off_owed_refunds(session: Session, payment: Payment, cents: int) -> int:
    """A chargeback took back money regua still owed: those refunds (latest first) are owed that much less."""
    taken = 0
    owed = session.scalars(
        select(Refund)
        .where(Refund.payment_id == payment.id, Refund.status == RefundStatus.OWED)
        .order_by(Refund.created_at.desc(), Refund.id.desc())
    )
    for refund in owed:
        part = min(refund.amount_cents, cents - taken)
        taken += part
        if part == refund.amount_cents:
            refund.status, refund.note = RefundStatus.CANCELED.value, "an installment was charged back"
        else:
            refund.amount_cents -= part
        if taken == cents:
            break
    return taken
