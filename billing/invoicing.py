"""Issuing invoices: one per subscription and billing period, whatever the number of passes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import case, func, literal, select
from sqlalchemy.orm import Session, sessionmaker

from billing.calendar import BillingCalendar, Frequency, Period, billing_period, period_subtotal
from billing.db import BULK, insert_ignoring_conflicts, refresh_statistics, unit_of_work
from billing.models import Account, Invoice, InvoiceKind, InvoiceStatus, PaymentMethod, Subscription, new_id
from billing.money import auto_debit_discount
from billing.plan_changes import apply_waiting_changes

BATCH = 2000
PAGE = 5000
"""Subscriptions read per page: each page's invoices are written (and, in the tick, committed) before the next."""


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


@dataclass(frozen=True)
class IssuedPage:
    invoice_ids: list[str]
    trials_ended: int
    last_subscription_id: str | None
    """Where the next page begins (after this id); None when no subscription was left to read."""


def issue_due_invoices(
    session: Session, now: datetime, calendar: BillingCalendar, account_id: str | None = None
) -> IssueReport:
    """Issue every invoice that should exist at `now` and does not, in this session; a concurrent pass loses quietly.

    A change waiting for the next period is applied first (rule 3.10), and a canceled subscription gets
    no invoice for a period after its end. `account_id` limits the pass to one account (a plan chosen on
    the payment page is paid at once). The tick issues the same pages, a transaction each (`issue_in_pages`).
    """
    apply_waiting_changes(session, calendar.local_date(now))
    issued: list[str] = []
    trials_ended = 0
    after: str | None = ""
    while after is not None:
        page = issue_page(session, now, calendar, after, account_id)
        issued += page.invoice_ids
        trials_ended += page.trials_ended
        after = page.last_subscription_id
    return IssueReport(issued, trials_ended)


def issue_in_pages(sessions: sessionmaker[Session], now: datetime, calendar: BillingCalendar) -> tuple[int, int]:
    """The tick's issuing: the waiting changes, then PAGE subscriptions a transaction, each committed as it is
    written, so a million subscriptions never sit in memory at once. Returns (invoices issued, trials ended)."""
    with unit_of_work(sessions) as session:
        apply_waiting_changes(session, calendar.local_date(now))
        session.commit()
    issued = trials_ended = 0
    after: str | None = ""
    while after is not None:
        with unit_of_work(sessions) as session:
            page = issue_page(session, now, calendar, after)
            session.commit()
        issued += len(page.invoice_ids)
        trials_ended += page.trials_ended
        after = page.last_subscription_id
    if issued >= BULK:  # what plans the charges next reads these invoices: let the planner know they are there
        with unit_of_work(sessions) as session:
            refresh_statistics(session, "invoices")
            session.commit()
    return issued, trials_ended


def issue_page(
    session: Session, now: datetime, calendar: BillingCalendar, after: str, account_id: str | None = None
) -> IssuedPage:
    """The invoices due of the next PAGE subscriptions (by id, after `after`) that are not invoiced through today.

    A subscription whose last invoice reaches today (or its end, when canceled) is skipped in the database: a second
    pass the same day reads no subscription at all.
    """
    today = calendar.local_date(now)
    reaches = select(Invoice.id).where(
        Invoice.subscription_id == Subscription.id, Invoice.period_end >= _invoiced_through(today)
    )
    query = (
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
        )
        .join(Account, Account.id == Subscription.account_id)
        .where(Subscription.id > after, ~reaches.exists())
        .order_by(Subscription.id)
        .limit(PAGE)
    )
    if account_id is not None:
        query = query.where(Subscription.account_id == account_id)
    rows = session.execute(query).all()
    if not rows:
        return IssuedPage([], 0, None)
    last_ends = dict(
        session.execute(
            select(Invoice.subscription_id, func.max(Invoice.period_end))
            .where(Invoice.subscription_id > after, Invoice.subscription_id <= rows[-1].id)
            .group_by(Invoice.subscription_id)
        ).all()
    )
    drafts: list[dict[str, Any]] = []
    trial_starts: set[tuple[str, date]] = set()
    for row in rows:
        last_end = last_ends.get(row.id)
        first_day = first_billable_day(row.starts_on, row.trial_ends_at, calendar)
        next_start = max(last_end + timedelta(days=1), first_day) if last_end else first_day
        for period in due_periods(next_start, Frequency(row.frequency), row.trial_ends_at, now, calendar):
            if row.ends_on is not None and period.start > row.ends_on:
                break
            draft = draft_invoice(period, row.monthly_price_cents, row.payment_method)
            if row.trial_ends_at is not None and period.start == first_day and last_end is None:
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
    return IssuedPage(issued, trials_ended, rows[-1].id)


def _invoiced_through(today: date) -> Any:
    """The day a subscription's invoices must reach for nothing to be due: today, or its end if that comes first."""
    return case(
        (Subscription.ends_on.is_not(None) & (Subscription.ends_on < today), Subscription.ends_on),
        else_=literal(today),
    )


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
