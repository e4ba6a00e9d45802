"""Which invoices are due and for how much: calendar months, prepaid periods, discount, trial pro rata."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from fractions import Fraction
from itertools import pairwise
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from billing.calendar import BillingCalendar, Frequency, Period, days_in_month
from billing.invoicing import _invoice_row, draft_invoice, due_periods, first_billable_day
from billing.models import InvoiceStatus, PaymentMethod

SAO_PAULO = ZoneInfo("America/Sao_Paulo")
CALENDAR = BillingCalendar(SAO_PAULO)
PRICE = 19990
TRIAL_END = datetime(2026, 12, 10, 0, 0, tzinfo=SAO_PAULO)
DECEMBER_REST = Period(date(2026, 12, 10), date(2026, 12, 31))
NO_DISCOUNT = [PaymentMethod.BOLETO, PaymentMethod.PIX, PaymentMethod.CARD]


def local(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=SAO_PAULO)


def half_up(value: Fraction) -> int:
    whole = value.numerator // value.denominator
    return whole + 1 if value - whole >= Fraction(1, 2) else whole


def issued_row(period: Period, payment_method: str, now: datetime) -> dict[str, object]:
    subscription = SimpleNamespace(
        id="sub_1",
        account_id="padaria-central",
        product="platform",
        payment_method=payment_method,
        monthly_price_cents=PRICE,
    )
    return _invoice_row(subscription, draft_invoice(period, PRICE, payment_method), now, CALENDAR)


# Amounts.


def test_the_spec_example_auto_debit_invoice_is_19990_less_1000_making_18990() -> None:
    draft = draft_invoice(Period(date(2026, 12, 1), date(2026, 12, 31)), 19990, PaymentMethod.CARD_AUTO_DEBIT)

    assert (draft.subtotal_cents, draft.discount_cents, draft.total_cents) == (19990, 1000, 18990)


@pytest.mark.parametrize("method", NO_DISCOUNT)
def test_a_manual_monthly_invoice_has_no_discount(method: str) -> None:
    draft = draft_invoice(Period(date(2026, 12, 1), date(2026, 12, 31)), 19990, method)

    assert (draft.subtotal_cents, draft.discount_cents, draft.total_cents) == (19990, 0, 19990)


@pytest.mark.parametrize(
    ("frequency", "months"), [(Frequency.QUARTERLY, 3), (Frequency.SEMIANNUAL, 6), (Frequency.ANNUAL, 12)]
)
@pytest.mark.parametrize("method", NO_DISCOUNT)
def test_a_prepaid_invoice_costs_the_monthly_price_times_its_months(
    frequency: Frequency, months: int, method: str
) -> None:
    [period] = due_periods(date(2027, 1, 1), frequency, None, local(2027, 1, 1), CALENDAR)
    draft = draft_invoice(period, PRICE, method)

    assert (draft.subtotal_cents, draft.discount_cents, draft.total_cents) == (
        PRICE * months,
        0,
        PRICE * months,
    )


@settings(max_examples=300)
@given(price=st.integers(min_value=0, max_value=10**9), year=st.integers(2024, 2028), month=st.integers(1, 12))
def test_an_auto_debit_month_takes_five_percent_off_rounded_half_up(price: int, year: int, month: int) -> None:
    period = Period(date(year, month, 1), date(year, month, days_in_month(date(year, month, 1))))

    draft = draft_invoice(period, price, PaymentMethod.CARD_AUTO_DEBIT)

    assert draft.subtotal_cents == price
    assert draft.discount_cents == half_up(Fraction(price * 5, 100))
    assert draft.total_cents == price - draft.discount_cents


# Trial pro rata (rule 3.9).


def test_billing_begins_on_the_day_the_trial_ends() -> None:
    assert first_billable_day(date(2026, 11, 20), TRIAL_END, CALENDAR) == date(2026, 12, 10)


def test_billing_begins_on_the_start_date_without_a_trial() -> None:
    assert first_billable_day(date(2026, 12, 1), None, CALENDAR) == date(2026, 12, 1)


def test_a_subscription_starting_after_the_trial_begins_billing_on_its_start_date() -> None:
    assert first_billable_day(date(2027, 1, 1), TRIAL_END, CALENDAR) == date(2027, 1, 1)


def test_the_day_a_trial_ends_is_counted_in_sao_paulo_not_in_utc() -> None:
    # 23:30 of 09/12 in São Paulo is already 10/12 in UTC.
    late_evening = datetime(2026, 12, 10, 2, 30, tzinfo=UTC)

    assert first_billable_day(date(2026, 11, 1), late_evening, CALENDAR) == date(2026, 12, 9)


def test_a_trial_ending_on_10_12_2026_bills_10_to_31_december_at_22_31_of_the_price() -> None:
    first_day = first_billable_day(date(2026, 11, 20), TRIAL_END, CALENDAR)

    [period] = due_periods(first_day, Frequency.MONTHLY, TRIAL_END, local(2026, 12, 10, 0, 5), CALENDAR)
    draft = draft_invoice(period, PRICE, PaymentMethod.BOLETO)

    assert period == DECEMBER_REST
    assert period.days == 22
    assert draft.subtotal_cents == half_up(Fraction(PRICE * 22, 31)) == 14186
    assert (draft.discount_cents, draft.total_cents) == (0, 14186)


def test_the_pro_rata_invoice_is_due_on_10_12_and_blocks_at_midnight_of_16_12() -> None:
    row = issued_row(DECEMBER_REST, PaymentMethod.BOLETO, local(2026, 12, 10, 0, 5))

    assert row["period_start"] == date(2026, 12, 10)
    assert row["period_end"] == date(2026, 12, 31)
    assert row["due_date"] == date(2026, 12, 10)
    assert row["block_at"] == datetime(2026, 12, 16, 3, 0, tzinfo=UTC)
    assert row["block_at"] == local(2026, 12, 16)
    assert CALENDAR.last_day_to_pay(date(2026, 12, 10)) == date(2026, 12, 15)
    assert (row["subtotal_cents"], row["discount_cents"], row["total_cents"]) == (14186, 0, 14186)
    assert row["status"] == InvoiceStatus.OPEN


def test_an_auto_debit_pro_rata_invoice_takes_five_percent_off_its_subtotal_too() -> None:
    draft = draft_invoice(DECEMBER_REST, PRICE, PaymentMethod.CARD_AUTO_DEBIT)

    # 5% of 141.86 is 7.093.
    assert (draft.subtotal_cents, draft.discount_cents, draft.total_cents) == (14186, 709, 13477)
    row = issued_row(DECEMBER_REST, PaymentMethod.CARD_AUTO_DEBIT, local(2026, 12, 10, 0, 5))
    assert (row["subtotal_cents"], row["discount_cents"], row["total_cents"]) == (14186, 709, 13477)


def test_after_the_pro_rata_invoice_the_next_period_starts_on_1_january() -> None:
    periods = due_periods(date(2026, 12, 10), Frequency.MONTHLY, TRIAL_END, local(2027, 1, 1), CALENDAR)

    assert periods == [DECEMBER_REST, Period(date(2027, 1, 1), date(2027, 1, 31))]
    assert draft_invoice(periods[1], PRICE, PaymentMethod.BOLETO).subtotal_cents == PRICE


def test_a_prepaid_plan_after_a_trial_bills_the_rest_of_the_month_then_whole_quarters() -> None:
    periods = due_periods(date(2026, 12, 10), Frequency.QUARTERLY, TRIAL_END, local(2027, 4, 1), CALENDAR)

    assert periods == [
        DECEMBER_REST,
        Period(date(2027, 1, 1), date(2027, 3, 31)),
        Period(date(2027, 4, 1), date(2027, 6, 30)),
    ]
    assert [draft_invoice(p, PRICE, PaymentMethod.PIX).subtotal_cents for p in periods] == [
        14186,
        PRICE * 3,
        PRICE * 3,
    ]


def test_a_trial_that_ends_on_day_1_bills_a_whole_month() -> None:
    trial_end = local(2027, 1, 1)
    first_day = first_billable_day(date(2026, 12, 1), trial_end, CALENDAR)

    [period] = due_periods(first_day, Frequency.MONTHLY, trial_end, trial_end, CALENDAR)

    assert period == Period(date(2027, 1, 1), date(2027, 1, 31))
    assert draft_invoice(period, PRICE, PaymentMethod.BOLETO).subtotal_cents == PRICE


@settings(max_examples=300)
@given(
    price=st.integers(min_value=0, max_value=10**7),
    trial_end=st.dates(min_value=date(2024, 1, 1), max_value=date(2028, 12, 31)),
    method=st.sampled_from(list(PaymentMethod)),
)
def test_a_trial_ending_mid_month_bills_the_remaining_days_pro_rata_rounded_half_up(
    price: int, trial_end: date, method: str
) -> None:
    ends_at = datetime(trial_end.year, trial_end.month, trial_end.day, 9, 0, tzinfo=SAO_PAULO)
    month_days = days_in_month(trial_end)
    remaining = month_days - trial_end.day + 1

    [period] = due_periods(trial_end, Frequency.MONTHLY, ends_at, ends_at, CALENDAR)
    draft = draft_invoice(period, price, method)

    assert period.start == trial_end
    assert period.end == date(trial_end.year, trial_end.month, month_days)
    assert draft.subtotal_cents == half_up(Fraction(price * remaining, month_days))
    expected_discount = half_up(Fraction(draft.subtotal_cents, 20)) if method == PaymentMethod.CARD_AUTO_DEBIT else 0
    assert draft.discount_cents == expected_discount
    assert draft.total_cents == draft.subtotal_cents - expected_discount
    row = issued_row(period, method, ends_at)
    assert row["due_date"] == trial_end
    assert row["block_at"] == CALENDAR.start_of_day(trial_end + timedelta(days=6))


# When periods become due (rule 3.8: issue what is missing at `now`).


def test_no_invoice_is_due_while_the_trial_lasts_even_on_its_last_day() -> None:
    trial_end = local(2026, 12, 10, 15)

    assert due_periods(date(2026, 12, 10), Frequency.MONTHLY, trial_end, local(2026, 12, 10, 14, 59), CALENDAR) == []
    assert due_periods(date(2026, 12, 10), Frequency.MONTHLY, trial_end, trial_end, CALENDAR) == [DECEMBER_REST]


def test_a_month_is_not_due_at_23_59_of_the_day_before_and_is_due_at_midnight_of_day_1() -> None:
    # 23:59 of 31/12 in São Paulo is already 01/01 in UTC.
    assert due_periods(date(2027, 1, 1), Frequency.MONTHLY, None, local(2026, 12, 31, 23, 59), CALENDAR) == []
    assert due_periods(date(2027, 1, 1), Frequency.MONTHLY, None, local(2027, 1, 1), CALENDAR) == [
        Period(date(2027, 1, 1), date(2027, 1, 31))
    ]


def test_the_next_invoice_comes_on_the_next_day_1_whatever_day_the_last_one_was_paid() -> None:
    # December paid on day 6: January's period is still 01/01 to 31/01, due at 00:00 of 01/01.
    assert due_periods(date(2027, 1, 1), Frequency.MONTHLY, None, local(2026, 12, 6, 18), CALENDAR) == []
    [january] = due_periods(date(2027, 1, 1), Frequency.MONTHLY, None, local(2027, 1, 1, 0, 1), CALENDAR)
    assert january == Period(date(2027, 1, 1), date(2027, 1, 31))


def test_a_pass_after_a_gap_catches_up_every_missing_month() -> None:
    periods = due_periods(date(2026, 12, 1), Frequency.MONTHLY, None, local(2027, 3, 15), CALENDAR)

    assert periods == [
        Period(date(2026, 12, 1), date(2026, 12, 31)),
        Period(date(2027, 1, 1), date(2027, 1, 31)),
        Period(date(2027, 2, 1), date(2027, 2, 28)),
        Period(date(2027, 3, 1), date(2027, 3, 31)),
    ]


@pytest.mark.parametrize(
    ("frequency", "count"),
    [(Frequency.MONTHLY, 60), (Frequency.QUARTERLY, 20), (Frequency.SEMIANNUAL, 10), (Frequency.ANNUAL, 5)],
)
def test_five_years_of_periods_are_contiguous_and_each_begins_on_a_day_1(frequency: Frequency, count: int) -> None:
    periods = due_periods(date(2024, 1, 1), frequency, None, local(2028, 12, 31, 23, 59), CALENDAR)

    assert len(periods) == count
    assert periods[0].start == date(2024, 1, 1)
    assert periods[-1].end == date(2028, 12, 31)
    assert all(period.start.day == 1 for period in periods)
    assert all(a.end + timedelta(days=1) == b.start for a, b in pairwise(periods))
    assert sum(period.days for period in periods) == 366 + 365 + 365 + 365 + 366


def test_nothing_is_due_before_the_subscription_starts() -> None:
    assert due_periods(date(2027, 1, 1), Frequency.MONTHLY, None, local(2026, 12, 15), CALENDAR) == []
