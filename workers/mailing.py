"""The email actors, on a queue of their own: record what the régua owes, send each notification once.

A mail outage never slows settlement: webhook jobs only queue a pass (`kick`), the passes and the
sends run on the "email" queue, and a temporary failure is retried there with backoff (60 retries,
1 to 10 minutes apart: five to ten hours). Beyond that, and for messages lost with a broker, the
tick queues again what nobody tried for 15 minutes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import dramatiq

from billing.notifications import record_due_notifications
from billing.tick import TickReport
from regua.mailer import (
    REQUEUE_AFTER,
    Delivery,
    Outcome,
    defer_notifications,
    deliver_notifications,
    notifications_to_send,
)
from regua.runtime import Runtime
from regua.smtp import SmtpMailer

if TYPE_CHECKING:
    from dramatiq.worker import Worker

    from workers.actors import Jobs, WorkerContext

log = logging.getLogger("regua.mail")

QUEUE = "email"
SEND_RETRIES = 60
MIN_BACKOFF_MS = 60_000
"""Not below LEASE: a retry must find its own previous attempt's lease over."""
MAX_BACKOFF_MS = 600_000
KICK_LOOKBACK = timedelta(hours=1)
"""A pass after a webhook looks only at the last hour; the tick looks three days back."""
BATCH = 32
"""Notifications delivered together (one claim and one record transaction, the sends side by side)."""
KICK_DELAY_MS = 1_000
"""Kicks within this window share one pass, run after it (a burst of webhooks, one pass)."""


class NotSentYet(dramatiq.Retry):
    """A temporary failure or an attempt under way elsewhere: retried with backoff, not logged as an error."""


class MailerSlot:
    """One SMTP mailer per process, made on first use (after Dramatiq forked its workers)."""

    def __init__(self, url: Callable[[], str]) -> None:
        self._url = url
        self._lock = threading.Lock()
        self._mailer: SmtpMailer | None = None

    def get(self) -> SmtpMailer:
        with self._lock:
            if self._mailer is None:
                self._mailer = SmtpMailer(self._url())
            return self._mailer

    def close(self) -> None:
        with self._lock:
            mailer, self._mailer = self._mailer, None
        if mailer is not None:
            mailer.close()


class CloseMailer(dramatiq.Middleware):
    """Says QUIT to the mail server when the worker stops."""

    def __init__(self, slot: MailerSlot) -> None:
        self.slot = slot

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: Worker) -> None:
        self.slot.close()


class Coalesced:
    """Runs `work` once at a time in this process; calls that arrive meanwhile make it run once more."""

    def __init__(self, work: Callable[[], None]) -> None:
        self._work = work
        self._lock = threading.Lock()
        self._running = False
        self._again = False

    def __call__(self) -> None:
        with self._lock:
            if self._running:
                self._again = True
                return
            self._running = True
        try:
            while True:
                with self._lock:
                    self._again = False
                self._work()
                with self._lock:
                    if not self._again:
                        self._running = False
                        return
        except BaseException:
            with self._lock:
                self._running = False
            raise


class DeliveryFailed(Exception):
    """The batch this job's notification was delivered in failed (the database, most likely): retried."""


@dataclass(eq=False)
class _Asked:
    notification_id: str
    woken: threading.Event = field(default_factory=threading.Event)
    """Set once: when the answer is there, or when this job's thread is to lead the next batch."""
    leads: bool = False
    answer: Delivery | None = None
    error: BaseException | None = None


