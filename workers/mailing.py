"""Actors that send the régua's emails over SMTP, on their own queue."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import dramatiq

from billing.tick import TickReport

if TYPE_CHECKING:
    from workers.actors import Jobs, WorkerContext


@dataclass
class MailActors:
    """Filled in by the notifications work; until then, nothing to queue."""

    def kick(self) -> None:
        pass


def declare(broker: dramatiq.Broker, context: Callable[[], WorkerContext]) -> MailActors:  # noqa: ARG001
    return MailActors()


def tick_step(jobs: Jobs | None, context: WorkerContext, report: TickReport) -> None:
    """What a tick does for email (record due notifications, queue pending ones)."""


__all__ = ["Any", "MailActors", "declare", "tick_step"]
