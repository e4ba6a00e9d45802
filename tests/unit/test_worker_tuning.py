"""How a worker process is set up to settle a payment soon after its webhook arrives."""

from __future__ import annotations

import os
import subprocess
import sys

from workers.actors import declare_actors
from workers.broker import PRIORITY, QUEUES, WEBHOOK_POLL_MS, build_broker
from workers.tuning import SWITCH_INTERVAL

IDLE_TIMEOUT_MS = 1_000  # what Dramatiq's worker passes each consumer by default


def test_every_actor_takes_its_queues_priority_and_settlement_comes_first() -> None:
    jobs = declare_actors(build_broker(""), lambda: None)  # type: ignore[arg-type,return-value]

    actors = [jobs.broker.get_actor(name) for name in jobs.broker.get_declared_actors()]

    assert {actor.queue_name for actor in actors} == set(QUEUES)
    assert all(actor.priority == PRIORITY[actor.queue_name] for actor in actors)
    first = min(actors, key=lambda actor: actor.priority)
    assert first.queue_name == "webhooks"
    assert [actor.actor_name for actor in actors if actor.priority == first.priority] == ["process_webhook_events"]


def test_the_webhooks_queue_is_polled_often_when_idle_and_the_others_as_dramatiq_does() -> None:
    broker = build_broker("redis://127.0.0.1:1/0")  # consumers are built without connecting

    timeouts = {queue: broker.consume(queue, prefetch=2, timeout=IDLE_TIMEOUT_MS).timeout for queue in QUEUES}

    assert timeouts == {"webhooks": WEBHOOK_POLL_MS, "charges": IDLE_TIMEOUT_MS, "email": IDLE_TIMEOUT_MS}


def test_a_worker_process_hands_the_gil_over_every_millisecond() -> None:
    environment = {key: value for key, value in os.environ.items() if not key.startswith("REGUA_")}
    probe = "import sys, regua.worker_process; print(sys.getswitchinterval())"

    found = subprocess.run([sys.executable, "-c", probe], env=environment, capture_output=True, text=True, check=True)

    assert float(found.stdout) == SWITCH_INTERVAL < sys.getswitchinterval()
