"""Processing a stored webhook event: normalise it, apply it to the books, record the outcome. Idempotent."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from billing.charging.leases import card_charges_in_flight
from billing.gateway_events import AppliedEvent, UnknownCharge, apply_gateway_event
from billing.journal import WebhookEvent
from billing.models import EventStatus, Payment, PaymentStatus
from billing.ports import Books
from billing.settlement import PaymentNotYetKnown
from billing.states import Applied
from webhooks.base import NothingToApply, Provider, ToldPaid

log = logging.getLogger("regua.workers")

REQUEUE_AFTER = timedelta(minutes=5)
MAX_ATTEMPTS = 25
DONE = (EventStatus.PROCESSED, EventStatus.IGNORED, EventStatus.UNMATCHED)


def process_event(runtime: Books, providers: Mapping[str, Provider], event_id: str) -> str:
    """Apply one stored event once, however often it is delivered or queued; returns its outcome.

    Normalising may call the gateway (Asaas is re-fetched), so it happens before the transaction;
    the transaction then takes the event's row lock and re-checks that nobody applied it meanwhile.
    """
    event = runtime.read(lambda session: session.get(WebhookEvent, event_id))
    if event is None:
        return "missing"
    if event.status in DONE:
        return "already_done"
    provider = providers[event.provider]
    try:
        gateway_events = provider.normalize(event.event_type, event.body, event.received_at)
    except NothingToApply as reason:
        why = str(reason)
        return runtime.transaction(lambda session: _finish(session, event_id, EventStatus.PROCESSED, why))
    except Exception as error:  # the gateway's API down, most likely: retried by the job, then by tick
        _record_failure(runtime, event_id, f"{type(error).__name__}: {error}")
        raise

    def apply(session: Session) -> str:
        locked = session.scalar(select(WebhookEvent).where(WebhookEvent.id == event_id).with_for_update())
        if locked is None or locked.status in DONE:
            return "already_done"
        now = runtime.clock.now()
        results: list[AppliedEvent] = []
        try:
            for gateway_event in gateway_events:
                results.append(apply_gateway_event(session, gateway_event, now, runtime.policy))
        except UnknownCharge as unknown:
            session.rollback()
            return _finish(session, event_id, EventStatus.UNMATCHED, str(unknown)[:200])
        outcome = ",".join(result.outcome for result in results) or "no_action"
        locked.charge_id = results[0].charge_id if results else None
        locked.status, locked.processed_at = EventStatus.PROCESSED.value, now
        locked.outcome, locked.attempts = outcome[:200], locked.attempts + 1
        return outcome

    try:
        return runtime.transaction(apply)
    except PaymentNotYetKnown as waiting:
        _record_failure(runtime, event_id, f"waiting: {waiting}")
        raise
    except Exception as error:
        _record_failure(runtime, event_id, f"{type(error).__name__}: {error}")
        raise


@dataclass
class Told:
    """What `settle_told_payments` left: the events to process, and those whose charge a job is charging now."""

    left: list[str]
    charging: list[str]


def settle_told_payments(
    runtime: Books, providers: Mapping[str, Provider], event_ids: Sequence[str], *, wait_for_charges: bool = False
) -> Told:
    """Mark done, in one transaction, the events that only say a payment was made which the books already hold
    as confirmed (the gateway's echo of a charge regua settled from its answer); the ids left to process.

    They end `already_recorded`, as `process_event` would end them, without normalizing each one (which, for
    Asaas, fetches the payment again) nor a transaction of its own. With `wait_for_charges`, an echo that
    outran the job charging its card (the charge still pending under a live lease: the job will record the
    answer itself) is set apart in `charging`, to be looked at again shortly rather than settled twice over.
    """

    def work(session: Session) -> Told:
        events = list(
            session.scalars(
                select(WebhookEvent)
                .where(WebhookEvent.id.in_(event_ids), WebhookEvent.status.notin_(DONE))
                .order_by(WebhookEvent.id)
                .with_for_update()
            )
        )
        told: dict[str, ToldPaid] = {}
        for event in events:
            provider = providers.get(event.provider)
            payment = provider.told_paid(event.event_type, event.body) if provider is not None else None
            if payment is not None:
                told[event.id] = payment
        held: dict[tuple[str, str], str] = {}
        for gateway in {payment.gateway for payment in told.values()}:
            payment_ids = sorted({payment.payment_id for payment in told.values() if payment.gateway == gateway})
            held |= {
                (gateway, str(payment_id)): str(charge_id)
                for payment_id, charge_id in session.execute(
                    select(Payment.gateway_payment_id, Payment.charge_id).where(
                        Payment.gateway == gateway,
                        Payment.gateway_payment_id.in_(payment_ids),
                        Payment.status == PaymentStatus.CONFIRMED,
                    )
                )
            }
        now = runtime.clock.now()
        done = set()
        for event in events:
            payment = told.get(event.id)
            charge_id = held.get((payment.gateway, payment.payment_id)) if payment is not None else None
            if charge_id is not None:
                event.status, event.processed_at, event.charge_id = EventStatus.PROCESSED.value, now, charge_id
                event.outcome, event.attempts = Applied.ALREADY_RECORDED.value, event.attempts + 1
                done.add(event.id)
        waiting = {
            event_id: payment.charge_ref
            for event_id, payment in told.items()
            if event_id not in done and payment.charge_ref is not None
        }
        charging = (
            card_charges_in_flight(session, set(waiting.values()), now) if wait_for_charges and waiting else set()
        )
        set_apart = {event_id for event_id, charge_ref in waiting.items() if charge_ref in charging}
        return Told(
            [event_id for event_id in event_ids if event_id not in done and event_id not in set_apart],
            [event_id for event_id in event_ids if event_id in set_apart],
        )

    return runtime.transaction(work)


def _finish(session: Session, event_id: str, status: EventStatus, outcome: str) -> str:
    event = session.scalar(select(WebhookEvent).where(WebhookEvent.id == event_id).with_for_update())
    if event is None or event.status in DONE:
        return "already_done"
    event.status, event.outcome, event.attempts = status.value, outcome[:200], event.attempts + 1
    return status.value


def _record_failure(runtime: Books, event_id: str, reason: str) -> None:
    def work(session: Session) -> None:
        session.execute(
            update(WebhookEvent)
            .where(
                WebhookEvent.id == event_id,
                WebhookEvent.status.in_((EventStatus.RECEIVED, EventStatus.FAILED)),
            )
            .values(status=EventStatus.FAILED.value, outcome=reason[:200], attempts=WebhookEvent.attempts + 1)
        )

    try:
        runtime.transaction(work)
    except Exception:
        log.exception("could not record the failure of event %s", event_id)


def events_to_requeue(session: Session, runtime: Books) -> list[str]:
    """Events still unprocessed 5 minutes after they arrived (a broker outage, a dead worker)."""
    cutoff = runtime.clock.now() - REQUEUE_AFTER
    return list(
        session.scalars(
            select(WebhookEvent.id)
            .where(
                or_(
                    WebhookEvent.status == EventStatus.RECEIVED,
                    (WebhookEvent.status == EventStatus.FAILED) & (WebhookEvent.attempts < MAX_ATTEMPTS),
                ),
                WebhookEvent.received_at <= cutoff,
            )
            .order_by(WebhookEvent.received_at)
            .limit(10_000)
        )
    )


def replay_events(session: Session, event_ids: list[str]) -> list[str]:
    """Put unmatched or failed events back in line (ops, after creating the missing charge)."""
    replayable = (EventStatus.UNMATCHED, EventStatus.FAILED)
    ids = list(
        session.scalars(
            select(WebhookEvent.id).where(WebhookEvent.id.in_(event_ids), WebhookEvent.status.in_(replayable))
        )
    )
    if ids:
        session.execute(
            update(WebhookEvent).where(WebhookEvent.id.in_(ids)).values(status=EventStatus.RECEIVED.value, outcome=None)
        )
    return ids


def event_statuses(session: Session, event_ids: list[str]) -> dict[str, str]:
    """The status of each stored event among `event_ids`; an id that is not stored is absent."""
    rows = session.execute(select(WebhookEvent.id, WebhookEvent.status).where(WebhookEvent.id.in_(event_ids)))
    return {str(event_id): str(status) for event_id, status in rows}
