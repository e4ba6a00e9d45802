"""The Dramatiq broker from REGUA_BROKER_URL: Redis in production, an in-process stub when empty."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker
from dramatiq.common import current_millis

from billing.clock import Clock
from workers.stats import JobStats, MemoryJobCounts, RedisJobCounts

QUEUES = ("webhooks", "charges", "email")
"""Settlement, gateway calls and mail each wait in their own queue: a mail outage never slows settlement."""

PRIORITY = {"webhooks": 0, "charges": 1, "email": 2}
"""A worker process's threads take the lowest first of the messages it has fetched (Dramatiq's actor
priority): a payment waits for no mail or charge already fetched, only for a free thread."""

HEARTBEAT_TIMEOUT_MS = 15_000
MAINTENANCE_CHANCE = 50_000
"""A SIGKILLed worker's messages come back after about 15 s instead of about 20 minutes (FACTS.md)."""

PIPELINE_CHUNK = 1_000
"""Messages queued in one round trip to Redis by `enqueue_many`."""

WEBHOOK_POLL_MS = 25
"""Dramatiq's Redis consumer polls an empty queue less and less often, up to once a second (the
worker timeout): a payment arriving after a quiet spell waited for the next poll. The webhooks
queue is polled at least every 25 ms (about 50 cheap polls a second per idle process)."""


class _Broker(RedisBroker):
    def consume(self, queue_name: str, prefetch: int = 1, timeout: int = 5000) -> dramatiq.Consumer:
        if queue_name == "webhooks":
            timeout = min(timeout, WEBHOOK_POLL_MS)
        return super().consume(queue_name, prefetch, timeout)


def build_broker(url: str, clock: Clock | None = None) -> dramatiq.Broker:
    """A new broker, made the global one (Dramatiq declares actors against the global broker)."""
    broker: dramatiq.Broker
    if url:
        broker = _Broker(  # type: ignore[no-untyped-call]
            url=url,
            heartbeat_timeout=HEARTBEAT_TIMEOUT_MS,
            maintenance_chance=MAINTENANCE_CHANCE,
            socket_timeout=5,
            socket_connect_timeout=2,
        )
    else:
        broker = StubBroker(fail_fast_default=False)
    counts = RedisJobCounts(broker.client) if url else MemoryJobCounts()  # type: ignore[union-attr]
    broker.add_middleware(JobStats(counts, clock))
    dramatiq.set_broker(broker)
    return broker


def enqueue_many(broker: dramatiq.Broker, messages: Sequence[dramatiq.Message[Any]]) -> None:
    """Queue many messages; on Redis a thousand at a time in one round trip of three commands.

    One `send` is a round trip running Dramatiq's dispatch script (about 3,700/s). Its enqueue is an
    HSET of the payload and an RPUSH of the id (and the enqueuer's heartbeat): the same keys are
    written here for a batch at once, payloads before ids, so a worker never meets an id without its
    message. Each message still gets a fresh redis_message_id and the enqueue hooks; any other broker
    enqueues one by one.
    """
    if not isinstance(broker, RedisBroker):
        for message in messages:
            broker.enqueue(message)
        return
    for offset in range(0, len(messages), PIPELINE_CHUNK):
        prepared = [
            message.copy(options={"redis_message_id": str(uuid.uuid4())})
            for message in messages[offset : offset + PIPELINE_CHUNK]
        ]
        by_queue: dict[str, list[dramatiq.Message[Any]]] = {}
        for message in prepared:
            broker.emit_before("enqueue", message, None)
            by_queue.setdefault(message.queue_name, []).append(message)
        with broker.client.pipeline(transaction=True) as pipe:
            pipe.zadd(f"{broker.namespace}:__heartbeats__", {broker.broker_id: current_millis()})
            for queue_name, batch in by_queue.items():
                key = f"{broker.namespace}:{queue_name}"
                pipe.hset(f"{key}.msgs", mapping={m.options["redis_message_id"]: m.encode() for m in batch})
                pipe.rpush(key, *(m.options["redis_message_id"] for m in batch))
            pipe.execute()
        for message in prepared:
            broker.emit_after("enqueue", message, None)
