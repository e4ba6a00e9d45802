"""`regua check`: clean books say so and exit 0; a corruption is named, with its ids, and exits 1.

Each invariant's own corruption is in test_check_corruptions.py."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session
from starlette.testclient import TestClient

from billing.check import INVARIANTS, check_books
from billing.clock import FrozenClock
from billing.journal import Notification
from billing.models import Block, Invoice, Payment, Refund
from regua.cli import main, tick_once
from regua.runtime import Runtime
from regua.settings import Settings
from tests.integration.conftest import Api
from tests.integration.test_webhook_settlement import (  # noqa: F401  (fixtures)
    blocked_invoice,
    charge_for,
    deliver_standard,
    rows,
    settle_jobs,
)
from workers.actors import Jobs

ACCOUNT = "padaria-central"


@pytest.fixture
def books(
    client: TestClient,
    api: Api,
    runtime: Runtime,
    clock: FrozenClock,
    jobs: Jobs,
    blocked_invoice: str,  # noqa: F811
) -> str:
    """Books a little lived in: a month paid twice (one owed back), a mentorship blocked, mails recorded."""
    api.subscribe(ACCOUNT, "mentorship", payment_method="pix", starts_on="2026-12-01")
    charge_id = charge_for(runtime, [blocked_invoice])
    deliver_standard(client, clock, "payment.confirmed", charge_id, "msg_1", payment_id="gw_1")
    deliver_standard(client, clock, "payment.confirmed", charge_id, "msg_2", payment_id="gw_2")
    settle_jobs(jobs, runtime)
    clock.set(clock.now() + timedelta(minutes=5))
    tick_once(runtime)
    return blocked_invoice


def names(runtime: Runtime) -> set[str]:
    report = runtime.read(lambda session: check_books(session, runtime.clock.now()))
    return {violation.name for violation in report.violations}


def test_lived_in_books_are_clean(runtime: Runtime, books: str) -> None:
    report = runtime.read(lambda session: check_books(session, runtime.clock.now()))

    assert report.counts == dict.fromkeys(INVARIANTS, 0)
    # Clean means something only if the books hold what the invariants look at.
    assert sorted(payment.status for payment in rows(runtime, Payment)) == ["confirmed", "duplicate"]
    assert [(refund.reason, refund.status, refund.amount_cents) for refund in rows(runtime, Refund)] == [
        ("duplicate", "owed", 19990)
    ]
    assert sorted((block.product, block.lift_reason) for block in rows(runtime, Block)) == [
        ("mentorship", None),
        ("platform", "paid"),
    ]
    assert {invoice.status for invoice in rows(runtime, Invoice)} == {"paid", "open"}
    assert any(notification.status == "pending" for notification in rows(runtime, Notification))


def _block_lifted_by_hand(session: Session) -> None:
    session.execute(update(Block).values(lifted_at=Block.started_at, lift_reason="paid"))


def test_the_command_exits_one_listing_the_violations_and_zero_when_clean(
    runtime: Runtime,
    settings: Settings,
    books: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("REGUA_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("REGUA_ENV", "test")
    monkeypatch.setenv("REGUA_NOW", runtime.clock.now().isoformat())
    assert main(["check"]) == 0
    assert "books clean" in capsys.readouterr().out
    runtime.transaction(_block_lifted_by_hand)
    assert main(["check"]) == 1
    assert "block_against_the_rules: account=padaria-central" in capsys.readouterr().out
    assert main(["check", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["clean"] is False
    assert report["counts"]["block_against_the_rules"] >= 1
    assert rows(runtime, Block)  # read-only: nothing was mended


def test_a_pass_after_now_says_nothing_of_now_when_a_sandbox_clock_was_set_back(
    runtime: Runtime, api: Api, clock: FrozenClock
) -> None:
    """`regua clock set` to an earlier instant keeps the books' past, its passes included: the check judges
    missing blocks at the last pass up to its own `now`, not at a pass that is still to come."""
    day_1 = clock.now()
    tick_once(runtime, day_1 + timedelta(days=8))  # the dev server's first pass, on a later wall clock
    api.put_account(ACCOUNT)
    api.subscribe(ACCOUNT, "platform", payment_method="pix")
    tick_once(runtime, day_1)
    assert [invoice.status for invoice in rows(runtime, Invoice)] == ["open"]

    assert names(runtime) == set()
    clock.set(day_1 + timedelta(days=8))
    tick_once(runtime)
    assert [block.product for block in rows(runtime, Block)] == ["platform"]
    assert names(runtime) == set()
