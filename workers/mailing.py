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
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import dramatiq

from billing.notifications import record_due_notifications
from billing.outbox import Delivery, Outcome, notifications_to_send
from workers.broker import PRIORITY, enqueue_many
from workers.context import Postman, WorkerContext

if TYPE_CHECKING:
    from dramatiq.worker import Worker

log = logging.getLogger("regua.mail")

QUEUE = "email"
SEND_RETRIES = 60
MIN_BACKOFF_MS = 60_000
"""Not below LEASE: a retry must find its own previous attempt's lease over."""
MAX_BACKOFF_MS = 600_000
KICK_LOOKBACK = timedelta(hours=1)
"""A pass after a webhook looks at most an hour back (the tick looks three days back)..."""
KICK_OVERLAP = timedelta(seconds=30)
"""...and, after an earlier pass in the same process, only from a little before that one: a happening
can be committed a moment after the instant it carries. One committed later still is the tick's."""
BATCH = 16
"""Notifications a send message carries, and at most as many delivered together (one claim and one
record transaction, the sends side by side). Sixteen rather than 32: a leader renders its batch before
the first send, and the other leader's sends fill that gap better when it is shorter (`bench.emails`:
0.58 to 0.62 of the ceiling against 0.54 to 0.56, alternated runs)."""
KICK_DELAY_MS = 1_000
"""Kicks within this window share one pass, run after it (a burst of webhooks, one pass)."""


class NotSentYet(dramatiq.Retry):
    """A temporary failure or an attempt under way elsewhere: retried with backoff, not logged as an error."""


class MailerSlot:
    """One postman per process, made on first use (after Dramatiq forked its workers)."""

    def __init__(self, make: Callable[[], Postman]) -> None:
        self._make = make
        self._lock = threading.Lock()
        self._mailer: Postman | None = None

    def get(self) -> Postman:
        with self._lock:
            if self._mailer is None:
                self._mailer = self._make()
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


def _listed(notification_ids: Sequence[str], shown: int = 3) -> str:
    more = len(notification_ids) - shown
    return ", ".join(notification_ids[:shown]) + (f" and {more} more" if more > 0 else "")


def kick_window_start(now: datetime, previous: datetime | None) -> datetime:
    """Where a pass after a webhook starts looking: the cost of a pass is what it reads, and on day 1 an
    hour back is every payment settled so far, read again after every settlement."""
    if previous is None or previous > now:
        return now - KICK_LOOKBACK
    return max(now - KICK_LOOKBACK, previous - KICK_OVERLAP)


class DeliveryFailed(Exception):
    """The batch this job's notification was delivered in failed (the database, most likely): retried."""


@dataclass(eq=False)
class _Asked:
    notification_ids: list[str]
    woken: threading.Event = field(default_factory=threading.Event)
    """Set once: when the answers are there, or when this job's thread is to lead the next batch."""
    leads: bool = False
    answers: list[Delivery] | None = None
    error: BaseException | None = None