class Grouped:
    """The deliveries this process's worker threads ask for at the same time, done as batches.

    One send job per notification, as the queue sees it; but claiming and recording cost a
    transaction each, and the SMTP conversations can run side by side. So up to `leaders` job
    threads at a time each deliver a batch: their own id and the ids waiting (oldest first, up to
    `batch`, after a short `linger` for the jobs on their way), while the other jobs' threads sleep
    until their answer comes. A leader then hands over to the oldest waiting job, whose id heads the
    next batch: no job waits behind a stream of others, and each thread is woken once.
    """

    def __init__(
        self,
        deliver: Callable[[list[str]], list[Delivery]],
        *,
        batch: int = BATCH,
        leaders: int = 2,
        linger: float = 0.002,
    ) -> None:
        self._deliver = deliver
        self._batch = batch
        self._leaders = leaders
        self._linger = linger
        self._running = 0
        self._waiting: deque[_Asked] = deque()
        self._lock = threading.Lock()

    def __call__(self, notification_id: str) -> Delivery:
        asked = _Asked(notification_id)
        with self._lock:
            if self._running < self._leaders:
                self._running += 1
                asked.leads = True
            else:
                self._waiting.append(asked)
        if not asked.leads:
            asked.woken.wait()
        if asked.leads:
            self._lead(asked)
        if asked.error is not None:
            raise DeliveryFailed(f"notification {notification_id}: {asked.error!r}") from asked.error
        assert asked.answer is not None
        return asked.answer

    def _lead(self, asked: _Asked) -> None:
        """Deliver `asked` and the ids waiting behind it as one batch, then hand over to the next in line."""
        try:
            if self._linger:
                time.sleep(self._linger)
            with self._lock:
                room = min(self._batch - 1, len(self._waiting))
                batch = [asked, *(self._waiting.popleft() for _ in range(room))]
            try:
                answers = self._deliver([item.notification_id for item in batch])
                for item, answer in zip(batch, answers, strict=True):
                    item.answer = answer
            except BaseException as error:
                for item in batch:
                    item.error = error
            for item in batch[1:]:
                item.woken.set()
        finally:
            with self._lock:
                if self._waiting:
                    successor = self._waiting.popleft()
                    successor.leads = True
                    successor.woken.set()
                else:
                    self._running -= 1


@dataclass
class MailActors:
    """The email actors declared on one broker."""

    send_notification: Any
    deliver_pending: Any
    mailer: MailerSlot = field(repr=False)
    min_backoff_ms: int = MIN_BACKOFF_MS
    max_backoff_ms: int = MAX_BACKOFF_MS
    kick_delay_ms: int = KICK_DELAY_MS
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _scheduled_until: float = 0.0

    def kick(self) -> None:
        """Queue a pass that records what just happened and sends it, shortly after; repeated kicks share it.

        It never raises: a broker that is down must not fail the settlement that kicked (the tick
        records and queues the same mails later).
        """
        with self._lock:
            now = time.monotonic()
            if now < self._scheduled_until:
                return
            self._scheduled_until = now + self.kick_delay_ms / 1000
        try:
            self.deliver_pending.send_with_options(delay=self.kick_delay_ms or None)
        except Exception as error:
            with self._lock:
                self._scheduled_until = 0.0
            log.warning("could not queue the email pass (the tick will): %s", error)

    def queue(self, notification_ids: Sequence[str]) -> int:
        """One send message per notification; raises if the broker cannot take them."""
        for notification_id in notification_ids:
            self.send_notification.send_with_options(
                args=(notification_id,), min_backoff=self.min_backoff_ms, max_backoff=self.max_backoff_ms
            )
        return len(notification_ids)

    def close(self) -> None:
        self.mailer.close()


