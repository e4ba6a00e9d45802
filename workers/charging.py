"""Actors that talk to the gateway: day-1 and retry charges, PIX and boleto codes of issued invoices, rechecks,
owed refunds, cancels of superseded charges.

Each takes ids and calls one service of `billing.charging`; the service claims the charge, calls the
gateway outside any transaction and records the answer, so every job is safe to run twice. A
gateway that does not answer raises, and Dramatiq retries with backoff (the Asaas client finds a
charge it already made by our id, so a retry never charges twice).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import dramatiq

from billing.batches import chunks
from billing.charging import (
    BOOKS_CHANGED,
    ChargeInFlight,
    ChargeOutcome,
    issue_manual_charge,
    make_card_charges,
    recheck_charge,
    run_follow_ups,
)
from billing.errors import NotFound
from billing.ports import Gateway
from workers.broker import PRIORITY, enqueue_many
from workers.context import WorkerContext

log = logging.getLogger("regua.workers.charging")

QUEUE = "charges"
KICK_DELAY_MS = 1_000
"""Follow-ups asked for within this window run once, after it (a burst of webhooks, one pass)."""
CHARGES_PER_MESSAGE = 20
"""Card charges a job takes: one claim and one record transaction for them all, one gateway call each. Twenty
keep a job's calls short (at 50 requests a second shared by 16 threads, about 6 s) and cut a charge's share of
the claim, the record and the message to a twentieth."""


@dataclass
class ChargeActors:
    """The charging actors on one broker, and how the rest of regua queues their work."""

    broker: dramatiq.Broker
    charge: Any
    """One card charge: the messages queued by an earlier version (a batch of one)."""
    charge_cards: Any
    recheck: Any
    follow_ups: Any
    manual: Any = None
    """Gives a PIX or boleto charge its codes at the gateway (declare() always sets it)."""
    on_books_changed: Callable[[], None] | None = None
    """Called after a job settled or failed a charge: emails and refunds to queue (default: kick())."""
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _scheduled_until: float = 0.0

    def kick(self) -> None:
        """Queue one pass over owed refunds and gateway cancels, shortly after; repeated kicks share it."""
        with self._lock:
            now = time.monotonic()
            if now < self._scheduled_until:
                return
            self.follow_ups.send_with_options(delay=KICK_DELAY_MS)
            self._scheduled_until = now + KICK_DELAY_MS / 1000

    def send_charges(self, charge_ids: Sequence[str]) -> None:
        batches = chunks(charge_ids, CHARGES_PER_MESSAGE)
        enqueue_many(self.broker, [self.charge_cards.message(list(batch)) for batch in batches])

    def send_manual_charges(self, charge_ids: Sequence[str]) -> None:
        enqueue_many(self.broker, [self.manual.message(charge_id) for charge_id in charge_ids])

    def send_rechecks(self, charge_ids: Sequence[str]) -> None:
        enqueue_many(self.broker, [self.recheck.message(charge_id) for charge_id in charge_ids])

    def books_changed(self) -> None:
        (self.on_books_changed or self.kick)()


def _gateway(worker: WorkerContext) -> Gateway:
    if worker.gateway is None:
        raise RuntimeError("this worker has no payment gateway configured")
    return worker.gateway


def declare(broker: dramatiq.Broker, context: Callable[[], WorkerContext]) -> ChargeActors:
    actors: list[ChargeActors] = []

    def charge_cards(charge_ids: list[str]) -> None:
        worker = context()
        results = make_card_charges(worker.runtime, _gateway(worker), charge_ids)
        for result in results:
            log.info("charge %s: %s (%s)", result.charge_id, result.outcome, result.status)
        found = {result.charge_id for result in results}
        for charge_id in charge_ids:
            if charge_id not in found:
                log.warning("charge %s: no such charge", charge_id)
        if any(result.outcome in BOOKS_CHANGED for result in results):
            actors[0].books_changed()
        not_sent = [result.charge_id for result in results if result.outcome == ChargeOutcome.NOT_SENT]
        if not_sent:
            actors[0].send_charges(not_sent)
        in_flight = [result.charge_id for result in results if result.outcome == ChargeOutcome.IN_FLIGHT]
        if in_flight:
            raise ChargeInFlight(f"charges {', '.join(in_flight[:5])} are being sent by another job")

    def charge(charge_id: str) -> None:
        charge_cards([charge_id])

    def manual_charge(charge_id: str) -> None:
        worker = context()
        try:
            outcome = issue_manual_charge(worker.runtime, _gateway(worker), charge_id)
        except NotFound:
            log.warning("manual charge %s: no such charge", charge_id)
            return
        log.info("manual charge %s: %s", charge_id, outcome)
        if outcome == ChargeOutcome.IN_FLIGHT:
            raise ChargeInFlight(f"charge {charge_id} is being created by another job")
        if outcome in BOOKS_CHANGED:
            actors[0].books_changed()

    def recheck(charge_id: str) -> None:
        worker = context()
        outcome = recheck_charge(worker.runtime, _gateway(worker), charge_id)
        log.info("recheck %s: %s", charge_id, outcome)
        if outcome in BOOKS_CHANGED:
            actors[0].books_changed()

    def follow_ups() -> None:
        worker = context()
        counts = run_follow_ups(worker.runtime, _gateway(worker))
        if counts:
            log.info("charging follow-ups: %s", dict(counts))

    options: dict[str, Any] = {"queue_name": QUEUE, "priority": PRIORITY[QUEUE], "broker": broker}
    declared = ChargeActors(
        broker=broker,
        charge=dramatiq.actor(
            actor_name="charge",
            max_retries=10,
            min_backoff=15_000,
            max_backoff=3_600_000,
            time_limit=300_000,
            **options,
        )(charge),
        charge_cards=dramatiq.actor(
            actor_name="charge_cards",
            max_retries=10,
            min_backoff=15_000,
            max_backoff=3_600_000,
            time_limit=300_000,
            **options,
        )(charge_cards),
        recheck=dramatiq.actor(
            actor_name="recheck_charge",
            max_retries=3,
            min_backoff=60_000,
            max_backoff=600_000,
            time_limit=300_000,
            **options,
        )(recheck),
        follow_ups=dramatiq.actor(actor_name="charging_follow_ups", max_retries=0, time_limit=600_000, **options)(
            follow_ups
        ),
        manual=dramatiq.actor(
            actor_name="issue_manual_charge",
            max_retries=10,
            min_backoff=15_000,
            max_backoff=3_600_000,
            time_limit=300_000,
            **options,
        )(manual_charge),
    )
    actors.append(declared)
    return declared
