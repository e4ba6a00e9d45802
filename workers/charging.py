"""Actors that talk to the gateway: day-1 and retry charges, owed refunds, cancels of superseded charges."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import dramatiq

from billing.tick import TickReport

if TYPE_CHECKING:
    from workers.actors import Jobs, WorkerContext


@dataclass
class ChargeActors:
    """Filled in by the charging work; until then, nothing to queue."""

    def kick(self) -> None:
        pass


def declare(broker: dramatiq.Broker, context: Callable[[], WorkerContext]) -> ChargeActors:  # noqa: ARG001
    return ChargeActors()


def tick_step(jobs: Jobs | None, context: WorkerContext, report: TickReport) -> None:
    """What a tick does for charging (start due charges, re-ask the gateway about stale ones)."""


__all__ = ["Any", "ChargeActors", "declare", "tick_step"]
