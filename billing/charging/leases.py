"""Who may talk to the gateway about a charge, and the record of each time somebody did (an attempt row).

Calls to the gateway happen outside any transaction, between a claim and a record:

    claim      lock the charge; still pending, not leased? take a short lease and open an attempt row
    gateway    charge_card / create_manual_charge / get_payment (the port; Asaas looks a charge up by
               our id before creating it, so a retry never charges twice)
    record     lock again; settle, fail or wait, close the attempt and drop the lease
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from billing.models import AttemptOutcome, Charge, ChargeAttempt, ChargeStatus, DeclineClass
from billing.settlement import lock_charge
from billing.states import PaymentMethod

LEASE = timedelta(minutes=4)
"""Longer than one `charge_card` call with the client's own retries (3 x 20 s, plus lookups)."""


class ChargeInFlight(Exception):
    """Another worker holds this charge's lease (it is talking to the gateway): try again later."""


@dataclass(frozen=True)
class Decline:
    hard: bool
    reason: str
    message: str

    @property
    def decline_class(self) -> DeclineClass:
        return DeclineClass.HARD if self.hard else DeclineClass.SOFT


def holder() -> str:
    """This thread of this process on this host: who holds a lease."""
    return f"{socket.gethostname()}/{os.getpid()}/{threading.get_ident()}"[:64]


def leased(charge: Charge, now: datetime) -> bool:
    return charge.lease_until is not None and charge.lease_until > now


def card_charges_in_flight(session: Session, charge_ids: Collection[str], now: datetime) -> set[str]:
    """The card charges among these that a job is charging now (pending, leased): it will record the answer.

    Only a card charge's job records the gateway's answer as a payment; a PIX or boleto charge under a lease
    is having its codes asked for, and its payment is a webhook's to settle."""
    return set(
        session.scalars(
            select(Charge.id).where(
                Charge.id.in_(sorted(charge_ids)),
                Charge.method == PaymentMethod.CARD,
                Charge.status == ChargeStatus.PENDING,
                Charge.lease_until > now,
            )
        )
    )


def was_sent(charge: Charge) -> bool:
    """Whether the gateway may hold a payment for this charge."""
    return charge.gateway_payment_id is not None or charge.sent_at is not None


def attempt_numbers(session: Session, charge_ids: Sequence[str]) -> dict[str, int]:
    """The number of each charge's latest attempt (absent: none yet), in one read."""
    if not charge_ids:
        return {}
    rows = session.execute(
        select(ChargeAttempt.charge_id, func.max(ChargeAttempt.number))
        .where(ChargeAttempt.charge_id.in_(charge_ids))
        .group_by(ChargeAttempt.charge_id)
    )
    return {str(charge_id): int(number) for charge_id, number in rows}


def take_lease(
    session: Session, charge: Charge, now: datetime, *, card_ref: str | None = None, last_attempt: int | None = None
) -> ChargeAttempt:
    """Lease the charge for one call to the gateway and open its attempt row (written with the transaction).

    `last_attempt` is the number of the charge's latest attempt when the caller read it with others'
    (`attempt_numbers`); otherwise it is read here.
    """
    charge.sent_at = charge.sent_at or now
    charge.lease_until = now + LEASE
    charge.lease_holder = holder()
    if card_ref is not None:
        charge.card_ref = card_ref
    if last_attempt is None:
        last_attempt = attempt_numbers(session, [charge.id]).get(charge.id, 0)
    attempt = ChargeAttempt(
        charge_id=charge.id,
        number=last_attempt + 1,
        idempotency_key=f"{charge.idempotency_key}#{last_attempt + 1}",
        started_at=now,
        holder=charge.lease_holder,
        card_ref=card_ref or charge.card_ref,
        outcome=AttemptOutcome.IN_FLIGHT.value,
    )
    session.add(attempt)
    return attempt


def finish_attempts(
    session: Session,
    charges: Sequence[Charge],
    outcome: AttemptOutcome,
    now: datetime,
    declines: Mapping[str, Decline] | None = None,
) -> None:
    """Close each charge's open attempt (if any) with the outcome, and drop the leases: one read for them all."""
    if not charges:
        return
    open_attempts: dict[str, ChargeAttempt] = {}
    for attempt in session.scalars(
        select(ChargeAttempt)
        .where(
            ChargeAttempt.charge_id.in_([charge.id for charge in charges]),
            ChargeAttempt.outcome == AttemptOutcome.IN_FLIGHT,
        )
        .order_by(ChargeAttempt.number)
    ):
        open_attempts[attempt.charge_id] = attempt  # the latest open one
    for charge in charges:
        charge.lease_until = None
        charge.lease_holder = None
        latest = open_attempts.get(charge.id)
        if latest is None:
            continue
        latest.outcome, latest.finished_at = outcome.value, now
        decline = (declines or {}).get(charge.id)
        if decline is not None:
            latest.decline_code = decline.reason[:100]
            latest.decline_class = decline.decline_class.value
            latest.message = decline.message[:300]


def finish_attempt(
    session: Session, charge: Charge, outcome: AttemptOutcome, now: datetime, decline: Decline | None = None
) -> None:
    """Close the charge's open attempt (if any) with its outcome, and drop the lease."""
    finish_attempts(session, [charge], outcome, now, {charge.id: decline} if decline is not None else None)


def give_back(session: Session, charges: Sequence[Charge], first_contacts: Collection[str]) -> None:
    """Claims never sent (their batch stopped before them): the leases dropped and the attempt rows opened
    for them removed, and a charge claimed for the first time is again one never sent (nothing reached the
    gateway, so the next job may create it without looking it up first)."""
    if not charges:
        return
    session.execute(
        delete(ChargeAttempt).where(
            ChargeAttempt.charge_id.in_([charge.id for charge in charges]),
            ChargeAttempt.outcome == AttemptOutcome.IN_FLIGHT,
        )
    )
    for charge in charges:
        charge.lease_until = charge.lease_holder = None
        if charge.id in first_contacts:
            charge.sent_at = None


def release_lease(session: Session, charge_id: str, now: datetime) -> None:
    """No trustworthy answer came back: the attempt is left unclear and the charge free for a retry."""
    finish_attempt(session, lock_charge(session, charge_id), AttemptOutcome.UNAVAILABLE, now)
