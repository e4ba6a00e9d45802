"""The billing calendar: periods, due dates, tolerance and block instants, counted in one time zone."""

from __future__ import annotations

import calendar as _stdlib_calendar
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from billing.clock import as_utc
from billing.money import divide_half_up

TOLERANCE_DAYS = 6
"""An invoice due on day 1 may be paid until the end of day 6; the block starts at 00:00 of day 7."""


class Frequency(StrEnum):
    MONTHLY = "monthly"
    QUARTERLY = "quarterly"
    SEMIANNUAL = "semiannual"
    ANNUAL = "annual"

    @property
    def months(self) -> int:
        return _MONTHS[self]


_MONTHS = {
    Frequency.MONTHLY: 1,
    Frequency.QUARTERLY: 3,
    Frequency.SEMIANNUAL: 6,
    Frequency.ANNUAL: 12,
}


@dataclass(frozen=True)
class Period:
    """The days an invoice pays for, both ends included."""

    start: date
    end: date

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1


def days_in_month(day: date) -> int:
    return _stdlib_calendar.monthrange(day.year, day.month)[1]


def first_of_month(day: date) -> date:
    return day.replace(day=1)


def last_of_month(day: date) -> date:
    return day.replace(day=days_in_month(day))


def add_months(day: date, months: int) -> date:
    """The same day `months` later, clamped to the end of a shorter month (31/01 + 1 = 29/02)."""
    index = day.year * 12 + (day.month - 1) + months
    year, month = divmod(index, 12)
    month += 1
    return date(year, month, min(day.day, _stdlib_calendar.monthrange(year, month)[1]))


def billing_period(start: date, frequency: Frequency) -> Period:
    """The period that begins on `start`.

    A period that begins on day 1 covers whole calendar months (1, 3, 6 or 12 of them). One that
    begins on another day (a trial ending, a subscription starting mid-month) covers the rest of
    that month only, pro rata, so that every later period begins on a day 1 again.
    """
    if start.day != 1:
        return Period(start, last_of_month(start))
    return Period(start, add_months(start, frequency.months) - timedelta(days=1))


def period_subtotal(period: Period, monthly_price_cents: int) -> int:
    """The price of a period: whole months at the monthly price, a partial month pro rata by day."""
    if period.start.day == 1 and period.end == last_of_month(period.end):
        months = (period.end.year - period.start.year) * 12 + period.end.month - period.start.month + 1
        return monthly_price_cents * months
    return divide_half_up(monthly_price_cents * period.days, days_in_month(period.start))


@dataclass(frozen=True)
class BillingCalendar:
    """Dates and instants of the régua in the configured time zone (America/Sao_Paulo by default)."""

    zone: ZoneInfo

    @classmethod
    def named(cls, name: str) -> BillingCalendar:
        return cls(ZoneInfo(name))

    def local_date(self, instant: datetime) -> date:
        return as_utc(instant).astimezone(self.zone).date()

    def local(self, instant: datetime) -> datetime:
        return as_utc(instant).astimezone(self.zone)

    def start_of_day(self, day: date) -> datetime:
        """00:00 of `day` in the billing time zone, as a UTC instant."""
        return as_utc(datetime.combine(day, time(0), tzinfo=self.zone))

    def last_day_to_pay(self, due_date: date) -> date:
        """The end of the tolerance: day 6 for an invoice due on day 1."""
        return due_date + timedelta(days=TOLERANCE_DAYS - 1)

    def block_at(self, due_date: date) -> datetime:
        """00:00 of day 7 for an invoice due on day 1: the instant an unpaid invoice blocks."""
        return self.start_of_day(due_date + timedelta(days=TOLERANCE_DAYS))

    def day_of_regua(self, due_date: date, instant: datetime) -> int:
        """Which day of the régua `instant` falls on: 1 on the due date, 7 on the day blocks begin."""
        return (self.local_date(instant) - due_date).days + 1
