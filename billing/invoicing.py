"""Issuing invoices: one per subscription and billing period, whatever the number of passes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import func, select, true
from sqlalchemy.orm import Session

from billing.calendar import BillingCalendar, Frequency, Period, billing_period, period_subtotal
from billing.db import insert_ignoring_conflicts
from billing.models import Account, Invoice, InvoiceKind, InvoiceStatus, PaymentMethod, Subscription, new_id
from billing.money import auto_debit_discount
from billing.plan_changes import apply_waiting_changes

BATCH = 2000


@dataclass(frozen=True)
class InvoiceDraft:
    period: Period
    subtotal_cents: int
    discount_cents: int

    @property
    def total_cents(self) -> int:
        return self.subtotal_cents - self.discount_cents


def draft_invoice(period: Period, monthly_price_cents: int, payment_method: str) -> InvoiceDraft:
    """The amounts of an invoice: the period's price, less 5% for card auto-debit (rule 3.3)."""
    subtotal = period_subtotal(period, monthly_price_cents)
    discount = auto_debit_discount(subtotal) if payment_method == PaymentMethod.CARD_AUTO_DEBIT else 0
    return InvoiceDraft(period, subtotal, discount)


def first_billable_day(starts_on: date, trial_ends_at: datetime | None, calendar: BillingCalendar) -> date:
    """The day billing begins: the subscription's start, or the day its account's trial ends."""
    if trial_ends_at is None:
        return starts_on
    return max(starts_on, calendar.local_date(trial_ends_at))


def due_periods(
    next_start: date,
    frequency: Frequency,
    trial_ends_at: datetime | None,
    now: datetime,
    calendar: BillingCalendar,
) -> list[Period]:
    """The periods from `next_start` whose invoice should exist at `now` (several after a gap)."""
    periods = []
    while calendar.start_of_day(next_start) <= now and (trial_ends_at is None or trial_ends_at <= now):
        period = billing_period(next_start, frequency)
        periods.append(period)
        next_start = period.end + timedelta(days=1)
    return periods


@dataclass(frozen=True)
class IssueReport:
    invoice_ids: list[str]
    trials_ended: int


def issue_due_invoices(
    session: Session, now: datetime, calendar: BillingCalendar, account_id: str | None = None
) -> IssueReport:
    """Issue every invoice that should exist at `now` and does not; a concurrent pass loses quietly.

    A change waiting for the next period is applied first (rule 3.10), and a canceled subscription gets
    no invoice for a period after its end. `account_id` limits the pass to one account (a plan chosen on
    the payment page is paid at once).
    """
    apply_waiting_changes(session, calendar.local_date(now))
    last_end = (
        select(Invoice.subscription_id, func.max(Invoice.period_end).label("last_end"))
        .group_by(Invoice.subscription_id)
        .subquery()
    )
    rows = session.execute(
        select(
            Subscription.id,
            Subscription.account_id,
            Subscription.product,
            Subscription.frequency,
            Subscription.payment_method,
            Subscription.monthly_price_cents,
            Subscription.starts_on,
            Subscription.ends_on,
            Account.trial_ends_at,
            last_end.c.last_end,
        )
        .join(Account, Account.id == Subscription.account_id)
        .outerjoin(last_end, last_end.c.subscription_id == Subscription.id)
        .where(Subscription.account_id == account_id if account_id is not None else true())
    ).all()
    drafts: list[dict[str, Any]] = []
    trial_starts: set[tuple[str, date]] = set()
    for row in rows:
        first_day = first_billable_day(row.starts_on, row.trial_ends_at, calendar)
        next_start = max(row.last_end + timedelta(days=1), first_day) if row.last_end else first_day
        for period in due_periods(next_start, Frequency(row.frequency), row.trial_ends_at, now, calendar):
            if row.ends_on is not None and period.start > row.ends_on:
                break
            draft = draft_invoice(period, row.monthly_price_cents, row.payment_method)
            if row.trial_ends_at is not None and period.start == first_day and row.last_end is None:
                trial_starts.add((row.id, period.start))
            drafts.append(_invoice_row(row, draft, now, calendar))
    issued: list[str] = []
    for offset in range(0, len(drafts), BATCH):
        issued += insert_ignoring_conflicts(
            session,
            Invoice,
            drafts[offset : offset + BATCH],
            index_elements=["subscription_id", "period_start", "kind"],
        )
    issued_set = set(issued)
    trials_ended = sum(
        1
        for draft in drafts
        if draft["id"] in issued_set and (draft["subscription_id"], draft["period_start"]) in trial_starts
    )
    return IssueReport(issued, trials_ended)


def _invoice_row(row: Any, draft: InvoiceDraft, now: datetime, calendar: BillingCalendar) -> dict[str, Any]:
    due_date = draft.period.start
    return {
        "id": new_id("inv"),
        "subscription_id": row.id,
        "account_id": row.account_id,
        "product": row.product,
        "period_start": draft.period.start,
        "period_end": draft.period.end,
        "kind": InvoiceKind.PERIOD.value,
        "monthly_price_cents": row.monthly_price_cents,
        "due_date": due_date,
        "block_at": calendar.block_at(due_date),
        "payment_method": row.payment_method,
        "subtotal_cents": draft.subtotal_cents,
        "discount_cents": draft.discount_cents,
        "total_cents": draft.total_cents,
        "status": InvoiceStatus.OPEN.value,
        "issued_at": now,
    }
