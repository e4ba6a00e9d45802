"""`regua migrate` and `regua tick` run as a user runs them: a separate process on an SQLite file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from starlette.testclient import TestClient

from billing.accounts import AccountInput, SubscriptionInput, upsert_account, upsert_subscription
from billing.clock import FrozenClock, parse_instant
from billing.models import Invoice
from regua.app import create_app
from regua.assembly import build_providers
from regua.migrate import upgrade
from regua.runtime import build_runtime
from regua.settings import Settings
from tests.integration.conftest import PADARIA, subscription

START = "2026-12-01T00:05:00-03:00"


def regua(database_url: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run `regua ARGS` in a clean environment (no REGUA_* from outside, no `.env` in its directory)."""
    environ = {key: value for key, value in os.environ.items() if not key.startswith("REGUA_")}
    environ.update({"REGUA_ENV": "test", "REGUA_DATABASE_URL": database_url, **(env or {})})
    return subprocess.run(
        [sys.executable, "-m", "regua.cli", *args],
        cwd=Path(database_url.removeprefix("sqlite:///")).parent,
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def counts(output: str) -> dict[str, int]:
    """`invoices_issued 1` lines as a mapping."""
    pairs = (line.split() for line in output.splitlines() if line.strip())
    return {name: int(value) for name, value in pairs}


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'regua.db'}"


def add_customer(database_url: str) -> None:
    """One account with a monthly boleto platform subscription from 1/12, written as the API would."""
    runtime = build_runtime(Settings(env="test", database_url=database_url), clock=FrozenClock(parse_instant(START)))
    now = runtime.clock.now()

    def work(session: Session) -> None:
        upsert_account(session, "padaria-central", AccountInput.parse(PADARIA, runtime.calendar), now)
        upsert_subscription(
            session,
            "padaria-central",
            "platform",
            SubscriptionInput.parse(subscription()),
            now,
            runtime.calendar,
        )

    try:
        runtime.transaction(work)
    finally:
        runtime.close()


def invoice_count(database_url: str) -> int:
    runtime = build_runtime(Settings(env="test", database_url=database_url))
    try:
        return runtime.read(lambda session: int(session.scalar(select(func.count()).select_from(Invoice)) or 0))
    finally:
        runtime.close()


@pytest.fixture
def migrated(database_url: str) -> str:
    """A migrated SQLite file (migrated in process, to keep the suite fast) holding one customer."""
    upgrade(database_url)
    add_customer(database_url)
    return database_url


def test_tick_on_an_unmigrated_database_exits_2_naming_regua_migrate(database_url: str) -> None:
    result = regua(database_url, "tick", "--now", START)
    assert result.returncode == 2
    assert "regua migrate" in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_after_migrate_tick_prints_one_line_per_action_and_does_nothing_the_second_time(
    database_url: str,
) -> None:
    migrate = regua(database_url, "migrate")
    assert migrate.returncode == 0, migrate.stderr
    assert "migrated" in migrate.stdout
    add_customer(database_url)

    first = regua(database_url, "tick", "--now", START)
    assert first.returncode == 0, first.stderr
    assert "invoices_issued 1" in first.stdout.splitlines()
    assert counts(first.stdout)["blocks_applied"] == 0

    second = regua(database_url, "tick", "--now", START)
    assert second.returncode == 0, second.stderr
    assert "invoices_issued 0" in second.stdout.splitlines()
    assert set(counts(second.stdout).values()) == {0}
    assert invoice_count(database_url) == 1


def test_tick_with_json_prints_one_json_object_of_counts(migrated: str) -> None:
    result = regua(migrated, "tick", "--now", START, "--json")
    assert result.returncode == 0, result.stderr
    [line] = result.stdout.splitlines()
    report = json.loads(line)
    assert isinstance(report, dict)
    assert report["invoices_issued"] == 1
    assert report["blocks_applied"] == 0
    assert all(isinstance(value, int) for value in report.values())
    assert set(report) >= {"invoices_issued", "trials_ended", "verifications_expired", "blocks_applied"}


def test_tick_on_day_seven_applies_the_block(migrated: str) -> None:
    result = regua(migrated, "tick", "--now", "2026-12-07T00:01:00-03:00")
    assert result.returncode == 0, result.stderr
    assert "blocks_applied 1" in result.stdout.splitlines()
    assert "invoices_issued 1" in result.stdout.splitlines()


def test_after_the_day_seven_tick_the_access_api_says_blocked_whatever_the_server_clock(migrated: str) -> None:
    assert regua(migrated, "tick", "--now", "2026-12-07T00:01:00-03:00").returncode == 0
    server_clock = FrozenClock(parse_instant("2026-11-23T10:00:00-03:00"))  # a server that is not ahead
    runtime = build_runtime(Settings(env="test", database_url=migrated), clock=server_clock)
    app = create_app(runtime, build_providers(runtime.settings), lambda _ids: None)
    with TestClient(app) as client:
        access = client.get("/api/accounts/padaria-central/access").json()["products"]["platform"]
    assert (access["state"], access["blocked_since"]) == ("blocked", "2026-12-07T00:01:00-03:00")


def test_tick_refuses_now_in_production(migrated: str) -> None:
    result = regua(migrated, "tick", "--now", START, env={"REGUA_ENV": "production"})
    assert result.returncode == 2
    assert "--now" in result.stderr
    assert "production" in result.stderr
    assert result.stdout == ""
    assert invoice_count(migrated) == 0


def test_tick_refuses_an_instant_without_its_offset(migrated: str) -> None:
    result = regua(migrated, "tick", "--now", "2026-12-01T00:05:00")
    assert result.returncode == 2
    assert "--now" in result.stderr
