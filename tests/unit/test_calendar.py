"""The billing calendar: periods, due dates, the 6-day tolerance and the block instant (rules 3.1-3.4)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from billing.calendar import (
    BillingCalendar,
    Frequency,
    Period,
    add_months,
    billing_period,
    days_in_month,
    first_of_month,
    last_of_month,
    period_subtotal,
)
from billing.clock import FrozenClock, as_utc, parse_instant

SAO_PAULO = ZoneInfo("America/Sao_Paulo")
CALENDAR = BillingCalendar(SAO_PAULO)
PRICE = 19990

LEAP_YEARS = {2024, 2028}
DAYS_IN_MONTH = {1: 31, 2: 28, 3: 31, 4: 30, 5: 31, 6: 30, 7: 31, 8: 31, 9: 30, 10: 31, 11: 30, 12: 31}
MONTHS = [(year, month) for year in range(2024, 2029) for month in range(1, 13)]
MONTH_IDS = [f"{year}-{month:02d}" for year, month in MONTHS]
PREPAID = [Frequency.QUARTERLY, Frequency.SEMIANNUAL, Frequency.ANNUAL]


def expected_last_day(year: int, month: int) -> int:
    if month == 2 and year in LEAP_YEARS:
        return 29
    return DAYS_IN_MONTH[month]


def month_after(year: int, month: int, months: int) -> tuple[int, int]:
    """(year, month) `months` calendar months later, counted one month at a time."""
    for _ in range(months):
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return year, month


def test_the_calendar_covers_sixty_months_with_the_leap_februaries_of_2024_and_2028() -> None:
    assert len(MONTHS) == 60
    februaries = {year: expected_last_day(year, 2) for year in range(2024, 2029)}
    assert februaries == {2024: 29, 2025: 28, 2026: 28, 2027: 28, 2028: 29}


@pytest.mark.parametrize(("year", "month"), MONTHS, ids=MONTH_IDS)
def test_a_monthly_period_runs_from_day_1_to_the_last_day_of_its_month(year: int, month: int) -> None:
    period = billing_period(date(year, month, 1), Frequency.MONTHLY)

    assert period.start == date(year, month, 1)
    assert period.end == date(year, month, expected_last_day(year, month))
    assert period.days == expected_last_day(year, month)
    assert days_in_month(date(year, month, 15)) == expected_last_day(year, month)
    assert first_of_month(date(year, month, 15)) == period.start
    assert last_of_month(date(year, month, 15)) == period.end


@pytest.mark.parametrize(("year", "month"), MONTHS, ids=MONTH_IDS)
def test_a_whole_month_costs_the_monthly_price_whatever_its_length(year: int, month: int) -> None:
    period = billing_period(date(year, month, 1), Frequency.MONTHLY)

    assert period_subtotal(period, PRICE) == PRICE


@pytest.mark.parametrize(("year", "month"), MONTHS, ids=MONTH_IDS)
def test_an_invoice_due_on_day_1_may_be_paid_until_day_6(year: int, month: int) -> None:
    assert CALENDAR.last_day_to_pay(date(year, month, 1)) == date(year, month, 6)


@pytest.mark.parametrize(("year", "month"), MONTHS, ids=MONTH_IDS)
def test_an_invoice_due_on_day_1_blocks_at_midnight_of_day_7_in_sao_paulo(year: int, month: int) -> None:
    block_at = CALENDAR.block_at(date(year, month, 1))

    assert block_at == datetime(year, month, 7, 3, 0, tzinfo=UTC)
    assert block_at.utcoffset() == timedelta(0)
    assert CALENDAR.local(block_at) == datetime(year, month, 7, 0, 0, tzinfo=SAO_PAULO)
    assert CALENDAR.local(block_at).replace(tzinfo=None) == datetime(year, month, 7, 0, 0)


@pytest.mark.parametrize(("year", "month"), MONTHS, ids=MONTH_IDS)
def test_a_payment_at_23_59_of_day_6_in_sao_paulo_comes_before_the_block(year: int, month: int) -> None:
    block_at = CALENDAR.block_at(date(year, month, 1))
    paid_at = datetime(year, month, 6, 23, 59, tzinfo=SAO_PAULO)

    assert paid_at.astimezone(UTC).date() == date(year, month, 7), "already day 7 in UTC"
    assert paid_at < block_at
    assert CALENDAR.local_date(paid_at) == date(year, month, 6)
    assert CALENDAR.day_of_regua(date(year, month, 1), paid_at) == 6


@pytest.mark.parametrize(("year", "month"), MONTHS, ids=MONTH_IDS)
def test_midnight_of_day_7_in_sao_paulo_is_at_the_block_instant(year: int, month: int) -> None:
    block_at = CALENDAR.block_at(date(year, month, 1))
    midnight = datetime(year, month, 7, 0, 0, tzinfo=SAO_PAULO)

    assert midnight == block_at
    assert midnight - timedelta(microseconds=1) < block_at
    assert CALENDAR.day_of_regua(date(year, month, 1), midnight) == 7


@pytest.mark.parametrize(("year", "month"), MONTHS, ids=MONTH_IDS)
@pytest.mark.parametrize("frequency", PREPAID, ids=[f.value for f in PREPAID])
def test_a_prepaid_period_spans_its_calendar_months_at_the_monthly_price_times_months(
    year: int, month: int, frequency: Frequency
) -> None:
    months = {Frequency.QUARTERLY: 3, Frequency.SEMIANNUAL: 6, Frequency.ANNUAL: 12}[frequency]
    end_year, end_month = month_after(year, month, months - 1)
    next_year, next_month = month_after(year, month, months)

    period = billing_period(date(year, month, 1), frequency)

    assert frequency.months == months
    assert period.start == date(year, month, 1)
    assert period.end == date(end_year, end_month, expected_last_day(end_year, end_month))
    assert period.end + timedelta(days=1) == date(next_year, next_month, 1)
    assert period_subtotal(period, PRICE) == PRICE * months


def test_a_monthly_frequency_is_one_month() -> None:
    assert Frequency.MONTHLY.months == 1


def test_a_period_that_begins_mid_month_covers_the_rest_of_that_month_only() -> None:
    for frequency in Frequency:
        assert billing_period(date(2026, 12, 10), frequency) == Period(date(2026, 12, 10), date(2026, 12, 31))


def test_a_partial_month_is_priced_pro_rata_by_day_rounded_half_up() -> None:
    # 19990 * 22 / 31 = 14186.45...; 100 * 15 / 30 = 50 exactly; 31 * 16 / 31 = 16.
    assert period_subtotal(Period(date(2026, 12, 10), date(2026, 12, 31)), 19990) == 14186
    assert period_subtotal(Period(date(2026, 11, 16), date(2026, 11, 30)), 100) == 50
    assert period_subtotal(Period(date(2026, 12, 16), date(2026, 12, 31)), 31) == 16
    # 1 * 15 / 30 = 0.5 rounds up; 1 * 14 / 28 = 0.5 rounds up too.
    assert period_subtotal(Period(date(2026, 11, 16), date(2026, 11, 30)), 1) == 1
    assert period_subtotal(Period(date(2027, 2, 15), date(2027, 2, 28)), 1) == 1


def test_a_period_counts_both_of_its_ends() -> None:
    assert Period(date(2026, 12, 10), date(2026, 12, 31)).days == 22
    assert Period(date(2026, 12, 31), date(2026, 12, 31)).days == 1


@pytest.mark.parametrize(
    ("day", "months", "expected"),
    [
        (date(2028, 1, 31), 1, date(2028, 2, 29)),
        (date(2027, 1, 31), 1, date(2027, 2, 28)),
        (date(2024, 1, 30), 1, date(2024, 2, 29)),
        (date(2026, 3, 31), 1, date(2026, 4, 30)),
        (date(2026, 8, 31), 3, date(2026, 11, 30)),
        (date(2026, 11, 15), 3, date(2027, 2, 15)),
        (date(2026, 12, 1), 1, date(2027, 1, 1)),
        (date(2024, 2, 29), 12, date(2025, 2, 28)),
        (date(2024, 2, 29), 48, date(2028, 2, 29)),
        (date(2028, 3, 31), -1, date(2028, 2, 29)),
        (date(2027, 1, 15), -1, date(2026, 12, 15)),
        (date(2026, 5, 31), 0, date(2026, 5, 31)),
    ],
    ids=str,
)
def test_adding_months_keeps_the_day_clamped_to_the_end_of_a_shorter_month(
    day: date, months: int, expected: date
) -> None:
    assert add_months(day, months) == expected


@settings(max_examples=300)
@given(day=st.dates(min_value=date(2000, 1, 1), max_value=date(2100, 12, 31)), months=st.integers(-240, 240))
def test_adding_months_moves_exactly_that_many_calendar_months(day: date, months: int) -> None:
    result = add_months(day, months)

    assert (result.year * 12 + result.month) - (day.year * 12 + day.month) == months
    assert result.day == min(day.day, days_in_month(result))


@pytest.mark.parametrize("due_day", [1, 10, 28], ids=lambda d: f"due-on-{d}")
def test_the_block_instant_is_tolerance_days_after_the_due_date_at_local_midnight(due_day: int) -> None:
    due = date(2026, 12, due_day)

    assert CALENDAR.local(CALENDAR.block_at(due)) == datetime.combine(
        due + timedelta(days=6), datetime.min.time(), tzinfo=SAO_PAULO
    )
    assert CALENDAR.last_day_to_pay(due) == due + timedelta(days=5)


def test_the_due_date_is_day_1_of_the_regua() -> None:
    due = date(2026, 12, 1)

    assert CALENDAR.day_of_regua(due, datetime(2026, 12, 1, 0, 0, tzinfo=SAO_PAULO)) == 1
    assert CALENDAR.day_of_regua(due, datetime(2026, 11, 30, 23, 59, tzinfo=SAO_PAULO)) == 0
    assert CALENDAR.day_of_regua(due, datetime(2026, 12, 3, 12, 0, tzinfo=SAO_PAULO)) == 3


def test_the_start_of_a_local_day_is_a_utc_instant() -> None:
    start = CALENDAR.start_of_day(date(2026, 12, 1))

    assert start == datetime(2026, 12, 1, 3, 0, tzinfo=UTC)
    assert start.tzinfo is UTC


def test_another_time_zone_moves_the_block_instant() -> None:
    utc_calendar = BillingCalendar.named("UTC")

    assert utc_calendar.block_at(date(2026, 12, 1)) == datetime(2026, 12, 7, 0, 0, tzinfo=UTC)


def test_a_local_date_is_read_in_the_billing_time_zone() -> None:
    instant = datetime(2026, 12, 7, 2, 59, tzinfo=UTC)

    assert CALENDAR.local_date(instant) == date(2026, 12, 6)
    assert CALENDAR.local_date(instant + timedelta(minutes=1)) == date(2026, 12, 7)


def test_a_naive_datetime_is_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        as_utc(datetime(2026, 12, 7, 0, 0))
    with pytest.raises(ValueError, match="naive"):
        CALENDAR.local_date(datetime(2026, 12, 7, 0, 0))


def test_an_instant_is_parsed_with_its_offset_into_utc() -> None:
    assert parse_instant("2026-12-01T00:05:00-03:00") == datetime(2026, 12, 1, 3, 5, tzinfo=UTC)
    assert parse_instant("2026-12-01T03:05:00Z") == datetime(2026, 12, 1, 3, 5, tzinfo=UTC)
    assert parse_instant(" 2026-12-01T03:05:00+00:00 ").tzinfo is UTC


@pytest.mark.parametrize("text", ["2026-12-01T00:05:00", "2026-12-01", "tomorrow", ""])
def test_an_instant_without_an_offset_or_not_iso_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="instant"):
        parse_instant(text)


def test_a_frozen_clock_stands_still_until_it_is_moved() -> None:
    clock = FrozenClock(datetime(2026, 12, 1, 0, 5, tzinfo=SAO_PAULO))

    assert clock.now() == datetime(2026, 12, 1, 3, 5, tzinfo=UTC)
    assert clock.now() == clock.now()
    assert clock.now().tzinfo is UTC
    clock.set(datetime(2026, 12, 7, 0, 0, tzinfo=SAO_PAULO))
    assert clock.now() == datetime(2026, 12, 7, 3, 0, tzinfo=UTC)
    with pytest.raises(ValueError, match="naive"):
        clock.set(datetime(2026, 12, 7))
