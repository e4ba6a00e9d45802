"""Storing deliveries durably and fast: group commit by one writer thread, then one job per batch.

A request hands its events to the writer and waits. The writer takes everything waiting (up to a
batch), inserts it in one transaction (the unique (provider, dedupe key) constraint decides what is
new), commits, and only then answers each request: nothing is answered 200 that is not committed.
The ids it stored go to a second thread that queues the jobs, so a slow or absent broker never
delays an answer; what it could not queue is re-queued by `tick`.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine

from billing.clock import Clock
from billing.db import insert_ignoring_conflicts
from billing.models import EventStatus, WebhookEvent, new_id
from webhooks.base import IncomingEvent

log = logging.getLogger("regua.webhooks")

ACCEPTED = "accepted"
DUPLICATE = "duplicate"

Enqueue = Callable[[list[str]], None]


@dataclass
class _Submission:
    provider: str
    events: Sequence[IncomingEvent]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[str]
    ids: list[str] = field(default_factory=list)


_STOP: Any = object()


class Intake:
    def __init__(self, engine: Engine, clock: Clock, enqueue: Enqueue, *, max_batch: int = 512) -> None:
        self._engine = engine
        self._clock = clock
        self._enqueue = enqueue
        self._max_batch = max_batch
        self._pending: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._to_queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        if self._threads:
            return
        self._threads = [
            threading.Thread(target=self._write_loop, name="webhook-writer", daemon=True),
            threading.Thread(target=self._enqueue_loop, name="webhook-enqueuer", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        if not self._threads:
            return
        self._pending.put(_STOP)
        self._threads[0].join(timeout=10)
        self._to_queue.put(_STOP)
        self._threads[1].join(timeout=10)
        self._threads = []

    async def submit(self, provider: str, events: Sequence[IncomingEvent]) -> str:
        """Store a delivery's events; "accepted" if any is new, "duplicate" if all were stored before."""
        loop = asyncio.get_running_loop()
        submission = _Submission(provider, events, loop, loop.create_future())
        self._pending.put(submission)
        return await submission.future

    def _write_loop(self) -> None:
        while True:
            first = self._pending.get()
            if first is _STOP:
                return
            batch: list[_Submission] = [first]
            stopping = False
            while len(batch) < self._max_batch:
                try:
                    item = self._pending.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stopping = True
                    break
                batch.append(item)
            self._write(batch)
            if stopping:
                return

    def _write(self, batch: list[_Submission]) -> None:
        now = self._clock.now()
        rows: list[dict[str, Any]] = []
        seen: dict[tuple[str, str], str] = {}
        for submission in batch:
            for event in submission.events:
                key = (submission.provider, event.dedupe_key)
                if key in seen:
                    continue
                event_id = new_id("evt")
                seen[key] = event_id
                submission.ids.append(event_id)
                rows.append(
                    {
                        "id": event_id,
                        "provider": submission.provider,
                        "dedupe_key": event.dedupe_key,
                        "event_type": event.event_type,
                        "body": event.body,
                        "status": (EventStatus.IGNORED if event.ignored else EventStatus.RECEIVED).value,
                        "received_at": now,
                        "attempts": 0,
                    }
                )
        try:
            with self._engine.begin() as connection:
                stored = set(
                    insert_ignoring_conflicts(connection, WebhookEvent, rows, index_elements=["provider", "dedupe_key"])
                )
        except Exception as error:
            log.error("storing %d webhook events failed: %s", len(rows), type(error).__name__)
            for submission in batch:
                submission.loop.call_soon_threadsafe(_fail, submission.future, error)
            return
        for submission in batch:
            answer = ACCEPTED if any(event_id in stored for event_id in submission.ids) else DUPLICATE
            submission.loop.call_soon_threadsafe(_resolve, submission.future, answer)
        to_process = [row["id"] for row in rows if row["id"] in stored and row["status"] == EventStatus.RECEIVED]
        if to_process:
            self._to_queue.put(to_process)

    def _enqueue_loop(self) -> None:
        while True:
            first = self._to_queue.get()
            if first is _STOP:
                return
            ids = list(first)
            stopping = False
            while len(ids) < self._max_batch:
                try:
                    more = self._to_queue.get_nowait()
                except queue.Empty:
                    break
                if more is _STOP:
                    stopping = True
                    break
                ids += more
            try:
                self._enqueue(ids)
            except Exception as error:
                log.warning("queueing %d webhook events failed (%s); tick will re-queue them", len(ids), error)
            if stopping:
                return


def _resolve(future: asyncio.Future[str], answer: str) -> None:
    if not future.done():
        future.set_result(answer)


def _fail(future: asyncio.Future[str], error: Exception) -> None:
    if not future.done():
        future.set_exception(error)
