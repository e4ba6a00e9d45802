"""The shared clock in the database: read by every runtime on it, moved by `regua clock`."""

from __future__ import annotations

import sqlite3
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from billing.clock import FrozenClock
from billing.journal import TickRun
from billing.shared_clock import StoredClock, store_instant
from regua.migrate import upgrade
from regua.runtime import Runtime, build_runtime
from regua.settings import Settings
from tests.integration.test_cli import add_customer

SET_AT = datetime(2026, 12, 1, 3, 5, tzinfo=UTC)


@pytest.fixture
def system() -> FrozenClock:
    """The system time as a clock the test moves (a StoredClock caches its read for a second of it)."""
    return FrozenClock(datetime(2026, 11, 29, 22, 0, tzinfo=UTC))


@pytest.fixture
def shared(database_url: str) -> Runtime:
    runtime = build_runtime(Settings(env="test", database_url=database_url))
    yield runtime  # type: ignore[misc]
    runtime.close()


def test_the_clock_follows_the_system_time_until_it_is_set(shared: Runtime, system: FrozenClock) -> None:
    clock = StoredClock(shared.sessions, system)
    assert clock.now() == system.now()

    shared.transaction(lambda session: store_instant(session, SET_AT, system.now()))
    clock.forget()

    assert clock.now() == SET_AT
    system.set(system.now() + timedelta(days=3))
    assert clock.now() == SET_AT, "a set clock stands still until set or advanced again"
    clock.close()


def test_another_process_sees_the_clock_moved_within_a_second(shared: Runtime, system: FrozenClock) -> None:
    reader = StoredClock(shared.sessions, system)
    assert reader.now() == system.now()

    shared.transaction(lambda session: store_instant(session, SET_AT, system.now()))

    assert reader.now() == system.now(), "the read is kept for a second"
    system.set(system.now() + timedelta(seconds=1))
    deadline = time.monotonic() + 5
    while reader.now() != SET_AT:
        assert time.monotonic() < deadline, "the read was never renewed"
        time.sleep(0.01)
    reader.close()


def test_an_idle_process_sees_the_clock_moved_without_being_asked_first(shared: Runtime, system: FrozenClock) -> None:
    reader = StoredClock(shared.sessions, system)
    assert reader.now() == system.now()

    shared.transaction(lambda session: store_instant(session, SET_AT, system.now()))
    time.sleep(1.5)  # nobody asks it the time meanwhile (and the system time stands still)

    assert reader.now() == SET_AT, "the first answer after an idle spell was the instant read before it"
    reader.close()


def test_reading_the_clock_never_waits_for_a_writer_holding_sqlite(tmp_path: Path, system: FrozenClock) -> None:
    url = f"sqlite:///{tmp_path / 'regua.db'}"
    upgrade(url)
    runtime = build_runtime(Settings(env="test", database_url=url))
    clock = StoredClock(runtime.sessions, system)
    clock.now()
    writer = sqlite3.connect(tmp_path / "regua.db", isolation_level=None)
    try:
        writer.execute("BEGIN IMMEDIATE")  # another process's transaction holds the write lock
        system.set(system.now() + timedelta(seconds=5))
        started = time.monotonic()
        assert clock.now() == system.now()
        assert time.monotonic() - started < 0.5
    finally:
        writer.execute("ROLLBACK")
        writer.close()
        clock.close()
        runtime.close()


def test_runtimes_outside_production_read_the_shared_clock(shared: Runtime) -> None:
    assert isinstance(shared.clock, StoredClock)
    shared.transaction(lambda session: store_instant(session, SET_AT, SET_AT))
    shared.clock.forget()

    other = build_runtime(shared.settings)
    try:
        assert (shared.clock.now(), other.clock.now()) == (SET_AT, SET_AT)
    finally:
        other.close()


def test_a_database_not_migrated_yet_reads_as_the_system_time(tmp_path: Path, system: FrozenClock) -> None:
    runtime = build_runtime(Settings(env="test", database_url=f"sqlite:///{tmp_path / 'empty.db'}"))
    try:
        assert StoredClock(runtime.sessions, system).now() == system.now()
    finally:
        runtime.close()


# -- `regua clock` as a user runs it


@pytest.fixture
def migrated(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'regua.db'}"
    upgrade(url)
    return url


def clock(database_url: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    from tests.integration.test_cli import regua

    return regua(database_url, "clock", *args, env={"REGUA_SMTP_URL": "smtp://127.0.0.1:1", **(env or {})})


def test_setting_the_clock_reconciles_at_each_midnight_crossed_then_at_the_instant(migrated: str) -> None:
    add_customer(migrated)

    first = clock(migrated, "set", "2026-11-30T12:00")
    assert first.returncode == 0, first.stderr
    advanced = clock(migrated, "advance", "36h")
    assert advanced.returncode == 0, advanced.stderr

    lines = advanced.stdout.splitlines()
    assert lines[0].startswith("2026-12-01T00:00:00-03:00  invoices_issued 1")
    assert len(lines) == 2
    assert lines[1].startswith("2026-12-02T00:00:00-03:00"), "a move that ends at midnight reconciles there once"
    assert clock(migrated, "show").stdout.strip() == "2026-12-02T00:00:00-03:00 (set)"
    runtime = build_runtime(Settings(env="test", database_url=migrated))
    try:
        passes = runtime.read(lambda session: list(session.scalars(select(TickRun.now).order_by(TickRun.id))))
    finally:
        runtime.close()
    assert [instant.astimezone(UTC).isoformat() for instant in passes[-3:]] == [
        "2026-11-30T15:00:00+00:00",
        "2026-12-01T03:00:00+00:00",
        "2026-12-02T03:00:00+00:00",
    ]


def test_a_bad_duration_is_refused_naming_the_forms_accepted(migrated: str) -> None:
    refused = clock(migrated, "advance", "a week")

    assert refused.returncode == 2
    assert "6d, 36h, 90m" in refused.stderr


def test_the_clock_is_refused_in_production(migrated: str) -> None:
    refused = clock(migrated, "set", "2026-12-01T00:05", env={"REGUA_ENV": "production"})

    assert refused.returncode == 2
    assert "refused in production" in refused.stderr


def test_regua_now_forbids_moving_the_shared_clock_but_shows_its_instant(migrated: str) -> None:
    env = {"REGUA_NOW": "2026-12-01T00:05:00-03:00"}

    assert clock(migrated, "advance", "1d", env=env).returncode == 2
    assert clock(migrated, "show", env=env).stdout.strip() == "2026-12-01T00:05:00-03:00 (REGUA_NOW)"