class Grouped:
    """The deliveries this process's worker threads ask for at the same time, done as batches.

    A send job carries up to BATCH notifications; the jobs of a day-1 run carry that many, those of a
    pass after a webhook often one or two. Claiming and recording cost a transaction each, and the
    SMTP conversations can run side by side. So up to `leaders` job threads at a time each deliver a
    batch: their own ids and those of the jobs waiting (oldest first, whole jobs while they fit in
    `batch`, after a short `linger` for the jobs on their way unless their own fill it), while the
    other jobs' threads sleep until their answers come. A leader then hands over to the oldest
    waiting job, whose ids head the next batch: no job waits behind a stream of others, and each
    thread is woken once.
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

    def __call__(self, notification_ids: Sequence[str]) -> list[Delivery]:
        """One Delivery for each of these ids, in order, once the batch they went in was delivered."""
        asked = _Asked(list(notification_ids))
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
            raise DeliveryFailed(f"notifications {_listed(asked.notification_ids)}: {asked.error!r}") from asked.error
        assert asked.answers is not None
        return asked.answers

    def _lead(self, asked: _Asked) -> None:
        """Deliver `asked` and the jobs waiting behind it as one batch, then hand over to the next in line."""
        try:
            if self._linger and len(asked.notification_ids) < self._batch:
                time.sleep(self._linger)
            with self._lock:
                batch, size = [asked], len(asked.notification_ids)
                while self._waiting and size + len(self._waiting[0].notification_ids) <= self._batch:
                    batch.append(self._waiting.popleft())
                    size += len(batch[-1].notification_ids)
            try:
                answers = iter(self._deliver([i for item in batch for i in item.notification_ids]))
                for item in batch:
                    item.answers = [next(answers) for _ in item.notification_ids]
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

    send_notifications: Any
    send_notification: Any
    """The one-notification send of earlier releases: its messages still in a queue are delivered."""
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
        """Send messages of up to BATCH notifications each, queued together; raises if the broker cannot take them."""
        backoff = {"min_backoff": self.min_backoff_ms, "max_backoff": self.max_backoff_ms}
        ids = list(notification_ids)
        messages = [
            self.send_notifications.message_with_options(args=(ids[start : start + BATCH],), **backoff)
            for start in range(0, len(ids), BATCH)
        ]
        enqueue_many(self.send_notifications.broker, messages)
        return len(ids)

    def close(self) -> None:
        self.mailer.close()


def declare(broker: dramatiq.Broker, context: Callable[[], WorkerContext]) -> MailActors:
    slot = MailerSlot(lambda: context().postman())
    broker.add_middleware(CloseMailer(slot))
    declared: list[MailActors] = []

    grouped = Grouped(lambda ids: slot.get().deliver(ids))

    def send_notifications(notification_ids: list[str]) -> None:
        """Deliver these; if any is not sent yet, the whole message is retried: those already sent,
        refused or found obsolete answer "done" at once the next time, and are never sent again."""
        waiting: list[str] = []
        for notification_id, delivery in zip(notification_ids, grouped(notification_ids), strict=True):
            log.info("notification %s: %s %s", notification_id, delivery.outcome, delivery.detail)
            if delivery.outcome in (Outcome.DEFERRED, Outcome.BUSY):
                waiting.append(notification_id)
        if waiting:
            raise NotSentYet(f"notifications {_listed(waiting)} not sent yet")

    def send_notification(notification_id: str) -> None:
        send_notifications([notification_id])

    previous: list[datetime] = []  # the instant of this process's last pass that recorded (one at a time)

    def one_pass() -> None:
        runtime = context().runtime
        now = runtime.clock.now()
        lookback = now - kick_window_start(now, previous[0] if previous else None)
        recorded = runtime.transaction(
            lambda session: record_due_notifications(
                session, now, runtime.calendar, runtime.policy, schedule=False, lookback=lookback
            )
        )
        previous[:] = [now]
        lost = runtime.read(lambda session: notifications_to_send(session, now))
        declared[0].queue(list(dict.fromkeys(recorded.pending + lost)))

    sending: dict[str, Any] = {
        "queue_name": QUEUE,
        "priority": PRIORITY[QUEUE],
        "broker": broker,
        "max_retries": SEND_RETRIES,
        "min_backoff": MIN_BACKOFF_MS,
        "max_backoff": MAX_BACKOFF_MS,
        "time_limit": 180_000,
    }
    actors = MailActors(
        send_notifications=dramatiq.actor(actor_name="send_notifications", **sending)(send_notifications),
        send_notification=dramatiq.actor(actor_name="send_notification", **sending)(send_notification),
        deliver_pending=dramatiq.actor(
            actor_name="deliver_pending_notifications",
            queue_name=QUEUE,
            priority=PRIORITY[QUEUE],
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
