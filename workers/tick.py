"""The reconciliation pass as the service runs it: the billing pass, then its follow-ups handed to the queues.

Without a broker this process can reach (`regua tick` on the embedded default), the follow-ups are
done right here instead: stale webhook events processed, charges made, emails sent.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime

from sqlalchemy.orm import Session

from billing.charging import (
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
from billing.notifications import record_due_notifications
from billing.outbox import REQUEUE_AFTER, Outcome, defer_notifications, notifications_to_send
from billing.ports import Books, Gateway, GatewayError
from billing.tick import TickReport, record_tick, run_tick
from workers.actors import Jobs
from workers.context import WorkerContext
from workers.mailing import BATCH
from workers.processing import events_to_requeue, process_event

log = logging.getLogger("regua.tick")


def tick(context: WorkerContext, jobs: Jobs | None, now: datetime | None = None) -> TickReport:
    """One pass at `now` (the clock's by default): the billing pass, then what only the service can do."""
    runtime = context.runtime
    report = run_tick(runtime, now or runtime.clock.now())
    stale = runtime.read(lambda session: events_to_requeue(session, runtime))
    if stale and jobs is not None:
        try:
            jobs.enqueue_events(stale)
        except Exception as error:
            log.warning("re-queueing %d webhook events failed: %s", len(stale), error)
            stale = []
    elif stale:
        for event_id in stale:
            try:
                process_event(runtime, context.providers, event_id)
            except Exception as error:
                log.warning("webhook event %s failed again: %s", event_id, error)
    report.counts["webhooks_requeued"] = len(stale)
    charging_step(jobs, context, report)
    mailing_step(jobs, context, report)
    record_tick(runtime, report)
    return report


def charging_step(jobs: Jobs | None, context: WorkerContext, report: TickReport) -> None:
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


def mailing_step(jobs: Jobs | None, context: WorkerContext, report: TickReport) -> None:
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
    report.counts.update(send_here(context, list(dict.fromkeys(retry + recorded.pending)), now))


def send_here(context: WorkerContext, notification_ids: Sequence[str], now: datetime | None = None) -> Counter[str]:
    """Send in this process, a batch at a time; stops at the first sign that the server is unreachable."""
    counts: Counter[str] = Counter({f"emails_{name}": 0 for name in ("sent", "failed", "obsolete", "deferred")})
    if not notification_ids:
        return counts
    runtime = context.runtime
    try:
        mailer = context.postman()
    except ValueError as error:
        log.error("no email sent: %s", error)
        counts["emails_deferred"] = len(notification_ids)
        return counts
    try:
        for offset in range(0, len(notification_ids), BATCH):
            batch = notification_ids[offset : offset + BATCH]
            try:
                deliveries = mailer.deliver(batch, now=now)
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
    finally:
        mailer.close()
    return counts
