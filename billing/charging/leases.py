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
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from billing.models import AttemptOutcome, Charge, ChargeAttempt, DeclineClass
from billing.settlement import lock_charge

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


def was_sent(charge: Charge) -> bool:
    """Whether the gateway may hold a payment for this charge."""
    return charge.gateway_payment_id is not None or charge.sent_at is not None


def take_lease(session: Session, charge: Charge, now: datetime, *, card_ref: str | None = None) -> ChargeAttempt:
    """Lease the charge for one call to the gateway and open its attempt row."""
    charge.sent_at = charge.sent_at or now
    charge.lease_until = now + LEASE
    charge.lease_holder = holder()
    if card_ref is not None:
        charge.card_ref = card_ref
    number = (
        session.scalar(select(func.max(ChargeAttempt.number)).where(ChargeAttempt.charge_id == charge.id)) or 0
    ) + 1
    attempt = ChargeAttempt(
        charge_id=charge.id,
        number=number,
        idempotency_key=f"{charge.idempotency_key}#{number}",
        started_at=now,
        holder=charge.lease_holder,
        card_ref=card_ref or charge.card_ref,
        outcome=AttemptOutcome.IN_FLIGHT.value,
    )
    session.add(attempt)
    session.flush()
    return attempt


def finish_attempt(
    session: Session, charge: Charge, outcome: AttemptOutcome, now: datetime, decline: Decline | None = None
) -> None:
    """Close the charge's open attempt (if any) with its outcome, and drop the lease."""
    charge.lease_until = None
    charge.lease_holder = None
    attempt = session.scalar(
        select(ChargeAttempt)
        .where(ChargeAttempt.charge_id == charge.id, ChargeAttempt.outcome == AttemptOutcome.IN_FLIGHT)
        .order_by(ChargeAttempt.number.desc())
        .limit(1)
    )
    if attempt is None:
        return
    attempt.outcome, attempt.finished_at = outcome.value, now
    if decline is not None:
        attempt.decline_code = decline.reason[:100]
        attempt.decline_class = decline.decline_class.value
        attempt.message = decline.message[:300]


def release_lease(session: Session, charge_id: str, now: datetime) -> None:
    """No trustworthy answer came back: the attempt is left unclear and the charge free for a retry."""
    finish_attempt(session, lock_charge(session, charge_id), AttemptOutcome.UNAVAILABLE, now)
