"""Jobs processed and failed per minute and per hour, counted by the workers where ops can read them.

Dramatiq's Prometheus middleware keeps its counters in each worker process and serves them on a
port of its own; regua's ops page and `/metrics` live in the web process. So each worker adds its
outcomes to per-minute and per-hour buckets in the broker's own Redis (two HINCRBYs in one pipeline
per job, buckets expire after a day), and any process can read the sum of all workers. On the
in-process stub broker (dev, tests) the buckets live in memory: worker and dashboard share a process.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

import dramatiq
from dramatiq.broker import MessageProxy
from dramatiq.middleware import Middleware

from billing.clock import Clock, SystemClock

OUTCOMES = ("processed", "failed")
log = logging.getLogger("regua.workers")

KEY_PREFIX = "regua:jobs"
KEEP = timedelta(hours=25)
FAILURES_KEPT = timedelta(days=8)
"""Longer than Dramatiq keeps a dead letter (7 days)."""


@dataclass(frozen=True)
class Bucket:
    start: datetime
    processed: int
    failed: int


@dataclass(frozen=True)
class Failure:
    error: str
    retries: int


class JobCounts(Protocol):
    def add(self, outcome: str, at: datetime) -> None: ...
    def totals(self) -> dict[str, int]:
        """Every outcome counted since the counts began (monotonic: Prometheus counters)."""
        ...

    def note_failure(self, message_id: str, failure: Failure) -> None:
        """Dramatiq's Redis dead letters keep the payload as first sent, not the error: kept here."""
        ...

    def failures(self, message_ids: list[str]) -> dict[str, Failure]: ...

    def buckets(self, unit: str, until: datetime, count: int) -> list[Bucket]:
        """The last `count` buckets of `unit` ("minute" or "hour") ending with the one holding `until`."""
        ...


def bucket_start(unit: str, at: datetime) -> datetime:
    at = at.replace(second=0, microsecond=0)
    return at.replace(minute=0) if unit == "hour" else at


def _starts(unit: str, until: datetime, count: int) -> list[datetime]:
    step = timedelta(hours=1) if unit == "hour" else timedelta(minutes=1)
    last = bucket_start(unit, until)
    return [last - step * (count - 1 - n) for n in range(count)]


def _key(unit: str, start: datetime) -> str:
    return f"{KEY_PREFIX}:{unit}:{int(start.timestamp())}"


class RedisJobCounts:
    """Buckets as Redis hashes `regua:jobs:<unit>:<epoch seconds>` with a field per outcome."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def add(self, outcome: str, at: datetime) -> None:
        pipe = self._client.pipeline(transaction=False)
        for unit in ("minute", "hour"):
            key = _key(unit, bucket_start(unit, at))
            pipe.hincrby(key, outcome, 1)
            pipe.expire(key, int(KEEP.total_seconds()))
        pipe.hincrby(f"{KEY_PREFIX}:total", outcome, 1)
        pipe.execute()

    def note_failure(self, message_id: str, failure: Failure) -> None:
        value = json.dumps({"error": failure.error, "retries": failure.retries})
        self._client.set(f"{KEY_PREFIX}:failure:{message_id}", value, ex=int(FAILURES_KEPT.total_seconds()))

    def failures(self, message_ids: list[str]) -> dict[str, Failure]:
        if not message_ids:
            return {}
        found = self._client.mget([f"{KEY_PREFIX}:failure:{message_id}" for message_id in message_ids])
        return {
            message_id: Failure(**json.loads(value))
            for message_id, value in zip(message_ids, found, strict=True)
            if value is not None
        }

    def totals(self) -> dict[str, int]:
        found = self._client.hmget(f"{KEY_PREFIX}:total", *OUTCOMES)
        return {outcome: int(value or 0) for outcome, value in zip(OUTCOMES, found, strict=True)}

    def buckets(self, unit: str, until: datetime, count: int) -> list[Bucket]:
        starts = _starts(unit, until, count)
        pipe = self._client.pipeline(transaction=False)
        for start in starts:
            pipe.hmget(_key(unit, start), *OUTCOMES)
        rows = pipe.execute()
        return [Bucket(start, int(row[0] or 0), int(row[1] or 0)) for start, row in zip(starts, rows, strict=True)]


class MemoryJobCounts:
    """The same buckets in this process's memory: for the stub broker, whose worker runs beside the app."""

    def __init__(self) -> None:
        self._counts: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(OUTCOMES, 0))
        self._failures: dict[str, Failure] = {}
        self._lock = threading.Lock()

    def note_failure(self, message_id: str, failure: Failure) -> None:
        with self._lock:
            self._failures[message_id] = failure

    def failures(self, message_ids: list[str]) -> dict[str, Failure]:
        with self._lock:
            return {i: self._failures[i] for i in message_ids if i in self._failures}

    def totals(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts["total"])

    def add(self, outcome: str, at: datetime) -> None:
        with self._lock:
            self._counts["total"][outcome] += 1
            for unit in ("minute", "hour"):
                self._counts[_key(unit, bucket_start(unit, at))][outcome] += 1

    def buckets(self, unit: str, until: datetime, count: int) -> list[Bucket]:
        with self._lock:
            found = [(start, self._counts.get(_key(unit, start))) for start in _starts(unit, until, count)]
        return [Bucket(start, c["processed"] if c else 0, c["failed"] if c else 0) for start, c in found]


class JobStats(Middleware):
    """Counts each message's outcome once it has been processed (a retry that fails counts as failed)."""

    def __init__(self, counts: JobCounts, clock: Clock | None = None) -> None:
        self.counts = counts
        self.clock = clock or SystemClock()

    def after_process_message(
        self, broker: dramatiq.Broker, message: MessageProxy, *, result: Any = None, exception: Any = None
    ) -> None:
        outcome = "failed" if exception is not None else "processed"
        try:
            self.counts.add(outcome, self.clock.now())
            if exception is not None:
                message_id = str(message.options.get("redis_message_id") or message.message_id)
                error = f"{type(exception).__name__}: {exception}"[:500]
                self.counts.note_failure(message_id, Failure(error, int(message.options.get("retries", 0))))
        except Exception:  # counting must never fail a job
            log.warning("could not count a job's outcome", exc_info=True)


def job_counts(broker: dramatiq.Broker) -> JobCounts | None:
    """The counts the broker's workers keep, if its JobStats middleware is installed."""
    for middleware in broker.middleware:
        if isinstance(middleware, JobStats):
            return middleware.counts
    return None
