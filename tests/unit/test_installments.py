"""The pure parts of fitting a card plan's months to its money: months of a period, and a due date of today."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from billing.installments import due_at_once, month_starts
from billing.models import Invoice


def invoice(
    start: date, end: date, subtotal: int, *, zone: str = "America/Sao_Paulo", due: date | None = None
) -> Invoice:
    due = due or start
    block_at = datetime.combine(due + timedelta(days=6), time(0), tzinfo=ZoneInfo(zone)).astimezone(UTC)
    return Invoice(
        period_start=start,
        period_end=end,
        due_date=due,
        block_at=block_at,
        subtotal_cents=subtotal,
        discount_cents=0,
        total_cents=subtotal,
    )


def test_a_quarter_is_three_months_each_at_a_third_of_its_price() -> None:
    quarter = invoice(date(2026, 12, 1), date(2027, 2, 28), 59970)
    assert month_starts(quarter) == [date(2026, 12, 1), date(2027, 1, 1), date(2027, 2, 1)]


def test_part_of_a_month_or_a_price_that_does_not_split_into_whole_months_stands_whole() -> None:
    assert month_starts(invoice(date(2026, 12, 10), date(2026, 12, 31), 14186)) == [date(2026, 12, 10)]
    assert month_starts(invoice(date(2026, 12, 1), date(2027, 2, 28), 59971)) == [date(2026, 12, 1)]


@pytest.mark.parametrize("zone", ["America/Sao_Paulo", "UTC", "Asia/Tokyo", "America/Los_Angeles"])
def test_an_invoicedue_at_once_is_due_today_in_its_zone_and_blocks_at_00_00_of_day_seven(zone: str) -> None:
    quarter = invoice(date(2026, 12, 1), date(2027, 2, 28), 59970, zone=zone)
    now = datetime(2027, 1, 10, 23, 30, tzinfo=ZoneInfo(zone))  # late on the 10th, local time

    due, block_at = due_at_once(quarter, now.astimezone(UTC))

    assert due == date(2027, 1, 10)
    assert block_at == datetime(2027, 1, 16, 0, 0, tzinfo=ZoneInfo(zone))
