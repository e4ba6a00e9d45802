"""The Dramatiq broker from REGUA_BROKER_URL: Redis in production, an in-process stub when empty."""

from __future__ import annotations

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker

from billing.clock import Clock
from workers.stats import JobStats, MemoryJobCounts, RedisJobCounts

QUEUES = ("webhooks", "charges", "email")
"""Settlement, gateway calls and mail each wait in their own queue: a mail outage never slows settlement."""

HEARTBEAT_TIMEOUT_MS = 15_000
MAINTENANCE_CHANCE = 50_000
"""A SIGKILLed worker's messages come back after about 15 s instead of about 20 minutes (FACTS.md)."""


def build_broker(url: str, clock: Clock | None = None) -> dramatiq.Broker:
    """A new broker, made the global one (Dramatiq declares actors against the global broker)."""
    broker: dramatiq.Broker
    if url:
        broker = RedisBroker(  # type: ignore[no-untyped-call]
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
