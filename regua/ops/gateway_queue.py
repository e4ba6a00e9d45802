"""Whether the gateway still delivers its webhooks: Asaas's queue, asked with a short timeout, cached.

Asaas pauses a webhook's queue after 15 failed deliveries in a row ("fila pausada"): every event
after it waits, kept 14 days, until someone starts the queue again. Nothing reaches regua then, and
silence looks like a quiet day, so the ops overview asks the gateway (`GET /v3/webhooks`) at each
render. The answer is kept a few seconds; a gateway that does not answer makes the state "unknown",
never a broken page.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

log = logging.getLogger("regua.ops")

DEFAULT_TIMEOUT_S = 2.0
DEFAULT_CACHE_S = 15.0


@dataclass(frozen=True)
class WebhookQueue:
    """One webhook configuration at the gateway, as far as delivery goes."""

    name: str
    url: str
    enabled: bool
    interrupted: bool
    penalized: int
    """Deliveries the gateway counted as failed (Asaas's penalizedRequestsCount)."""


@runtime_checkable
class WebhookQueueReader(Protocol):
    """What the overview needs from a gateway client: its webhook queues, asked once, within `timeout`."""

    def webhook_queues(self, timeout: float) -> list[WebhookQueue]: ...


@dataclass(frozen=True)
class GatewayDelivery:
    """What the overview shows: `delivering`, `stopped` (why in `reason`), or `unknown` (why not known)."""

    state: str
    reason: str
    queues: tuple[WebhookQueue, ...] = ()

    @property
    def stopped(self) -> bool:
        return self.state == "stopped"


def judge(queues: list[WebhookQueue]) -> GatewayDelivery:
    """Stopped when a queue is interrupted or disabled, or when there is no webhook to deliver at all."""
    if not queues:
        return GatewayDelivery("stopped", "no webhook is configured at the gateway")
    interrupted = [queue for queue in queues if queue.interrupted]
    if interrupted:
        names = ", ".join(queue.name or queue.url for queue in interrupted)
        return GatewayDelivery(
            "stopped",
            f"the queue of {names} is interrupted after failed deliveries: start it again at the gateway",
            tuple(queues),
        )
    disabled = [queue for queue in queues if not queue.enabled]
    if len(disabled) == len(queues):
        names = ", ".join(queue.name or queue.url for queue in disabled)
        return GatewayDelivery("stopped", f"the webhook {names} is disabled at the gateway", tuple(queues))
    return GatewayDelivery("delivering", "", tuple(queues))


class GatewayDeliveryWatch:
    """Asks `reader` at most once every `cache_s` seconds (answered or not); `status()` never raises."""

    def __init__(
        self,
        reader: WebhookQueueReader,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        cache_s: float = DEFAULT_CACHE_S,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._reader = reader
        self._timeout_s = timeout_s
        self._cache_s = cache_s
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._last: tuple[float, GatewayDelivery] | None = None

    def status(self) -> GatewayDelivery:
        with self._lock:  # one question at a time: the renders waiting on it take its answer
            now = self._monotonic()
            if self._last is not None and 0 <= now - self._last[0] < self._cache_s:
                return self._last[1]
            found = self._ask()
            self._last = (self._monotonic(), found)
            return found

    def _ask(self) -> GatewayDelivery:
        try:
            queues = self._reader.webhook_queues(self._timeout_s)
        except Exception as error:  # any failure of the gateway or its client is "unknown", never a broken page
            log.warning("the gateway's webhook queue could not be read: %s", error)
            return GatewayDelivery("unknown", f"the gateway did not say ({type(error).__name__})")
        return judge(queues)
