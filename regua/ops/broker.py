"""What the queues hold, read from Dramatiq's own structures: Redis keys in one round trip, or the stub broker.

Redis keys (namespace `dramatiq`): `<q>` a list of waiting ids, `<q>.DQ.msgs` the delayed payloads,
`<q>.XQ` a sorted set of dead-letter ids by time with `<q>.XQ.msgs` their payloads,
`__acks__.<worker>.<q>` the ids each worker holds, `__heartbeats__` worker ids by last beat.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import dramatiq
from dramatiq.brokers.stub import StubBroker

from workers.broker import HEARTBEAT_TIMEOUT_MS, QUEUES
from workers.stats import Failure, job_counts

NAMESPACE = "dramatiq"

# One round trip: every count for every queue, in-flight summed over the workers that hold acks.
COUNTS_SCRIPT = """
local ns = KEYS[1]
local alive_since = tonumber(ARGV[1])
local workers = redis.call('zrange', ns .. ':__heartbeats__', 0, -1)
local alive = redis.call('zcount', ns .. ':__heartbeats__', alive_since, '+inf')
local out = {#workers, alive}
for i = 2, #ARGV do
  local q = ARGV[i]
  local inflight = 0
  for _, worker in ipairs(workers) do
    inflight = inflight + redis.call('scard', ns .. ':__acks__.' .. worker .. '.' .. q)
      + redis.call('scard', ns .. ':__acks__.' .. worker .. '.' .. q .. '.DQ')
  end
  table.insert(out, redis.call('llen', ns .. ':' .. q))
  table.insert(out, redis.call('hlen', ns .. ':' .. q .. '.DQ.msgs'))
  table.insert(out, inflight)
  table.insert(out, redis.call('zcard', ns .. ':' .. q .. '.XQ'))
end
return out
"""


@dataclass(frozen=True)
class QueueCounts:
    queue: str
    waiting: int
    delayed: int
    in_flight: int
    dead: int

    def as_states(self) -> dict[str, int]:
        return {"waiting": self.waiting, "delayed": self.delayed, "in_flight": self.in_flight, "dead": self.dead}


@dataclass(frozen=True)
class BrokerView:
    queues: list[QueueCounts]
    workers_alive: int
    workers_known: int
    kind: str


@dataclass(frozen=True)
class DeadLetter:
    """A message Dramatiq gave up on: its actor, arguments, the last error and how often it was retried."""

    message_id: str
    queue: str
    actor: str
    args: str
    retries: int
    error: str
    failed_at: datetime | None
    payload: bytes


def _redis(broker: dramatiq.Broker) -> Any:
    return broker.client  # type: ignore[attr-defined]


def read_queues(broker: dramatiq.Broker, now: datetime) -> BrokerView:
    """Counts per queue and the workers alive, from the broker itself (never from the database)."""
    if isinstance(broker, StubBroker):
        counts = []
        for queue in QUEUES:
            waiting = broker.queues.get(queue)
            delayed = broker.queues.get(f"{queue}.DQ")
            pending = waiting.unfinished_tasks if waiting is not None else 0
            size = waiting.qsize() if waiting is not None else 0
            counts.append(
                QueueCounts(
                    queue,
                    size,
                    delayed.qsize() if delayed is not None else 0,
                    max(pending - size, 0),
                    len(broker.dead_letters_by_queue.get(queue, [])),
                )
            )
        return BrokerView(counts, workers_alive=1, workers_known=1, kind="in-process")
    alive_since = int(now.timestamp() * 1000) - HEARTBEAT_TIMEOUT_MS
    raw = _redis(broker).eval(COUNTS_SCRIPT, 1, NAMESPACE, alive_since, *QUEUES)
    numbers = [int(n) for n in raw]
    counts = [QueueCounts(queue, *numbers[2 + 4 * n : 6 + 4 * n]) for n, queue in enumerate(QUEUES)]
    return BrokerView(counts, workers_alive=numbers[1], workers_known=numbers[0], kind="redis")


def _dead_letter(
    queue: str, message_id: str, payload: bytes, failed_at: datetime | None, failure: Failure | None
) -> DeadLetter:
    message = dramatiq.Message.decode(payload)
    traceback = str(message.options.get("traceback") or "")
    lines = [line for line in traceback.strip().splitlines() if line.strip()]
    if failure is not None:
        lines = [failure.error]
    arguments = json.dumps([*message.args, *([message.kwargs] if message.kwargs else [])], ensure_ascii=False)
    return DeadLetter(
        message_id=message_id,
        queue=queue,
        actor=message.actor_name,
        args=arguments,
        retries=failure.retries if failure is not None else int(message.options.get("retries", 0)),
        error=lines[-1] if lines else "(no error recorded)",
        failed_at=failed_at,
        payload=payload,
    )


def dead_letters(broker: dramatiq.Broker, queue: str, *, offset: int = 0, limit: int = 50) -> list[DeadLetter]:
    """The newest dead letters of a queue first, a page at a time."""
    if queue not in QUEUES:
        return []
    if isinstance(broker, StubBroker):
        proxies = list(reversed(broker.dead_letters_by_queue.get(queue, [])))[offset : offset + limit]
        counts = job_counts(broker)
        failures = counts.failures([p.message_id for p in proxies]) if counts is not None else {}
        return [
            _dead_letter(queue, p.message_id, p._message.encode(), None, failures.get(p.message_id)) for p in proxies
        ]
    client = _redis(broker)
    xq = f"{NAMESPACE}:{queue}.XQ"
    ids = client.zrevrange(xq, offset, offset + limit - 1, withscores=True)
    if not ids:
        return []
    message_ids = [_text(message_id) for message_id, _ in ids]
    payloads = client.hmget(f"{xq}.msgs", message_ids)
    counts = job_counts(broker)
    failures = counts.failures(message_ids) if counts is not None else {}
    return [
        _dead_letter(queue, message_id, payload, datetime.fromtimestamp(score / 1000, UTC), failures.get(message_id))
        for message_id, (_, score), payload in zip(message_ids, ids, payloads, strict=True)
        if payload is not None
    ]


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _take(broker: dramatiq.Broker, queue: str, message_ids: list[str] | None) -> list[bytes]:
    """Remove dead letters (all of the queue's when `message_ids` is None) and return their payloads."""
    if queue not in QUEUES:
        return []
    if isinstance(broker, StubBroker):
        letters = broker.dead_letters_by_queue.get(queue, [])
        chosen = [p for p in letters if message_ids is None or p.message_id in message_ids]
        for proxy in chosen:
            letters.remove(proxy)
        return [proxy._message.encode() for proxy in chosen]
    client = _redis(broker)
    xq = f"{NAMESPACE}:{queue}.XQ"
    ids = [_text(i) for i in client.zrange(xq, 0, -1)] if message_ids is None else message_ids
    if not ids:
        return []
    taken: list[bytes] = []
    for offset in range(0, len(ids), 500):
        chunk = ids[offset : offset + 500]
        pipe = client.pipeline(transaction=True)
        pipe.hmget(f"{xq}.msgs", chunk)
        pipe.zrem(xq, *chunk)
        pipe.hdel(f"{xq}.msgs", *chunk)
        payloads, _removed, _deleted = pipe.execute()
        taken.extend(payload for payload in payloads if payload is not None)
    return taken


def requeue(broker: dramatiq.Broker, queue: str, message_ids: list[str] | None) -> int:
    """Dead letters back on their queue with their retries reset; returns how many."""
    payloads = _take(broker, queue, message_ids)
    for payload in payloads:
        message = dramatiq.Message.decode(payload)
        options = {k: v for k, v in message.options.items() if k not in ("retries", "traceback", "redis_message_id")}
        broker.enqueue(dataclasses.replace(message, queue_name=queue, options=options))
    return len(payloads)


def delete(broker: dramatiq.Broker, queue: str, message_ids: list[str] | None) -> int:
    """Dead letters dropped for good; returns how many."""
    return len(_take(broker, queue, message_ids))
