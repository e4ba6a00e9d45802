"""The CLI's answers to the usual slips: a database file that is not there, an event id that is not stored."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from billing.clock import parse_instant
from billing.journal import WebhookEvent
from billing.models import EventStatus
from regua.migrate import upgrade
from regua.runtime import build_runtime
from regua.settings import Settings
from tests.integration.test_cli import regua


@pytest.mark.parametrize(
    "command",
    [
        ("tick",),
        ("tick", "--now", "2026-12-01T00:05:00-03:00"),
        ("replay", "evt_1"),
        ("scheduler",),
        ("serve",),
        ("check",),
        ("refunds",),
    ],
    ids=" ".join,
)
def test_a_command_on_a_database_file_that_does_not_exist_says_so_and_creates_nothing(
    tmp_path: Path, command: tuple[str, ...]
) -> None:
    missing = tmp_path / "typo.db"
    result = regua(f"sqlite:///{missing}", *command, env={"REGUA_TICK_SECONDS": "1"})
    assert result.returncode == 2
    assert f"the database file {missing} does not exist" in result.stderr
    assert "regua migrate" in result.stderr
    assert "Traceback" not in result.stderr
    assert not missing.exists()
    assert list(tmp_path.iterdir()) == []


def test_migrate_creates_the_database_file_it_is_pointed_at(tmp_path: Path) -> None:
    created = tmp_path / "new.db"
    result = regua(f"sqlite:///{created}", "migrate")
    assert result.returncode == 0, result.stderr
    assert created.is_file()


def test_migrate_into_a_directory_that_does_not_exist_says_so(tmp_path: Path) -> None:
    environ = {key: value for key, value in os.environ.items() if not key.startswith("REGUA_")}
    environ.update({"REGUA_ENV": "test", "REGUA_DATABASE_URL": f"sqlite:///{tmp_path / 'nowhere' / 'regua.db'}"})
    result = subprocess.run(
        [sys.executable, "-m", "regua.cli", "migrate"],
        cwd=tmp_path,
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert f"the directory {tmp_path / 'nowhere'} does not exist" in result.stderr
    assert "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []


def _store_failed_event(database_url: str, event_id: str) -> None:
    runtime = build_runtime(Settings(env="test", database_url=database_url))
    event = WebhookEvent(
        id=event_id,
        provider="standard",
        dedupe_key="msg_1",
        event_type="payment.confirmed",
        body="{}",
        status=EventStatus.FAILED.value,
        received_at=parse_instant("2026-12-01T10:00:00-03:00"),
        attempts=1,
        outcome="ConnectError: the gateway was down",
    )
    try:
        runtime.transaction(lambda session: session.add(event))
    finally:
        runtime.close()


def _status(database_url: str, event_id: str) -> str:
    runtime = build_runtime(Settings(env="test", database_url=database_url))
    try:
        return str(
            runtime.read(lambda session: session.scalar(select(WebhookEvent.status).where(WebhookEvent.id == event_id)))
        )
    finally:
        runtime.close()


def test_replay_of_an_unknown_id_names_it_exits_non_zero_and_replays_nothing(tmp_path: Path) -> None:
    database_url = f"sqlite:///{tmp_path / 'regua.db'}"
    upgrade(database_url)
    _store_failed_event(database_url, "evt_known")

    result = regua(database_url, "replay", "evt_known", "evt_typo")

    assert result.returncode != 0
    assert "evt_typo" in result.stderr
    assert "evt_known" not in result.stderr
    assert "Traceback" not in result.stderr
    assert _status(database_url, "evt_known") == "failed"


def test_replay_says_why_a_stored_event_that_is_not_failed_is_left_alone(tmp_path: Path) -> None:
    database_url = f"sqlite:///{tmp_path / 'regua.db'}"
    upgrade(database_url)
    _store_failed_event(database_url, "evt_done")

    def processed(session: Session) -> None:
        event = session.get(WebhookEvent, "evt_done")
        assert event is not None
        event.status = EventStatus.PROCESSED.value

    runtime = build_runtime(Settings(env="test", database_url=database_url))
    runtime.transaction(processed)
    runtime.close()

    result = regua(database_url, "replay", "evt_done")

    assert result.returncode == 0, result.stderr
    assert "evt_done is processed: only unmatched or failed events are replayed" in result.stdout
    assert "events_replayed 0" in result.stdout