def declare(broker: dramatiq.Broker, context: Callable[[], WorkerContext]) -> MailActors:
    slot = MailerSlot(lambda: context().runtime.settings.smtp_url)
    broker.add_middleware(CloseMailer(slot))
    declared: list[MailActors] = []

    grouped = Grouped(lambda ids: deliver_notifications(context().runtime, slot.get(), ids))

    def send_notification(notification_id: str) -> None:
        delivery = grouped(notification_id)
        log.info("notification %s: %s %s", notification_id, delivery.outcome, delivery.detail)
        if delivery.outcome in (Outcome.DEFERRED, Outcome.BUSY):
            raise NotSentYet(f"notification {notification_id} not sent yet: {delivery.detail}")

    def one_pass() -> None:
        runtime = context().runtime
        now = runtime.clock.now()
        recorded = runtime.transaction(
            lambda session: record_due_notifications(
                session, now, runtime.calendar, runtime.policy, schedule=False, lookback=KICK_LOOKBACK
            )
        )
        lost = runtime.read(lambda session: notifications_to_send(session, now))
        declared[0].queue(list(dict.fromkeys(recorded.pending + lost)))

    actors = MailActors(
        send_notification=dramatiq.actor(
            actor_name="send_notification",
            queue_name=QUEUE,
            broker=broker,
            max_retries=SEND_RETRIES,
            min_backoff=MIN_BACKOFF_MS,
            max_backoff=MAX_BACKOFF_MS,
            time_limit=180_000,
        )(send_notification),
        deliver_pending=dramatiq.actor(
            actor_name="deliver_pending_notifications",
            queue_name=QUEUE,
            broker=broker,
            max_retries=3,
            min_backoff=5_000,
            max_backoff=60_000,
            time_limit=300_000,
        )(Coalesced(one_pass)),
        mailer=slot,
    )
    declared.append(actors)
    return actors


def tick_step(jobs: Jobs | None, context: WorkerContext, report: TickReport) -> None:
    """Record the notifications due at the tick's `now`, then queue them, or send them here without a broker.

    Also queued again: pending notifications older than 5 minutes whose job is gone (nobody tried
    them for 15 minutes); without a broker, those not tried for 5 minutes are tried again here.
    """
    runtime = context.runtime
    now = report.now
    recorded = runtime.transaction(
        lambda session: record_due_notifications(session, now, runtime.calendar, runtime.policy)
    )
    report.counts["notifications_recorded"] = len(recorded.pending) + len(recorded.no_contact)
    report.counts["notifications_no_contact"] = len(recorded.no_contact)
    if jobs is not None:
        lost = runtime.read(lambda session: notifications_to_send(session, now))
        ids = list(dict.fromkeys(recorded.pending + lost))
        try:
            report.counts["emails_queued"] = jobs.mailing.queue(ids)
        except Exception as error:
            log.warning("queueing %d emails failed (the next tick tries again): %s", len(ids), error)
            report.counts["emails_queued"] = 0
        return
    retry = runtime.read(lambda session: notifications_to_send(session, now, quiet_for=REQUEUE_AFTER))
    report.counts.update(send_here(runtime, list(dict.fromkeys(retry + recorded.pending)), now))


def send_here(runtime: Runtime, notification_ids: Sequence[str], now: datetime | None = None) -> Counter[str]:
    """Send in this process, a batch at a time; stops at the first sign that the server is unreachable."""
    counts: Counter[str] = Counter({f"emails_{name}": 0 for name in ("sent", "failed", "obsolete", "deferred")})
    if not notification_ids:
        return counts
    try:
        mailer = SmtpMailer(runtime.settings.smtp_url)
    except ValueError as error:
        log.error("no email sent: %s", error)
        counts["emails_deferred"] = len(notification_ids)
        return counts
    with mailer:
        for offset in range(0, len(notification_ids), BATCH):
            batch = notification_ids[offset : offset + BATCH]
            try:
                deliveries = deliver_notifications(runtime, mailer, batch, now=now)
            except Exception as error:
                log.warning("%d notifications: %s: %s", len(batch), type(error).__name__, error)
                counts["emails_deferred"] += len(batch)
                continue
            for delivery in deliveries:
                if delivery.outcome in (Outcome.SENT, Outcome.FAILED, Outcome.OBSOLETE):
                    counts[f"emails_{delivery.outcome}"] += 1
                elif delivery.outcome != Outcome.DONE:
                    counts["emails_deferred"] += 1
            unreachable = next((d for d in deliveries if d.unreachable), None)
            if unreachable is not None:
                left = notification_ids[offset + BATCH :]
                defer_notifications(runtime, left, now or runtime.clock.now(), unreachable.detail)
                counts["emails_deferred"] += len(left)
                log.warning("%s; %d more emails left pending for the next tick", unreachable.detail, len(left))
                break
    return counts
