"""The SPEC's rules as the check reads them, written here from the rule text, never asked of billing's code.

A check that asks the code it checks (the same constant, the same function) cannot catch that code's
mistake: a 4% discount or a block on day 8 would pass. Every figure below is the rule's own.
"""

from __future__ import annotations

import calendar
from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import Protocol
from zoneinfo import ZoneInfo

SPEC_TIMEZONE = ZoneInfo("America/Sao_Paulo")
"""REGUA_TIMEZONE's default: the calendar billing days are counted in."""

AUTO_DEBIT_PERCENT = 5
"""Rule 3.3: card_auto_debit invoices carry a 5% discount, rounded half-up to the centavo."""

MONTHS_OF = {"monthly": 1, "quarterly": 3, "semiannual": 6, "annual": 12}
"""Rules 3.1 and 3.2: a period covers 1, 3, 6 or 12 calendar months at the monthly price times months."""

DAYS_TO_PAY = 6
"""Rule 3.4: due on day 1, payable to the end of day 6; unpaid, it blocks from 00:00 of day 7."""

MENTORSHIP = "mentorship"


def half_up(numerator: int, denominator: int) -> int:
    """numerator / denominator, rounded half up (non-negative integers)."""
    return (2 * numerator + denominator) // (2 * denominator)


def auto_debit_discount(subtotal_cents: int) -> int:
    return half_up(subtotal_cents * AUTO_DEBIT_PERCENT, 100)


@lru_cache(maxsize=4096)
def block_instant(due_date: date, zone: ZoneInfo) -> datetime:
    """00:00 of day 7 in the billing time zone, day 1 being the due date itself."""
    day_7 = due_date + timedelta(days=DAYS_TO_PAY)
    return datetime.combine(day_7, time(0), tzinfo=zone).astimezone(UTC)


def _last_of_month(day: date) -> date:
    return day.replace(day=calendar.monthrange(day.year, day.month)[1])


def period_price(
    start: date, end: date, monthly_cents: int, frequency: str | None, first: bool, cut_from: date | None = None
) -> tuple[int | None, str]:
    """The subtotal the rules give a period, or None and why no price fits its shape.

    Calendar months (3.1, 3.2): from a day 1 to a month's last day, as many months as the frequency,
    at the monthly price times months. A part of a month (3.9, a trial's end; also a subscription that
    starts mid-month, where the SPEC is silent and the same rule is applied): only as a subscription's
    first invoice, to the end of that month, pro rata by day, rounded half up.
    """
    if cut_from is not None:  # a card plan lost an installment: each part is whole months of the period cut
        months = (end.year - start.year) * 12 + end.month - start.month + 1
        reach = (end.year - cut_from.year) * 12 + end.month - cut_from.month + 1
        longest = MONTHS_OF.get(frequency, 0) if frequency else 12
        if start.day != 1 or end != _last_of_month(end) or start < cut_from or reach > longest:
            return None, "a part of a cut period that is not whole months of it"
        return monthly_cents * months, ""
    if start.day != 1:
        if not first:
            return None, "part of a month, and not the subscription's first invoice"
        if end != _last_of_month(start):
            return None, "a first part of a month that does not end with its month"
        days_in_month = calendar.monthrange(start.year, start.month)[1]
        return half_up(monthly_cents * ((end - start).days + 1), days_in_month), ""
    if end != _last_of_month(end) or end < start:
        return None, "a period that does not end on the last day of a month"
    months = (end.year - start.year) * 12 + end.month - start.month + 1
    if frequency is None:  # the frequency in force when it was issued is not kept: any of the four
        if months not in MONTHS_OF.values():
            return None, f"{months} months is no frequency's period"
    elif months != MONTHS_OF.get(frequency):
        return None, f"{months} months for a {frequency} subscription"
    return monthly_cents * months, ""


def proration(monthly_difference_cents: int, period_start: date, period_end: date, first_day: date) -> int:
    """Rule 3.10: an upgrade invoices the monthly price difference for the rest of the current period, pro rata by
    days, rounded half up: the difference times the period's months, times the days left (from `first_day` to the
    period's end, both counted) over the days of the period. A period that is the rest of one month (a trial's end)
    is priced by that month's days."""
    days_left = (period_end - first_day).days + 1
    if period_start.day != 1:
        return half_up(
            monthly_difference_cents * days_left, calendar.monthrange(period_start.year, period_start.month)[1]
        )
    months = (period_end.year - period_start.year) * 12 + period_end.month - period_start.month + 1
    return half_up(monthly_difference_cents * months * days_left, (period_end - period_start).days + 1)


class Unpaid(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def due_date(self) -> date: ...
    @property
    def verifying_until(self) -> datetime | None: ...


def is_open(invoice: Unpaid, at: datetime) -> bool:
    """Open at `at`: not paid, and not in a verification window (3.7: after the window it is overdue again)."""
    if invoice.status == "open":
        return True
    return invoice.status == "verifying" and (invoice.verifying_until is None or invoice.verifying_until <= at)


def keeping_blocked(product: str, unpaid: Sequence[Unpaid], blocked: bool, at: datetime, zone: ZoneInfo) -> list[str]:
    """The invoices that keep (or make) a product blocked at `at`; none when it must be free.

    3.4: an open invoice past 00:00 of its day 7 blocks its own product, never the other one.
    3.5: platform: paying the overdue invoice is enough. 3.6: mentorship: once blocked, every
    invoice issued so far must be paid. 3.7: a verifying invoice blocks nothing while its window lasts.
    """
    open_now = [invoice for invoice in unpaid if is_open(invoice, at)]
    overdue = [invoice.id for invoice in open_now if block_instant(invoice.due_date, zone) <= at]
    if product == MENTORSHIP and (overdue or blocked):
        return [invoice.id for invoice in open_now]
    return overdue
