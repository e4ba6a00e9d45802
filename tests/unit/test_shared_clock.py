"""The shared clock's arithmetic: durations, instants read in the billing time zone, day boundaries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from billing.clock import FrozenClock, SystemClock
from billing.shared_clock import StoredClock, day_boundaries, parse_duration, parse_local_instant
from regua.runtime import build_clock
from regua.settings import Settings

SAO_PAULO = ZoneInfo("America/Sao_Paulo")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("6d", timedelta(days=6)),
        ("36h", timedelta(hours=36)),
        ("90m", timedelta(minutes=90)),
        ("45s", timedelta(seconds=45)),
        ("1d12h", timedelta(days=1, hours=12)),
        (" 2D ", timedelta(days=2)),
    ],
)
def test_durations_are_read_in_days_hours_minutes_and_seconds(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "6", "6x", "d", "-1d", "0d", "6d and more", "1.5d"])
def test_anything_else_is_not_a_duration(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_an_instant_without_offset_is_read_in_the_billing_time_zone() -> None:
    assert parse_local_instant("2026-12-01T00:05", SAO_PAULO) == datetime(2026, 12, 1, 3, 5, tzinfo=UTC)


def test_an_instant_with_its_offset_keeps_it() -> None:
    assert parse_local_instant("2026-12-01T00:05:00Z", SAO_PAULO) == datetime(2026, 12, 1, 0, 5, tzinfo=UTC)


def test_a_text_that_is_no_instant_is_refused_with_an_example() -> None:
    with pytest.raises(ValueError, match="2026-12-01T00:05"):
        parse_local_instant("next tuesday", SAO_PAULO)


def local(text: str) -> datetime:
    return parse_local_instant(text, SAO_PAULO)


def test_advancing_six_days_from_just_after_midnight_crosses_six_midnights_in_order() -> None:
    start = local("2026-12-01T00:05")

    crossed = day_boundaries(start, start + timedelta(days=6), SAO_PAULO)

    assert crossed == [local(f"2026-12-{day:02d}T00:00") for day in range(2, 8)]


def test_a_start_at_midnight_is_not_crossed_and_an_end_at_midnight_is() -> None:
    assert day_boundaries(local("2026-12-01T00:00"), local("2026-12-02T00:00"), SAO_PAULO) == [
        local("2026-12-02T00:00")
    ]


def test_a_move_within_one_day_crosses_nothing() -> None:
    assert day_boundaries(local("2026-12-01T00:05"), local("2026-12-01T23:59"), SAO_PAULO) == []


def test_midnights_are_counted_in_the_billing_time_zone_not_in_utc() -> None:
    # 22:00 to 04:00 in São Paulo is 01:00 to 07:00 UTC: the UTC midnight is not crossed, the local one is.
    crossed = day_boundaries(local("2026-12-01T22:00"), local("2026-12-02T04:00"), SAO_PAULO)

    assert crossed == [datetime(2026, 12, 2, 3, 0, tzinfo=UTC)]


def test_production_reads_only_the_system_clock() -> None:
    assert isinstance(build_clock(Settings(env="production"), sessions=None), SystemClock)  # type: ignore[arg-type]


@pytest.mark.parametrize("env", ["dev", "test"])
def test_regua_now_still_freezes_one_process_outside_production(env: str) -> None:
    frozen = datetime(2026, 12, 1, 3, 5, tzinfo=UTC)

    clock = build_clock(Settings(env=env, now=frozen), sessions=None)  # type: ignore[arg-type]

    assert isinstance(clock, FrozenClock)
    assert clock.now() == frozen


@pytest.mark.parametrize("env", ["dev", "test"])
def test_outside_production_every_process_reads_the_shared_clock(env: str) -> None:
    assert isinstance(build_clock(Settings(env=env), sessions=None), StoredClock)  # type: ignore[arg-type]
