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
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.common import current_millis
from sqlalchemy.orm import Session

from billing.charging import (
    Books,
    ChargeInFlight,
    charges_to_recheck,
    issue_manual_charge,
    make_card_charge,
    owed_gateway_cancels,
    owed_refunds,
    plan_auto_debits,
    plan_manual_charges,
    recheck_charge,
    run_follow_ups,
)
from billing.db import unit_of_work
from billing.errors import NotFound
from billing.tick import TickReport
from regua.gateway.port import Gateway, GatewayError

if TYPE_CHECKING:
    from workers.actors import Jobs, WorkerContext

log = logging.getLogger("regua.workers.charging")

QUEUE = "charges"
KICK_DELAY_MS = 1_000
"""Follow-ups asked for within this window run once, after it (a burst of webhooks, one pass)."""
PIPELINE_CHUNK = 1_000
BOOKS_CHANGED = (
    "settled",
    "duplicate",
    "declined",
    "rejected",
    "canceled_at_gateway",
    "nothing_to_charge",
    "canceled_meanwhile",
)


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


@dataclass
class ChargeActors:
    """The charging actors on one broker, and how the rest of regua queues their work."""

    broker: dramatiq.Broker
    charge: Any
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
        enqueue_many(self.broker, [self.charge.message(charge_id) for charge_id in charge_ids])

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

    def charge(charge_id: str) -> None:
        worker = context()
        try:
            result = make_card_charge(worker.runtime, _gateway(worker), charge_id)
        except NotFound:
            log.warning("charge %s: no such charge", charge_id)
            return
        log.info("charge %s: %s (%s)", charge_id, result.outcome, result.status)
        if result.outcome == "in_flight":
            raise ChargeInFlight(f"charge {charge_id} is being sent by another job")
        if result.outcome in BOOKS_CHANGED:
            actors[0].books_changed()

    def manual_charge(charge_id: str) -> None:
        worker = context()
        try:
            outcome = issue_manual_charge(worker.runtime, _gateway(worker), charge_id)
        except NotFound:
            log.warning("manual charge %s: no such charge", charge_id)
            return
        log.info("manual charge %s: %s", charge_id, outcome)
        if outcome == "in_flight":
            raise ChargeInFlight(f"charge {charge_id} is being created by another job")
        if outcome in BOOKS_CHANGED:
            actors[0].books_changed()

    def recheck(charge_id: str) -> None:
        worker = context()
        outcome = recheck_charge(worker.runtime, _gateway(worker), charge_id)
        log.info("recheck %s: %s", charge_id, outcome)
        if outcome in BOOKS_CHANGED or outcome == "not_at_gateway":
            actors[0].books_changed()

    def follow_ups() -> None:
        worker = context()
        counts = run_follow_ups(worker.runtime, _gateway(worker))
        if counts:
            log.info("charging follow-ups: %s", dict(counts))

    options: dict[str, Any] = {"queue_name": QUEUE, "broker": broker}
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


def tick_step(jobs: Jobs | None, context: WorkerContext, report: TickReport) -> None:
    """What a tick does for charging: open the auto-debits due at `report.now` and the PIX and boleto
    charges of issued manual invoices, queue one job per charge, queue again the charges whose job was
    lost (or whose codes never came), ask the gateway about charges pending for an hour, and hand owed
    refunds and gateway cancels on. Without a broker it does all of it inline."""
    runtime = context.runtime
    now = report.now
    started, manual = _plan_and_queue(jobs, context, now)
    recheck = runtime.transaction(lambda session: charges_to_recheck(session, now))
    refunds = runtime.read(lambda session: owed_refunds(session, now))
    cancels = runtime.read(owed_gateway_cancels)
    report.counts["charges_started"] = len(started)
    report.counts["charges_requeued"] = len(recheck.requeue)
    report.counts["charges_rechecked"] = len(recheck.ask)
    report.counts["manual_charges_started"] = len(manual)
    report.counts["manual_charges_requeued"] = len(recheck.issue)
    if jobs is not None:
        report.counts["refunds_sent"] = len(refunds)
        report.counts["gateway_cancels"] = len(cancels)
        try:
            jobs.charging.send_charges(recheck.requeue)
            jobs.charging.send_manual_charges(recheck.issue)
            jobs.charging.send_rechecks(recheck.ask)
            if refunds or cancels:
                jobs.charging.follow_ups.send()
        except Exception as error:
            # The charges are in the books: a later pass queues them again (charges_requeued).
            log.warning("queueing charging jobs failed: %s: %s", type(error).__name__, error)
        return
    gateway = context.gateway
    if gateway is None:
        log.warning("no payment gateway: %d charges wait for a worker that has one", len(started) + len(manual))
        return
    for charge_id in started + recheck.requeue:
        outcome = _attempt(make_card_charge, runtime, gateway, charge_id)
        report.counts[f"charges_{outcome}"] += 1
    to_issue = manual + recheck.issue
    for tried, charge_id in enumerate(to_issue, start=1):
        outcome = _attempt(issue_manual_charge, runtime, gateway, charge_id)
        report.counts[f"manual_charges_{outcome}"] += 1
        if outcome == "error":
            # The gateway is down: the rest wait for the hourly pass instead of each stalling this one.
            report.counts["manual_charges_deferred"] = len(to_issue) - tried
            break
    for charge_id in recheck.ask:
        _attempt(recheck_charge, runtime, gateway, charge_id)
    done = run_follow_ups(runtime, gateway)
    report.counts["refunds_sent"] = done["refund_refunded"] + done["refund_requested"]
    report.counts["gateway_cancels"] = (
        sum(n for key, n in done.items() if key.startswith("cancel_")) - done["cancel_error"]
    )


def _plan_and_queue(jobs: Jobs | None, context: WorkerContext, now: datetime) -> tuple[list[str], list[str]]:
    """Open the auto-debits due at `now` and the PIX and boleto charges of manual invoices: (card, manual).

    With a broker, each batch is committed and its jobs queued on a thread while the next batch is
    written (100,000 jobs cost this process seconds of work)."""
    runtime = context.runtime
    if jobs is None:

        def plan(session: Session) -> tuple[list[str], list[str]]:
            cards = plan_auto_debits(session, now, runtime.calendar, runtime.policy)
            return cards, plan_manual_charges(session, now)

        return runtime.transaction(plan)
    sends: list[Future[None]] = []
    with (
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="charge-queue") as sender,
        unit_of_work(runtime.sessions) as session,
    ):

        def queued(send: Callable[[Sequence[str]], None]) -> Callable[[list[str]], None]:
            def committed(charge_ids: list[str]) -> None:
                session.commit()
                sends.append(sender.submit(send, charge_ids))

            return committed

        started = plan_auto_debits(
            session, now, runtime.calendar, runtime.policy, on_batch=queued(jobs.charging.send_charges)
        )
        manual = plan_manual_charges(session, now, on_batch=queued(jobs.charging.send_manual_charges))
        session.commit()
    for send in sends:
        try:
            send.result()
        except Exception as error:
            # The charges are in the books: a later pass queues them again (charges_requeued).
            log.warning("queueing charge jobs failed: %s: %s", type(error).__name__, error)
    return started, manual


def _attempt(work: Callable[[Books, Gateway, str], object], books: Books, gateway: Gateway, charge_id: str) -> str:
    try:
        result = work(books, gateway, charge_id)
    except (GatewayError, ChargeInFlight) as error:
        log.warning("%s %s: %s: %s", work.__name__, charge_id, type(error).__name__, error)
        return "error"
    return result if isinstance(result, str) else str(getattr(result, "outcome", result))
