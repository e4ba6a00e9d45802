"""The pace of requests to the gateway: a token bucket per process, or one shared by every process through Redis.

Every request the Asaas client sends first takes a token (`acquire`, which blocks until the token is
due). The bucket is GCRA, a token bucket kept as one number, the theoretical arrival time (TAT) of the
next free slot: taking a token reserves the slot `max(tat, now)` and moves the TAT one interval
(1/rate) on; the caller waits until its slot, less the burst it may run ahead. A reservation always
succeeds, so a caller never polls: N callers at once get N slots one interval apart, and N requests take
(N - burst) / rate seconds whatever the number of processes.

The shared bucket is the same arithmetic in one Lua script on the broker's Redis, read against Redis's
own clock (`TIME`), so the processes of every host share one pace without agreeing on the time. One
round trip a request. Dramatiq's rate limiters were the other choice: they count requests in fixed
windows (a burst of twice the rate across a window's edge) and say only yes or no, so a caller that
must wait polls Redis with backoff; the reservation above waits exactly as long as its slot needs.

Redis unreachable: the process falls back to a local bucket at the same rate for the next few seconds
(without asking Redis again meanwhile, so a dead Redis costs one failed round trip, not one a request)
and says so once in the log. The broker is down then too, so few requests are in flight, and a paying
customer's checkout still reaches the gateway.
"""

from __future__ import annotations

import functools
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Protocol

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

log = logging.getLogger("regua.gateway")

DEFAULT_MAX_RPS = 50.0
SHARED_KEY = "regua:gateway:asaas:next-slot"
ALONE_AFTER_FAILURE_S = 5.0

# KEYS[1]: the TAT in microseconds of Redis's clock. ARGV: the interval and the burst tolerance (both µs).
# Answers the microseconds to wait for the slot it reserved. Numbers are written with %.0f: Lua's
# tostring keeps 14 digits, fewer than a microsecond timestamp has.
_RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local wait = tat - tolerance - now
if wait < 0 then wait = 0 end
local next_tat = tat + interval
redis.call('SET', KEYS[1], string.format('%.0f', next_tat), 'PX', math.ceil((next_tat - now) / 1000) + 1000)
return string.format('%.0f', wait)
"""


class RateLimiter(Protocol):
    """What the gateway client asks before each request."""

    def acquire(self) -> None:
        """Block until this caller's request may go."""
        ...


class Unlimited:
    """No pace at all: for clients whose requests go nowhere real (respx, an in-process simulator)."""

    def acquire(self) -> None:
        return None


@dataclass(frozen=True)
class Pace:
    """A rate and the burst allowed above it, in the microseconds the bucket counts in."""

    rate: float
    burst: int = 1

    def __post_init__(self) -> None:
        if not self.rate > 0 or not math.isfinite(self.rate):
            raise ValueError(f"a gateway rate is a positive number of requests a second, not {self.rate!r}")
        if self.burst < 1:
            raise ValueError("a burst lets at least one request go at once")

    @property
    def interval_us(self) -> int:
        return max(1, round(1_000_000 / self.rate))

    @property
    def tolerance_us(self) -> int:
        return (self.burst - 1) * self.interval_us

    def reserve(self, tat_us: int, now_us: int) -> tuple[int, int]:
        """(the next TAT, the microseconds to wait): the arithmetic the Lua script does in Redis."""
        tat = max(tat_us, now_us)
        return tat + self.interval_us, max(0, tat - self.tolerance_us - now_us)


class LocalBucket:
    """The bucket in this process, shared by its threads (dev, tests, a process without a broker)."""

    def __init__(
        self,
        pace: Pace,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.pace = pace
        self._monotonic = monotonic
        self._sleep = sleep
        self._lock = threading.Lock()
        self._tat = 0

    def acquire(self) -> None:
        with self._lock:
            self._tat, wait_us = self.pace.reserve(self._tat, int(self._monotonic() * 1_000_000))
        if wait_us:
            self._sleep(wait_us / 1_000_000)


class SharedBucket:
    """The bucket in Redis, shared by every process and host that uses the same key on the same Redis."""

    def __init__(
        self,
        client: redis.Redis,
        pace: Pace,
        *,
        key: str = SHARED_KEY,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
        fallback: LocalBucket | None = None,
    ) -> None:
        self.pace = pace
        self._client = client
        self._key = key
        self._sleep = sleep
        self._monotonic = monotonic
        self._script = client.register_script(_RESERVE)
        self._fallback = fallback or LocalBucket(pace, sleep=sleep)
        self._alone_until = -math.inf
        self._warned = False

    @classmethod
    def from_url(cls, url: str, pace: Pace, *, key: str = SHARED_KEY) -> SharedBucket:
        # One try a token: a Redis that does not answer at once sends this process to its own bucket.
        client = redis.Redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0, retry=Retry(NoBackoff(), 0))
        return cls(client, pace, key=key)

    def acquire(self) -> None:
        if self._monotonic() < self._alone_until:
            self._fallback.acquire()
            return
        try:
            answer = self._script(keys=[self._key], args=[self.pace.interval_us, self.pace.tolerance_us])
        except redis.RedisError as error:
            if not self._warned:
                log.warning("the shared gateway pace is out of reach (%s): this process keeps its own", error)
                self._warned = True
            self._alone_until = self._monotonic() + ALONE_AFTER_FAILURE_S
            self._fallback.acquire()
            return
        self._warned = False
        wait_us = int(answer)
        if wait_us:
            self._sleep(wait_us / 1_000_000)


@functools.cache
def gateway_limiter(max_rps: float, broker_url: str) -> RateLimiter:
    """The pace every process of one installation keeps: shared through Redis when there is a broker. One
    per process and setting, so that the process's gateway clients (jobs, webhook fetches) share it too."""
    pace = Pace(max_rps)
    if broker_url.startswith(("redis://", "rediss://", "unix://")):
        return SharedBucket.from_url(broker_url, pace)
    return LocalBucket(pace)


def retry_after_seconds(value: str | None, now: datetime) -> float | None:
    """A `Retry-After` (or Asaas's `RateLimit-Reset`) header in seconds from `now`: delta-seconds or an
    HTTP date (RFC 9110 10.2.3); None when absent or unreadable, and never below zero."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            return None
        return max(0.0, (when - now).total_seconds())
    return max(0.0, seconds) if math.isfinite(seconds) else None
