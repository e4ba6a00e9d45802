"""Webhook delivery as Asaas does it: one queue, in order, only HTTP 200 counts, paused after 15 failures.

A failing event holds every event behind it. It is tried again after Asaas's schedule (30 s, 1 min,
3.5 min, 5 min, 15 min, 25 min, 1 h five times, 2 h twice, 3 h), divided by `delay_divisor` so that a
test or a demo need not wait hours; after the 15th failure in a row the queue is interrupted ("fila
pausada") until `resume()` (`POST /sim/webhooks/resume`, or Asaas's own `PUT /v3/webhooks/{id}` with
`{"interrupted": false}`), and `/sim/state` shows it under "webhook_queue". `GET /v3/webhooks` describes
the queue as Asaas describes a webhook configuration (`config()`).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

import httpx

from regua.gateway.asaas import encode_json

ASAAS_RETRY_SCHEDULE_S: tuple[float, ...] = (30.0, 60.0, 210.0, 300.0, 900.0, 1500.0) + (3600.0,) * 5
ASAAS_RETRY_SCHEDULE_S += (7200.0, 7200.0, 10800.0)
FAILURES_BEFORE_INTERRUPTION = 15
DEFAULT_DELAY_DIVISOR = 60.0  # the real schedule a minute to the hour: 30 s becomes 0.5 s
PULSE_S = 0.05
WEBHOOK_CONFIG_ID = "5f1c0e4a-8d2b-4c3e-9a1f-6b7d8e9f0a1b"
"""The one webhook configuration the simulator has: Asaas gives each an id of this shape."""
SENT_EVENTS = (
    "PAYMENT_CREATED",
    "PAYMENT_CONFIRMED",
    "PAYMENT_RECEIVED",
    "PAYMENT_OVERDUE",
    "PAYMENT_DELETED",
    "PAYMENT_RESTORED",
    "PAYMENT_REFUNDED",
    "PAYMENT_PARTIALLY_REFUNDED",
    "PAYMENT_REFUND_IN_PROGRESS",
    "PAYMENT_REFUND_DENIED",
    "PAYMENT_RECEIVED_IN_CASH_UNDONE",
    "PAYMENT_CREDIT_CARD_CAPTURE_REFUSED",
    "PAYMENT_AWAITING_RISK_ANALYSIS",
    "PAYMENT_APPROVED_BY_RISK_ANALYSIS",
    "PAYMENT_REPROVED_BY_RISK_ANALYSIS",
    "PAYMENT_CHARGEBACK_REQUESTED",
    "PAYMENT_CHARGEBACK_DISPUTE",
    "PAYMENT_AWAITING_CHARGEBACK_REVERSAL",
)
"""The events the simulator emits, which its one webhook configuration lists as subscribed."""


@dataclass
class Delivery:
    event: dict[str, object]
    status: str = "pending"  # pending (queued, or being retried), delivered, disabled (no URL)
    attempts: int = 0
    last_error: str | None = None

    def summary(self) -> dict[str, object]:
        payment = self.event.get("payment")
        return {
            "id": self.event["id"],
            "event": self.event["event"],
            "payment_id": payment.get("id") if isinstance(payment, Mapping) else None,
            "status": self.status,
            "attempts": self.attempts,
            "last_error": self.last_error,
        }


def _seconds(value: float) -> Decimal:
    """Seconds to the millisecond, as an exact JSON number (the simulator's JSON carries no floats)."""
    return Decimal(str(round(value, 3)))


class WebhookDispatcher:
    """Posts the events in order from its own thread; `on_idle` is called there between deliveries."""

    def __init__(
        self,
        url: str,
        token: str,
        *,
        retry_delays: Sequence[float] = ASAAS_RETRY_SCHEDULE_S,
        delay_divisor: float = 1.0,
        timeout: float = 10.0,
    ) -> None:
        self.url = url
        self.token = token
        self.retry_delays = tuple(retry_delays) or (0.0,)
        self.delay_divisor = delay_divisor
        self.timeout = timeout
        self.on_idle: Callable[[], None] | None = None
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._log: list[Delivery] = []
        self._queue: deque[Delivery] = deque()
        self._failures = 0
        self._interrupted = False
        self._next_attempt = 0.0

    def start(self) -> None:
        if self._thread is None:
            self._stopping.clear()
            self._thread = threading.Thread(target=self._run, name="asaas-sim-webhooks", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        if self._thread is not None:
            self._stopping.set()
            self._wake.set()
            self._thread.join(timeout)
            self._thread = None

    def send(self, event: dict[str, object]) -> None:
        delivery = Delivery(event)
        with self._lock:
            self._log.append(delivery)
            if not self.url:
                delivery.status = "disabled"
                return
            self._queue.append(delivery)
        self._wake.set()

    def log(self) -> list[dict[str, object]]:
        with self._lock:
            return [delivery.summary() for delivery in self._log]

    def queue_state(self) -> dict[str, object]:
        with self._lock:
            waiting = max(0.0, self._next_attempt - time.monotonic()) if self._queue else 0.0
            return {
                "interrupted": self._interrupted,
                "failures": self._failures,
                "pending": len(self._queue),
                "next_attempt_in_s": _seconds(waiting),
                "retry_delays_s": [_seconds(delay / self.delay_divisor) for delay in self.retry_delays],
            }

    def config(self) -> dict[str, object]:
        """The queue as Asaas's `GET /v3/webhooks` describes a webhook configuration: `interrupted` once
        15 deliveries in a row failed ("fila pausada"), `penalizedRequestsCount` the failures so far."""
        with self._lock:
            return {
                "id": WEBHOOK_CONFIG_ID,
                "name": "regua",
                "url": self.url,
                "enabled": bool(self.url),
                "interrupted": self._interrupted,
                "apiVersion": 3,
                "hasAuthToken": bool(self.token),
                "sendType": "SEQUENTIALLY",
                "penalizedRequestsCount": self._failures,
                "events": list(SENT_EVENTS),
            }

    def resume(self) -> int:
        """Asaas's "reativar a fila": the interrupted queue starts again from its oldest event, now."""
        with self._lock:
            self._interrupted = False
            self._failures = 0
            self._next_attempt = 0.0
            pending = len(self._queue)
        self._wake.set()
        return pending

    def forget(self) -> None:
        """Drop the record of what is done; the queue itself goes on."""
        with self._lock:
            self._log = [delivery for delivery in self._log if delivery.status == "pending"]

    def _run(self) -> None:
        headers = {"Content-Type": "application/json", "User-Agent": "regua-asaas-simulator"}
        if self.token:
            headers["asaas-access-token"] = self.token
        with httpx.Client(timeout=self.timeout, headers=headers) as client:
            while not self._stopping.is_set():
                if self.on_idle is not None:
                    self.on_idle()
                head = self._due()
                if head is None:
                    self._wake.wait(PULSE_S)
                    self._wake.clear()
                    continue
                self._attempt(client, head)

    def _due(self) -> Delivery | None:
        with self._lock:
            if not self._queue or self._interrupted or time.monotonic() < self._next_attempt:
                return None
            return self._queue[0]

    def _attempt(self, client: httpx.Client, delivery: Delivery) -> None:
        error: str | None = None
        try:
            response = client.post(self.url, content=encode_json(delivery.event))
        except httpx.HTTPError as failure:
            error = f"{type(failure).__name__}: {failure}"
        else:
            if response.status_code != 200:  # as at Asaas, even a 204 is a failure
                error = f"HTTP {response.status_code}"
        with self._lock:
            delivery.attempts += 1
            if error is None:
                delivery.status = "delivered"
                if self._queue and self._queue[0] is delivery:
                    self._queue.popleft()
                self._failures = 0
                self._next_attempt = 0.0
                return
            delivery.last_error = error
            self._failures += 1
            if self._failures >= FAILURES_BEFORE_INTERRUPTION:
                self._interrupted = True
                return
            delay = self.retry_delays[min(self._failures, len(self.retry_delays)) - 1]
            self._next_attempt = time.monotonic() + delay / self.delay_divisor
