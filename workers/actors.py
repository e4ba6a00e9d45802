"""The actors: each takes ids, calls one processing function, and lets Dramatiq retry what failed."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import dramatiq

from workers import charging, mailing
from workers.broker import PRIORITY
from workers.context import WorkerContext
from workers.processing import process_event, settle_told_payments

log = logging.getLogger("regua.workers")

EVENTS_PER_MESSAGE = 100
ECHO_WAITS = 3
ECHO_WAIT_MS = 2_000
"""An echo of a card payment that outran the job charging it is looked at again 2 s later, at most three
times: by then the job has usually recorded the answer and the echo is done in the batch's one transaction, instead
of fetching the payment again and queueing on the account's lock behind the job's own settlement. Past the
waits (a job slower than 6 s) it takes the whole path, as any other event."""


class EventsNotProcessed(Exception):
    """Some events of a batch failed; the whole batch is retried (the processed ones are skipped)."""


@dataclass
class Jobs:
    """The actors declared on one broker, and how the rest of regua queues work on them."""

    broker: dramatiq.Broker
    process_webhook_events: Any
    charging: charging.ChargeActors
    mailing: mailing.MailActors
    context: Callable[[], WorkerContext] = field(repr=False, default=lambda: None)  # type: ignore[assignment]

    def enqueue_events(self, event_ids: list[str]) -> None:
        for offset in range(0, len(event_ids), EVENTS_PER_MESSAGE):
            self.process_webhook_events.send(event_ids[offset : offset + EVENTS_PER_MESSAGE])

    def kick(self) -> None:
        """Queue the level-triggered follow-ups: pending emails, owed refunds and gateway cancels."""
        self.mailing.kick()
        self.charging.kick()


def declare_actors(broker: dramatiq.Broker, context: Callable[[], WorkerContext]) -> Jobs:
    jobs: list[Jobs] = []

    def process_webhook_events(event_ids: list[str], waited: int = 0) -> None:
        worker = context()
        failed = []
        told = settle_told_payments(worker.runtime, worker.providers, event_ids, wait_for_charges=waited < ECHO_WAITS)
        recorded = len(event_ids) - len(told.left) - len(told.charging)
        if recorded:
            log.info("webhook events: %d of %d already recorded", recorded, len(event_ids))
        for event_id in told.left:
            try:
                outcome = process_event(worker.runtime, worker.providers, event_id)
                log.info("webhook event %s: %s", event_id, outcome)
            except Exception as error:
                log.warning("webhook event %s failed: %s: %s", event_id, type(error).__name__, error)
                failed.append(event_id)
        jobs[0].kick()
        if failed:  # the retry looks at the echoes set apart again: no second chain of waits for them
            raise EventsNotProcessed(f"{len(failed)} of {len(event_ids)} events failed: {failed[:5]}")
        if told.charging:
            jobs[0].process_webhook_events.send_with_options(args=(told.charging, waited + 1), delay=ECHO_WAIT_MS)

    declared = Jobs(
        broker=broker,
        process_webhook_events=dramatiq.actor(
            actor_name="process_webhook_events",
            queue_name="webhooks",
            priority=PRIORITY["webhooks"],
            broker=broker,
            max_retries=12,
            min_backoff=1_000,
            max_backoff=600_000,
            time_limit=120_000,
        )(process_webhook_events),
        charging=charging.declare(broker, context),
        mailing=mailing.declare(broker, context),
        context=context,
    )
    declared.charging.on_books_changed = declared.kick  # a settled or failed charge has emails to send too
    jobs.append(declared)
    return declared
