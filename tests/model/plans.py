"""Rule 3.10 written again from its text, for monthly subscriptions: what a change of price, a cancellation and a
return do to the invoices, the charges and the access of a subscription.

Nothing here asks billing.plan_changes how it decides:

  - a dearer monthly price at the same frequency is an upgrade, at once: the difference for the rest of the
    current period is invoiced now (kind `proration`, due today): difference x months of the period x days
    left (today and the period's last day counted) / days of the period, rounded half up; the rest of a
    partial month (a first month begun on another day) is priced by that month's days; 5% of it off for
    card auto-debit (half up); nothing is invoiced when it rounds to nothing;
  - any other price waits for the next period, whose invoice is issued at it; the price in force sent
    again drops a change that waits;
  - a cancellation ends the subscription at the end of the period already issued: no invoice for a later
    period, and from 00:00 after its last day no block, charge or email; access `canceled`, and what was
    issued and is unpaid stays owed; nothing waits for a period that never comes;
  - a plan chosen again reactivates it: before its end it simply goes on; after, it starts again that day
    (the rest of that month pro rata) and the months in between are never billed.
"""

from __future__ import annotations

from calendar import monthrange
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from tests.model.oracle import AUTO_DEBIT_DISCOUNT_PERCENT, first_of_next_month, half_up, local_midnight, period_starts


@dataclass(frozen=True)
class Proration:
    """The upgrade's invoice as the rule prices it."""

    subtotal_cents: int
    discount_cents: int

    @property
    def total_cents(self) -> int:
        return self.subtotal_cents - self.discount_cents


def proration(old_price: int, new_price: int, today: date, method: str) -> Proration:
    """The difference for the rest of a monthly period holding `today`, by the month's days (a whole month and
    the rest of a partial one alike: one month of the difference, over the days of that month)."""
    days_in_month = monthrange(today.year, today.month)[1]
    days_left = days_in_month - today.day + 1
    subtotal = half_up((new_price - old_price) * days_left, days_in_month)
    discount = half_up(subtotal * AUTO_DEBIT_DISCOUNT_PERCENT, 100) if method == "card_auto_debit" else 0
    return Proration(subtotal, discount)


@dataclass
class Plan:
    """One subscription's terms and life, as the test asked for them."""

    method: str
    price: int
    spans: list[tuple[date, date | None]]
    """Each stretch the subscription lived: its first day and, once canceled, its last day."""
    waiting_price: int | None = None
    waiting_from: date | None = None
    upgraded_on: date | None = None
    """The last day an upgrade was invoiced (a second one that day is not played: see changes.py)."""
    quiet: list[tuple[datetime, datetime | None]] = field(default_factory=list)
    """The stretches after an end and before a return: no invoice, block, dunning charge or email in them."""

    @property
    def ends_on(self) -> date | None:
        return self.spans[-1][1]

    @property
    def ends_at(self) -> datetime | None:
        return None if self.ends_on is None else local_midnight(self.ends_on + timedelta(days=1))

    def ended(self, now: datetime) -> bool:
        return self.ends_at is not None and now >= self.ends_at

    @property
    def asked(self) -> int:
        """The price the customer last chose: the one waiting, else the one in force."""
        return self.price if self.waiting_price is None else self.waiting_price

    def issued_months(self, today: date) -> list[date]:
        """The periods issued by `today`: every month of every stretch lived, none after an end."""
        months: list[date] = []
        for start, end in self.spans:
            months += period_starts(start, today if end is None else min(today, end))
        return months

    def price_of(self, period_start: date) -> int:
        """The monthly price of a period issued now: a change that waits applies from its period on."""
        if self.waiting_price is not None and self.waiting_from is not None and period_start >= self.waiting_from:
            self.price, self.waiting_price, self.waiting_from = self.waiting_price, None, None
        return self.price

    def put(self, price: int, now: datetime, today: date) -> Proration | None:
        """A PUT of the subscription at `price`: what it does by the rule; the upgrade's invoice when one is due."""
        if self.ends_on is not None:  # a plan chosen again: back, before the end or after it
            start, _ = self.spans[-1]
            if self.ended(now):
                self.quiet[-1] = (self.quiet[-1][0], now)
                self.spans.append((today, None))
            else:
                self.spans[-1] = (start, None)
                self.quiet.pop()
        if price == self.price:
            self.waiting_price = self.waiting_from = None
            return None
        if not [month for month in self.issued_months(today) if (month.year, month.month) == (today.year, today.month)]:
            self.price, self.waiting_price, self.waiting_from = price, None, None  # nothing issued this month yet
            return None
        if price < self.price:
            self.waiting_price, self.waiting_from = price, first_of_next_month(today)
            return None
        invoiced = proration(self.price, price, today, self.method)
        self.price, self.waiting_price, self.waiting_from = price, None, None
        self.upgraded_on = today
        return invoiced if invoiced.subtotal_cents else None

    def cancel(self, today: date) -> date:
        """Canceled: the end of the period already issued (this month's, the test having ticked), else yesterday."""
        if self.ends_on is not None:
            return self.ends_on
        issued = [month for month in self.issued_months(today) if month <= today]
        last_day = first_of_next_month(issued[-1]) - timedelta(days=1) if issued else today - timedelta(days=1)
        if last_day < today:
            last_day = today - timedelta(days=1)
        start, _ = self.spans[-1]
        self.spans[-1] = (start, last_day)
        self.waiting_price = self.waiting_from = None
        assert self.ends_at is not None
        self.quiet.append((self.ends_at, None))
        return last_day

    def quiet_at(self, instant: datetime) -> bool:
        """Whether `instant` falls after an end and before the return that followed it (if any)."""
        return any(start <= instant and (end is None or instant < end) for start, end in self.quiet)
