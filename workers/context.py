"""What jobs are handed by the composition root: the books, the providers, the gateway, a postman."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from billing.outbox import Delivery
from billing.ports import Books, Gateway
from webhooks.base import Provider


class Postman(Protocol):
    """Delivers recorded notifications, each at most once (regua's SMTP delivery is one)."""

    def deliver(self, notification_ids: Sequence[str], *, now: datetime | None = None) -> list[Delivery]: ...
    def close(self) -> None: ...


def _no_postman() -> Postman:
    raise RuntimeError("this worker context has no way to send email")


@dataclass
class WorkerContext:
    """Built once per worker process (after the fork: engines must not be shared)."""

    runtime: Books
    providers: Mapping[str, Provider]
    gateway: Gateway | None = None
    postman: Callable[[], Postman] = field(default=_no_postman, repr=False)
    """Makes this process's postman (called once, on the first email)."""
