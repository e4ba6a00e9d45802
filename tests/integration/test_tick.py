"""The reconciliation pass (rule 3.8): level-triggered, repeatable, catching up after a gap, safe to race."""

from __future__ import annotations

import threading
from collections import Counter

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from billing.clock import FrozenClock, parse_instant
from billing.journal import TickRun
from billing.models import Block, Invoice
from billing.tick import ACTIONS, TickReport
from regua.cli import tick_once
from regua.runtime import Runtime
from tests.integration.conftest import Api

ACCOUNT = "padaria-central"


def move(clock: FrozenClock, local: str) -> None:
    clock.set(parse_instant(f"{local}:00-03:00"))


def assert_did_nothing(report: TickReport) -> None:
    """Every kind of action is reported, each with a count of 0."""
    counts = report.as_dict()
    assert set(ACTIONS) <= set(counts)
    assert counts == dict.fromkeys(counts, 0)


def billing_counts(report: TickReport) -> dict[str, int]:
    """The counts of the billing pass itself, the ones its TickRun row records."""
    return {name: report.counts[name] for name in ACTIONS}


def invoice_periods(runtime: Runtime) -> Counter[tuple[str, str]]:
    """How many invoices exist per (subscription, period start): every count must be 1."""

    def work(session: Session) -> Counter[tuple[str, str]]:
        rows = session.execute(select(Invoice.subscription_id, Invoice.period_start))
        return Counter((subscription_id, start.isoformat()) for subscription_id, start in rows)

    return runtime.read(work)


def block_count(runtime: Runtime, *, active_only: bool = False) -> int:
    def work(session: Session) -> int:
        query = select(func.count()).select_from(Block)
        if active_only:
            query = query.where(Block.lifted_at.is_(None))
        return int(session.scalar(query) or 0)

    return runtime.read(work)


def test_a_second_pass_at_the_same_instant_does_nothing(api: Api, runtime: Runtime, clock: FrozenClock) -> None:
    api.put_account(ACCOUNT)
    api.subscribe(ACCOUNT, "platform")
    api.subscribe(ACCOUNT, "mentorship")
    move(clock, "2026-12-07T00:01")

    first = tick_once(runtime)
    assert (first.counts["invoices_issued"], first.counts["blocks_applied"]) == (2, 2)
    second = tick_once(runtime)
    assert_did_nothing(second)
    assert sum(invoice_periods(runtime).values()) == 2
    assert block_count(runtime) == 2


def test_a_pass_after_a_gap_issues_every_missing_month_once_and_blocks(
    api: Api, runtime: Runtime, clock: FrozenClock
) -> None:
    api.put_account(ACCOUNT)
    api.subscribe(ACCOUNT, "platform")
    api.subscribe(ACCOUNT, "mentorship", frequency="quarterly")
    assert tick_once(runtime).counts["invoices_issued"] == 2
    move(clock, "2027-03-05T10:00")  # the scheduler was down from 1/12 to 5/3

    report = tick_once(runtime)
    assert report.counts["invoices_issued"] == 3 + 1  # January to March, and the second quarter
    assert report.counts["blocks_applied"] == 2
    periods = invoice_periods(runtime)
    assert set(periods.values()) == {1}
    platform = sorted(i["period_start"] for i in api.invoices(ACCOUNT) if i["product"] == "platform")
    assert platform == ["2026-12-01", "2027-01-01", "2027-02-01", "2027-03-01"]
    mentorship = sorted(i["period_start"] for i in api.invoices(ACCOUNT) if i["product"] == "mentorship")
    assert mentorship == ["2026-12-01", "2027-03-01"]
    assert api.access(ACCOUNT, "platform")["state"] == "blocked"
    assert api.access(ACCOUNT, "mentorship")["state"] == "blocked"

    assert_did_nothing(tick_once(runtime))


def test_two_ticks_racing_at_the_same_instant_issue_each_invoice_and_apply_each_block_once(
    api: Api, runtime: Runtime, clock: FrozenClock
) -> None:
    accounts = [f"conta-{n:02d}" for n in range(8)]
    for account_id in accounts:
        api.put_account(account_id)
        api.subscribe(account_id, "platform")
        api.subscribe(account_id, "mentorship")
    move(clock, "2026-12-07T00:01")

    barrier = threading.Barrier(2)
    reports: list[TickReport] = []
    errors: list[BaseException] = []

    def racer() -> None:
        try:
            barrier.wait(timeout=10)
            reports.append(tick_once(runtime))
        except BaseException as error:  # a failure in a thread must reach the test
            errors.append(error)

    threads = [threading.Thread(target=racer) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    assert errors == []
    assert len(reports) == 2

    expected = len(accounts) * 2
    assert sum(report.counts["invoices_issued"] for report in reports) == expected
    assert sum(report.counts["blocks_applied"] for report in reports) == expected
    periods = invoice_periods(runtime)
    assert len(periods) == expected
    assert set(periods.values()) == {1}
    assert block_count(runtime) == block_count(runtime, active_only=True) == expected
    assert_did_nothing(tick_once(runtime))


def test_each_pass_is_recorded_as_a_tick_run_with_its_counts(api: Api, runtime: Runtime, clock: FrozenClock) -> None:
    api.put_account(ACCOUNT)
    api.subscribe(ACCOUNT, "platform")
    first = tick_once(runtime)
    move(clock, "2026-12-07T00:01")
    second = tick_once(runtime)

    def work(session: Session) -> list[tuple[str, dict[str, int], bool]]:
        return [
            (run.now.isoformat(), dict(run.actions), run.started_at <= run.finished_at)
            for run in session.scalars(select(TickRun).order_by(TickRun.id))
        ]

    assert runtime.read(work) == [
        ("2026-12-01T03:05:00+00:00", first.as_dict(), True),
        ("2026-12-07T03:01:00+00:00", second.as_dict(), True),
    ]
    assert first.as_dict()["invoices_issued"] == 1
    assert second.as_dict()["blocks_applied"] == 1


def test_a_tick_given_an_explicit_now_reconciles_at_that_instant(api: Api, runtime: Runtime) -> None:
    api.put_account(ACCOUNT)
    api.subscribe(ACCOUNT, "platform")
    report = tick_once(runtime, parse_instant("2026-12-07T00:01:00-03:00"))
    assert report.now == parse_instant("2026-12-07T00:01:00-03:00")
    assert (report.counts["invoices_issued"], report.counts["blocks_applied"]) == (1, 1)
