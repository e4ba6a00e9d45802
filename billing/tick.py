"""The reconciliation pass (rule 3.8): look at what should be true at `now`, do only what is missing."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

from billing.blocking import BlockChanges, accounts_to_reconcile, lock_accounts, reconcile_blocks
from billing.db import unit_of_work
from billing.invoicing import issue_in_pages
from billing.journal import TickRun
from billing.ports import Books
from billing.verification import expire_verifications

ACTIONS = ("invoices_issued", "trials_ended", "verifications_expired", "blocks_applied", "blocks_lifted")
LOCK_CHUNK = 500


@dataclass
class TickReport:
    now: datetime
    counts: Counter[str] = field(default_factory=Counter)
    blocks: BlockChanges = field(default_factory=BlockChanges)
    started_at: datetime | None = None

    def lines(self) -> list[str]:
        names = list(ACTIONS) + sorted(set(self.counts) - set(ACTIONS))
        return [f"{name} {self.counts[name]}" for name in names]

    def as_dict(self) -> dict[str, int]:
        return {name: self.counts[name] for name in list(ACTIONS) + sorted(set(self.counts) - set(ACTIONS))}


def run_tick(books: Books, now: datetime) -> TickReport:
    """One pass, in short transactions, each safe to repeat and to race against another pass."""
    report = TickReport(now=now)
    started_at = books.clock.now()
    calendar, sessions = books.calendar, books.sessions
    issued, trials_ended = issue_in_pages(sessions, now, calendar)
    report.counts["invoices_issued"] = issued
    report.counts["trials_ended"] = trials_ended

    with unit_of_work(sessions) as session:
        report.counts["verifications_expired"] = len(expire_verifications(session, now))
        session.commit()

    with unit_of_work(sessions) as session:
        candidates = accounts_to_reconcile(session, now)
    for offset in range(0, len(candidates), LOCK_CHUNK):
        chunk = candidates[offset : offset + LOCK_CHUNK]
        with unit_of_work(sessions) as session:
            lock_accounts(session, chunk)
            changes = reconcile_blocks(session, chunk, now)
            session.commit()
        report.blocks.applied += changes.applied
        report.blocks.lifted += changes.lifted
    report.counts["blocks_applied"] = len(report.blocks.applied)
    report.counts["blocks_lifted"] = len(report.blocks.lifted)
    report.started_at = started_at
    return report


def record_tick(books: Books, report: TickReport) -> None:
    """The pass's row for ops (its lag and what it did), written once every step has run."""
    clock = books.clock
    books.transaction(
        lambda session: session.add(
            TickRun(
                now=report.now,
                started_at=report.started_at or clock.now(),
                finished_at=clock.now(),
                actions=report.as_dict(),
            )
        )
    )
