"""Subscriptions that change or end (rule 3.10): upgrades now and pro rata, downgrades at the next period, cancellation.

- An upgrade (a dearer monthly price, at the same frequency) takes effect at once: the difference for
  the rest of the current period, pro rata by days and rounded half up, is invoiced now (kind
  `proration`, due today, with the 5% off for auto-debit) and collected by the subscription's method.
- Anything else that changes the price or the plan (a cheaper plan, fewer modules, another
  frequency, or the same price on another plan) waits for the next period: it is kept on the
  subscription (`next_*`) and applied when that period's invoice is issued. It is not a payment.
- A prepaid period is never cut short: a frequency change waits for its end; an upgrade inside it
  pays the difference for the days left of it.
- A cancellation ends the subscription at the end of the period already issued (`ends_on`): no
  invoice is issued after it. Choosing a plan again reactivates it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Literal

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from billing.batches import CHUNK, chunks
from billing.calendar import BillingCalendar, Frequency, days_in_month
from billing.errors import Conflict
from billing.models import (
    ChargeInvoice,
    Invoice,
    InvoiceKind,
    InvoiceStatus,
    PaymentMethod,
    PriceSource,
    Subscription,
    new_id,
)
from billing.money import auto_debit_discount, divide_half_up

Effect = Literal["created", "unchanged", "withdrawn", "now", "next_period", "canceled", "reactivated"]


@dataclass(frozen=True)
class Terms:
    """What a subscription sells and at what price: the part of it a change is about."""

    plan: str
    modules: tuple[str, ...]
    monthly_price_cents: int
    price_source: PriceSource
    frequency: Frequency

    @classmethod
    def of(cls, subscription: Subscription) -> Terms:
        return cls(
            subscription.plan,
            tuple(subscription.modules),
            subscription.monthly_price_cents,
            PriceSource(subscription.price_source),
            Frequency(subscription.frequency),
        )

    def same_offer(self, other: Terms) -> bool:
        return (self.plan, sorted(self.modules), self.monthly_price_cents, self.frequency) == (
            other.plan,
            sorted(other.modules),
            other.monthly_price_cents,
            other.frequency,
        )


@dataclass(frozen=True)
class Change:
    effect: Effect
    effective_on: date | None = None
    """The day the new terms apply from (today for an upgrade; the next period's first day otherwise)."""
    proration_invoice_id: str | None = None
    proration_cents: int = 0
    withdrawn: Terms | None = None
    """`withdrawn`: the change that waited for `effective_on` and no longer will (the current terms chosen again)."""


def current_period_invoice(session: Session, subscription_id: str, today: date) -> Invoice | None:
    """The period invoice (not a proration) whose period holds `today`."""
    return session.scalar(
        select(Invoice)
        .where(
            Invoice.subscription_id == subscription_id,
            Invoice.kind == InvoiceKind.PERIOD,
            Invoice.period_start <= today,
            Invoice.period_end >= today,
        )
        .order_by(Invoice.period_start.desc())
        .limit(1)
    )


def proration_cents(difference_cents: int, months: int, days_left: int, days_in_period: int) -> int:
    """The monthly price difference over the rest of a period: `months` months of it, times the days left over
    the days of the period, rounded half up to the centavo."""
    return divide_half_up(difference_cents * months * days_left, days_in_period)


def change_terms(
    session: Session, subscription: Subscription, new: Terms, now: datetime, calendar: BillingCalendar
) -> Change:
    """Apply new terms to a subscription by rule 3.10; the caller holds the account's lock."""
    today = calendar.local_date(now)
    current = Terms.of(subscription)
    if new.same_offer(current):
        waiting, effective_on = waiting_terms(subscription), subscription.change_effective_on
        _forget_waiting_change(subscription)
        subscription.price_source = new.price_source.value
        if waiting is not None and not waiting.same_offer(current):  # the customer kept the plan in force: told
            return Change("withdrawn", effective_on, withdrawn=waiting)
        return Change("unchanged")
    period = current_period_invoice(session, subscription.id, today)
    if period is None:  # nothing issued for today yet (a trial, a start ahead): the new terms simply apply
        _apply(subscription, new)
        return Change("now", today)
    upgrade = new.frequency == current.frequency and new.monthly_price_cents > current.monthly_price_cents
    if not upgrade:
        effective_on = period.period_end + timedelta(days=1)
        subscription.next_plan, subscription.next_modules = new.plan, list(new.modules)
        subscription.next_monthly_price_cents, subscription.next_price_source = (
            new.monthly_price_cents,
            new.price_source,
        )
        subscription.next_frequency, subscription.change_effective_on = new.frequency.value, effective_on
        return Change("next_period", effective_on)
    if period.period_start.day == 1:  # whole months: the period's own days
        months, days_in_period = current.frequency.months, (period.period_end - period.period_start).days + 1
    else:  # the rest of a month (a trial's end, a start mid-month), priced by the month's days
        months, days_in_period = 1, days_in_month(period.period_start)

    def amount(difference: int, first_day: date) -> int:
        return proration_cents(difference, months, (period.period_end - first_day).days + 1, days_in_period)

    difference = new.monthly_price_cents - current.monthly_price_cents
    _apply(subscription, new)
    _forget_waiting_change(subscription)
    if amount(difference, today) == 0:
        return Change("now", today)
    invoice = _proration_invoice(session, subscription, period, today, difference, amount, now, calendar)
    return Change("now", today, invoice.id, invoice.total_cents)


def _proration_invoice(
    session: Session,
    subscription: Subscription,
    period: Invoice,
    today: date,
    difference: int,
    amount: Callable[[int, date], int],
    now: datetime,
    calendar: BillingCalendar,
) -> Invoice:
    """The upgrade's difference, due today; a second upgrade the same day adds to it while it is open (priced
    again whole, so it rounds once); one already being paid leaves the next upgrade to start the day after."""
    auto_debit = subscription.payment_method == PaymentMethod.CARD_AUTO_DEBIT
    start = today
    while (
        existing := session.scalar(
            select(Invoice).where(
                Invoice.subscription_id == subscription.id,
                Invoice.kind == InvoiceKind.PRORATION,
                Invoice.period_start == start,
            )
        )
    ) is not None:
        links = select(ChargeInvoice.charge_id).where(ChargeInvoice.invoice_id == existing.id)
        if existing.status == InvoiceStatus.OPEN and session.scalar(links.limit(1)) is None:
            existing.monthly_price_cents = (existing.monthly_price_cents or 0) + difference
            _price(existing, amount(existing.monthly_price_cents, start), existing.payment_method == "card_auto_debit")
            return existing
        start += timedelta(days=1)
        if start > period.period_end:
            raise Conflict("this period's last day already has an upgrade being paid: change again tomorrow")
    invoice = Invoice(
        id=new_id("inv"),
        subscription_id=subscription.id,
        account_id=subscription.account_id,
        product=subscription.product,
        period_start=start,
        period_end=period.period_end,
        kind=InvoiceKind.PRORATION.value,
        monthly_price_cents=difference,
        due_date=today,
        block_at=calendar.block_at(today),
        payment_method=subscription.payment_method,
        status=InvoiceStatus.OPEN.value,
        issued_at=now,
    )
    _price(invoice, amount(difference, start), auto_debit)
    session.add(invoice)
    session.flush()
    return invoice


def _price(invoice: Invoice, subtotal: int, auto_debit: bool) -> None:
    invoice.subtotal_cents = subtotal
    invoice.discount_cents = auto_debit_discount(subtotal) if auto_debit else 0
    invoice.total_cents = subtotal - invoice.discount_cents


def _apply(subscription: Subscription, terms: Terms) -> None:
    subscription.plan, subscription.modules = terms.plan, list(terms.modules)
    subscription.monthly_price_cents, subscription.price_source = terms.monthly_price_cents, terms.price_source.value
    subscription.frequency = terms.frequency.value


def waiting_terms(subscription: Subscription) -> Terms | None:
    """The terms a change waits to apply at the next period, if one does."""
    if subscription.change_effective_on is None or subscription.next_plan is None:
        return None
    assert subscription.next_monthly_price_cents is not None
    return Terms(
        subscription.next_plan,
        tuple(subscription.next_modules or ()),
        subscription.next_monthly_price_cents,
        PriceSource(subscription.next_price_source or PriceSource.NEGOTIATED),
        Frequency(subscription.next_frequency or subscription.frequency),
    )


def _forget_waiting_change(subscription: Subscription) -> None:
    subscription.next_plan = subscription.next_modules = subscription.next_monthly_price_cents = None
    subscription.next_price_source = subscription.next_frequency = subscription.change_effective_on = None


def apply_waiting_changes(session: Session, today: date) -> list[str]:
    """The changes that wait for a period beginning on or before `today`: applied before its invoice is issued."""
    applied = []
    for subscription in session.scalars(
        select(Subscription).where(
            Subscription.change_effective_on.is_not(None), Subscription.change_effective_on <= today
        )
    ):
        waiting = waiting_terms(subscription)
        assert waiting is not None
        _apply(subscription, waiting)
        _forget_waiting_change(subscription)
        applied.append(subscription.id)
    return applied


def cancel(session: Session, subscription: Subscription, now: datetime, calendar: BillingCalendar) -> Change:
    """End the subscription at the end of the period already issued (today's eve if none was): idempotent."""
    if subscription.canceled_at is not None:
        return Change("canceled", subscription.ends_on)
    last_end = session.scalar(
        select(Invoice.period_end)
        .where(Invoice.subscription_id == subscription.id, Invoice.kind == InvoiceKind.PERIOD)
        .order_by(Invoice.period_end.desc())
        .limit(1)
    )
    today = calendar.local_date(now)
    subscription.canceled_at = now
    subscription.ends_on = last_end if last_end is not None and last_end >= today else today - timedelta(days=1)
    subscription.ends_at = calendar.start_of_day(subscription.ends_on + timedelta(days=1))
    _forget_waiting_change(subscription)
    return Change("canceled", subscription.ends_on)


def reactivate(subscription: Subscription, now: datetime, calendar: BillingCalendar) -> bool:
    """A canceled subscription given a plan again: it goes on; ended, it starts again today. True if it was."""
    if subscription.canceled_at is None:
        return False
    today = calendar.local_date(now)
    if subscription.ends_on is not None and subscription.ends_on < today:
        subscription.starts_on = today
    subscription.canceled_at = subscription.ends_on = subscription.ends_at = None
    return True


def ended_in_range(session: Session, after: str, last: str, now: datetime) -> set[tuple[str, str]]:
    """`ended_products` of the accounts whose ids sort after `after`, up to `last` (a page of the day-1 planner)."""
    query = _ended(now).where(Subscription.account_id > after, Subscription.account_id <= last)
    return {(account_id, product) for account_id, product in session.execute(query)}


def _ended(now: datetime) -> Select[str, str]:
    return select(Subscription.account_id, Subscription.product).where(
        Subscription.ends_at.is_not(None), Subscription.ends_at <= now
    )


WHOLE_READ_FROM = 20 * CHUNK
"""Past this many accounts, the ended subscriptions are read whole rather than a chunk of ids at a time."""


def ended_products(session: Session, account_ids: Sequence[str] | None, now: datetime) -> set[tuple[str, str]]:
    """The (account, product) pairs whose subscription has ended at `now`: no email, charge or block for them."""
    query = _ended(now)
    if account_ids is None:
        return {(account_id, product) for account_id, product in session.execute(query)}
    if len(account_ids) > WHOLE_READ_FROM:  # day 1 asks about every account: one read of them all, then a filter
        wanted = set(account_ids)
        return {(account_id, product) for account_id, product in session.execute(query) if account_id in wanted}
    return {
        (account_id, product)
        for chunk in chunks(sorted(set(account_ids)))
        for account_id, product in session.execute(query.where(Subscription.account_id.in_(chunk)))
    }
