"""What every invariant reads: the session's snapshot, the instant checked, and rows several invariants share."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from billing.journal import TickRun
from billing.models import UNPAID, Block, Invoice, Subscription

Key = tuple[str, str]
"""(account id, product): blocks and their rules are per product."""
Record = Any
"""A result row, its columns read by name (SQLAlchemy's typed rows do not unify across queries)."""


@dataclass
class Scope:
    session: Session
    now: datetime
    zone: ZoneInfo

    @cached_property
    def last_tick(self) -> datetime | None:
        """The `now` of the last reconciliation pass up to `now`: what the level-triggered rules were last made true
        at. A pass after `now` (a sandbox clock set back: the books keep their past) says nothing of `now`."""
        return self.session.scalar(select(func.max(TickRun.now)).where(TickRun.now <= self.now))

    @cached_property
    def unpaid(self) -> dict[Key, list[Record]]:
        """Every open or verifying invoice, by account and product."""
        query = select(
            Invoice.id,
            Invoice.account_id,
            Invoice.product,
            Invoice.status,
            Invoice.due_date,
            Invoice.block_at,
            Invoice.verifying_until,
            Invoice.issued_at,
        ).where(Invoice.status.in_(UNPAID))
        found: dict[Key, list[Record]] = defaultdict(list)
        for row in self.session.execute(query):
            found[(row.account_id, row.product)].append(row)
        return dict(found)

    @cached_property
    def active_blocks(self) -> dict[Key, Record]:
        query = select(Block.id, Block.account_id, Block.product, Block.invoice_ids, Block.started_at).where(
            Block.lifted_at.is_(None)
        )
        return {(row.account_id, row.product): row for row in self.session.execute(query)}

    @cached_property
    def last_lifted(self) -> dict[Key, Record]:
        """Per account and product, the block lifted last (how the product came to be free)."""
        query = (
            select(Block.id, Block.account_id, Block.product, Block.invoice_ids, Block.lifted_at, Block.lift_reason)
            .where(Block.lifted_at.is_not(None))
            .order_by(Block.lifted_at, Block.id)
        )
        return {(row.account_id, row.product): row for row in self.session.execute(query)}

    @cached_property
    def ends(self) -> dict[Key, datetime]:
        """Per account and product, when its canceled subscription ends (rule 3.10: nothing blocks after it)."""
        query = select(Subscription.account_id, Subscription.product, Subscription.ends_at).where(
            Subscription.ends_at.is_not(None)
        )
        return {(row.account_id, row.product): row.ends_at for row in self.session.execute(query)}


Invariant = Callable[[Scope], Iterator[dict[str, Any]]]
