"""Where the email pass after a webhook starts looking for what happened."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from workers.mailing import kick_window_start

NOW = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)


def test_the_first_pass_of_a_process_looks_an_hour_back() -> None:
    assert kick_window_start(NOW, None) == NOW - timedelta(hours=1)


def test_a_later_pass_looks_from_half_a_minute_before_the_previous_one() -> None:
    previous = NOW - timedelta(seconds=2)
    assert kick_window_start(NOW, previous) == previous - timedelta(seconds=30)


def test_after_a_long_quiet_it_still_looks_no_more_than_an_hour_back() -> None:
    assert kick_window_start(NOW, NOW - timedelta(hours=5)) == NOW - timedelta(hours=1)


def test_a_clock_moved_back_since_the_previous_pass_gets_the_whole_hour() -> None:
    assert kick_window_start(NOW, NOW + timedelta(days=3)) == NOW - timedelta(hours=1)


def test_a_clock_standing_still_still_sees_what_happened_at_its_instant() -> None:
    assert kick_window_start(NOW, NOW) <= NOW - timedelta(seconds=30)
