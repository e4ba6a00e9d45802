"""The Dramatiq broker from REGUA_BROKER_URL: Redis in production, an in-process stub when empty."""

from __future__ import annotations

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker

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
