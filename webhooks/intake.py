"""Storing deliveries durably and fast: group commit in the event loop, then one job per batch.

A request hands its events to a writer and waits. A writer takes everything waiting (up to a
batch), inserts it in one transaction (the unique (provider, dedupe key) constraint decides what is
new), commits, and only then answers each request: nothing is answered 200 that is not committed.

On PostgreSQL the writers are coroutines on the app's own event loop with their own asynchronous
connections: handing every request to a thread and back costs more than the insert itself (the
two threads take turns on the GIL). On SQLite, the embedded default, a writer hands its batch to a
thread. The ids stored go to one more thread that queues the jobs, so a slow or absent broker never
delays an answer; what it could not queue is re-queued by `tick`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from sqlalchemy import Connection, Engine

from billing.clock import Clock
from billing.db import UnnestInsert, insert_ignoring_conflicts, own_connection
from billing.journal import WebhookEvent
from billing.models import EventStatus, new_ids
from webhooks.base import IncomingEvent

log = logging.getLogger("regua.webhooks")

Enqueue = Callable[[list[str]], None]
COALESCE = 0.05


class StoreUnavailable(Exception):
    """The database could not take the batch: nothing was stored, the sender should deliver again."""


@dataclass
class _Submission:
    provider: str
    events: Sequence[IncomingEvent]
    future: asyncio.Future[list[str]]
    ids: list[str] = field(default_factory=list)


_STORE = UnnestInsert.build(
    WebhookEvent,
    ("id", "provider", "dedupe_key", "event_type", "body", "status"),
    ("provider", "dedupe_key"),
    same=("received_at", "attempts"),  # one instant and a zero for the whole batch, sent once
)


class _PostgresWriter:
    """One asynchronous connection in autocommit, reopened after a failure.

    The batch is one statement, so it is its own transaction: PostgreSQL commits it before it says
    the statement is done, and `execute` returns only then (a failed commit raises there). One
    round trip a batch instead of three (BEGIN, INSERT, COMMIT).
    """

    def __init__(self, conninfo: str, options: dict[str, Any]) -> None:
        self._conninfo = conninfo
        self._options = options
        self._connection: psycopg.AsyncConnection[Any] | None = None

    async def store(self, rows: list[dict[str, Any]]) -> list[str]:
        """The ids stored. A connection that died while idle (a restart, `pg_terminate_backend`) is
        found dead only by its next statement: that batch is tried once more on a new connection
        rather than refused (the insert skips what is already there, so a retry stores nothing twice)."""
        reused = self._connection is not None and not self._connection.closed
        try:
            return await self._insert(rows)
        except psycopg.OperationalError as error:
            await self.close()
            if not reused:
                raise StoreUnavailable(str(error)) from error
        except psycopg.Error as error:
            await self.close()
            raise StoreUnavailable(str(error)) from error
        try:
            return await self._insert(rows)
        except psycopg.Error as error:
            await self.close()
            raise StoreUnavailable(str(error)) from error

    async def _insert(self, rows: list[dict[str, Any]]) -> list[str]:
        if self._connection is None or self._connection.closed:
            self._connection = await psycopg.AsyncConnection.connect(
                self._conninfo, connect_timeout=5, autocommit=True, **self._options
            )
        cursor = await self._connection.execute(_STORE.sql, _STORE.columns(rows))
        return [row[0] for row in await cursor.fetchall()]

    async def close(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(psycopg.Error):
                await self._connection.close()
            self._connection = None


class _ThreadedWriter:
    """Any SQLAlchemy engine (SQLite): the batch is inserted from a worker thread."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def _store(self, rows: list[dict[str, Any]]) -> list[str]:
        with self._engine.begin() as connection:
            return _portable_insert(connection, rows)

    async def store(self, rows: list[dict[str, Any]]) -> list[str]:
        try:
            return await asyncio.to_thread(self._store, rows)
        except Exception as error:
            raise StoreUnavailable(f"{type(error).__name__}: {error}") from error

    async def close(self) -> None:
        return None


def _portable_insert(connection: Connection, rows: list[dict[str, Any]]) -> list[str]:
    return insert_ignoring_conflicts(connection, WebhookEvent, rows, index_elements=["provider", "dedupe_key"])


