"""bench.e2e blocks its accounts whatever the day it runs: on days 1 to 6 it bills the month before."""

from __future__ import annotations

from datetime import date

import pytest

from bench.e2e import blocked_month, blocking_tick_instant


@pytest.mark.parametrize(
    ("today", "month"),
    [
        (date(2026, 12, 6), date(2026, 11, 1)),
        (date(2026, 12, 1), date(2026, 11, 1)),
        (date(2026, 12, 7), date(2026, 12, 1)),
        (date(2026, 12, 31), date(2026, 12, 1)),
        (date(2027, 1, 3), date(2026, 12, 1)),
    ],
)
def test_the_month_billed_is_one_already_past_its_tolerance(today: date, month: date) -> None:
    assert blocked_month(today) == month
    tick = blocking_tick_instant(month)
    assert (tick.date(), tick.hour, tick.minute) == (month.replace(day=7), 0, 10)
    assert tick.date() <= today  # the block instant has passed by the day the benchmark runs
