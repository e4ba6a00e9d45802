"""The queue counts, dead letters and job counts read from Dramatiq's own Redis keys."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime

import dramatiq
import pytest
import redis

from regua.ops import broker as queues
from tests.conftest import REDIS_URL, service_missing
from tests.integration.ops_helpers import FlakyJob
from workers.broker import build_broker
from workers.stats import job_counts

pytestmark = pytest.mark.redis


@pytest.fixture
def redis_broker() -> Iterator[dramatiq.Broker]:
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.flushdb()
    except redis.RedisError as error:
        service_missing("Redis", error)
    finally:
        client.close()
    broker = build_broker(REDIS_URL)
    yield broker
    broker.close()


def wait_for(condition: object, seconds: float = 15) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError("the condition never held")


def counts(broker: dramatiq.Broker, queue: str) -> dict[str, int]:
    view = queues.read_queues(broker, datetime.now(UTC))
    return next(c for c in view.queues if c.queue == queue).as_states()


def test_waiting_and_delayed_messages_are_counted_per_queue_in_one_script(redis_broker: dramatiq.Broker) -> None:
    flaky = FlakyJob(redis_broker)
    flaky.actor.send("a")
    flaky.actor.send("b")
    flaky.actor.send_with_options(args=("later",), delay=600_000)
    assert counts(redis_broker, "email") == {"waiting": 2, "delayed": 1, "in_flight": 0, "dead": 0}
    assert counts(redis_broker, "webhooks") == {"waiting": 0, "delayed": 0, "in_flight": 0, "dead": 0}


def test_a_dead_message_is_read_with_its_error_then_requeued_and_processed(redis_broker: dramatiq.Broker) -> None:
    flaky = FlakyJob(redis_broker)
    flaky.actor.send("invoice-7")
    redis_broker.emit_after("process_boot")
    worker = dramatiq.Worker(redis_broker, queues={"email"}, worker_threads=1, worker_timeout=100)
    worker.start()
    try:
        wait_for(lambda: counts(redis_broker, "email")["dead"] == 1)
        assert queues.read_queues(redis_broker, datetime.now(UTC)).workers_alive == 1
        [letter] = queues.dead_letters(redis_broker, "email")
        assert (letter.actor, letter.args, letter.retries) == ("flaky_job", '["invoice-7"]', 0)
        assert letter.error == "RuntimeError: the mail server said no to invoice-7"

        flaky.succeed.set()
        assert queues.requeue(redis_broker, "email", [letter.message_id]) == 1
        assert flaky.done.wait(15)
        wait_for(lambda: counts(redis_broker, "email") == {"waiting": 0, "delayed": 0, "in_flight": 0, "dead": 0})
    finally:
        worker.stop()
    job_stats = job_counts(redis_broker)
    assert job_stats is not None
    assert job_stats.totals() == {"processed": 1, "failed": 1}
    minutes = job_stats.buckets("minute", datetime.now(UTC), 5)
    assert (sum(b.processed for b in minutes), sum(b.failed for b in minutes)) == (1, 1)
    hours = job_stats.buckets("hour", datetime.now(UTC), 24)
    assert (sum(b.processed for b in hours), sum(b.failed for b in hours)) == (1, 1)


def test_deleting_every_dead_letter_empties_the_dead_set(redis_broker: dramatiq.Broker) -> None:
    flaky = FlakyJob(redis_broker)
    for label in ("x", "y", "z"):
        flaky.actor.send(label)
    redis_broker.emit_after("process_boot")
    worker = dramatiq.Worker(redis_broker, queues={"email"}, worker_threads=2, worker_timeout=100)
    worker.start()
    try:
        wait_for(lambda: counts(redis_broker, "email")["dead"] == 3)
    finally:
        worker.stop()
    assert queues.delete(redis_broker, "email", None) == 3
    assert counts(redis_broker, "email")["dead"] == 0
    assert queues.dead_letters(redis_broker, "email") == []