class Intake:
    def __init__(
        self, engine: Engine, clock: Clock, enqueue: Enqueue, *, max_batch: int = 512, writers: int = 2
    ) -> None:
        self._engine = engine
        self._clock = clock
        self._enqueue = enqueue
        self._max_batch = max_batch
        postgres = engine.dialect.name == "postgresql"
        self._writer_count = writers if postgres else 1  # SQLite takes one writer at a time anyway
        self._conninfo, self._connect_options = own_connection(engine)
        self._postgres = postgres
        self._pending: asyncio.Queue[_Submission] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._to_queue: queue.SimpleQueue[list[str] | None] = queue.SimpleQueue()
        self._enqueuer: threading.Thread | None = None

    async def start(self) -> None:
        if self._tasks:
            return
        self._pending = asyncio.Queue()
        for _ in range(self._writer_count):
            writer = (
                _PostgresWriter(self._conninfo, self._connect_options)
                if self._postgres
                else _ThreadedWriter(self._engine)
            )
            self._tasks.append(asyncio.create_task(self._write_loop(writer)))
        self._enqueuer = threading.Thread(target=self._enqueue_loop, name="webhook-enqueuer", daemon=True)
        self._enqueuer.start()

    async def stop(self) -> None:
        """Finish what was submitted, then stop the writers and the enqueuer."""
        if self._pending is not None:
            await self._pending.join()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        self._to_queue.put(None)
        if self._enqueuer is not None:
            await asyncio.to_thread(self._enqueuer.join, 10)
            self._enqueuer = None

    async def submit(self, provider: str, events: Sequence[IncomingEvent]) -> list[str]:
        """Store a delivery's events; the ids of those that are new (none: all were stored before)."""
        if self._pending is None:
            raise RuntimeError("the intake is not started")
        submission = _Submission(provider, events, asyncio.get_running_loop().create_future())
        self._pending.put_nowait(submission)
        return await submission.future

    async def _write_loop(self, writer: _PostgresWriter | _ThreadedWriter) -> None:
        assert self._pending is not None
        try:
            while True:
                batch = [await self._pending.get()]
                while len(batch) < self._max_batch and not self._pending.empty():
                    batch.append(self._pending.get_nowait())
                try:
                    await self._write(writer, batch)
                finally:
                    for _ in batch:
                        self._pending.task_done()
        finally:
            await writer.close()

    async def _write(self, writer: _PostgresWriter | _ThreadedWriter, batch: list[_Submission]) -> None:
        now = self._clock.now()
        rows: list[dict[str, Any]] = []
        seen: set[tuple[str, str]] = set()
        ids = iter(new_ids("evt", sum(len(submission.events) for submission in batch)))
        for submission in batch:
            for event in submission.events:
                key = (submission.provider, event.dedupe_key)
                if key in seen:
                    continue
                seen.add(key)
                event_id = next(ids)
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
            stored = set(await writer.store(rows))
        except StoreUnavailable as error:
            log.error("storing %d webhook events failed: %s", len(rows), error)
            for submission in batch:
                if not submission.future.done():
                    submission.future.set_exception(error)
            return
        for submission in batch:
            if not submission.future.done():
                submission.future.set_result([event_id for event_id in submission.ids if event_id in stored])
        to_process = [row["id"] for row in rows if row["id"] in stored and row["status"] == EventStatus.RECEIVED]
        if to_process:
            self._to_queue.put(to_process)

    def _enqueue_loop(self) -> None:
        """Queue the stored ids in rounds at least COALESCE seconds apart, each taking all that waits.

        A batch stored after a quiet spell is queued at once; under load the thread sleeps out the
        rest of the window and takes everything stored meanwhile, rather than waking for each batch:
        every wake and every send takes the GIL from the event loop that answers the gateways, so
        fewer and fuller rounds keep the answers fast.
        """
        next_round = 0.0
        while True:
            first = self._to_queue.get()
            if first is None:
                return
            time.sleep(max(0.0, next_round - time.monotonic()))
            next_round = time.monotonic() + COALESCE
            ids = list(first)
            stopping = False
            while True:
                try:
                    more = self._to_queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stopping = True
                    break
                ids += more
            for offset in range(0, len(ids), self._max_batch):
                chunk = ids[offset : offset + self._max_batch]
                try:
                    self._enqueue(chunk)
                except Exception as error:
                    log.warning("queueing %d webhook events failed (%s); tick will re-queue them", len(chunk), error)
            if stopping:
                return
