"""Refunds on their way back: each follows the gateway's own status until it is DONE, or is denied and left to a person.

A gateway takes a refund in steps (Asaas: PENDING, AWAITING_CRITICAL_ACTION_AUTHORIZATION,
AWAITING_CUSTOMER_EXTERNAL_AUTHORIZATION, then DONE or CANCELLED). Only DONE is money back. A refund
regua sent is `pending` from the gateway's first answer until then; a denied one is owed again and
waits for a person (it is never sent again by itself: the gateway said no once), and so does one
still not done after `STUCK_AFTER`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from billing.models import Refund, RefundStatus
from billing.refunds import STUCK_AFTER, plan_payment
from billing.settlement import lock_charge
from billing.states import Applied

DONE = "DONE"
DENIED = ("CANCELLED", "REFUSED", "DENIED")
"""The gateway's words for a refund it will not make."""


@dataclass(frozen=True)
class GatewayRefundState:
    """One refund as the gateway lists it on a payment."""

    key: str
    """Its place in the gateway's list of the payment's refunds (the key it is recorded under once DONE)."""
    amount_cents: int
    status: str
    """The gateway's own word: PENDING, AWAITING_CRITICAL_ACTION_AUTHORIZATION, DONE, CANCELLED..."""


def is_denied(status: str) -> bool:
    return status.upper() in DENIED


def follow(refund: Refund, gateway_status: str, now: datetime) -> Applied:
    """Record what the gateway says of a refund regua asked for and that is not done yet."""
    refund.gateway_status = gateway_status[:48]
    if is_denied(gateway_status):
        if refund.denied_at is None:
            refund.denied_at = now
        refund.status, refund.claimed_until = RefundStatus.OWED.value, None
        refund.gateway_note = f"denied by the gateway ({gateway_status})"[:200]
        return Applied.REFUND_DENIED
    refund.status = RefundStatus.PENDING.value
    refund.sent_at = refund.sent_at or now
    refund.gateway_note = f"the gateway is making it ({gateway_status})"[:200]
    return Applied.REFUND_PENDING


def refunds_changed(
    session: Session,
    charge_id: str,
    gateway: str,
    gateway_payment_id: str,
    listed: Sequence[GatewayRefundState],
    now: datetime,
) -> Applied:
    """The gateway's refunds of a payment that are not done (in progress or denied), matched to regua's own by
    amount. A refund made at the gateway by someone else is recorded only once it is DONE (by the refund path)."""
    charge = lock_charge(session, charge_id)
    payment = plan_payment(session, charge, gateway, gateway_payment_id)
    if payment is None:
        return Applied.IGNORED
    open_refunds = list(
        session.scalars(
            select(Refund)
            .where(Refund.payment_id == payment.id, Refund.status.in_((RefundStatus.OWED, RefundStatus.PENDING)))
            .order_by(Refund.created_at, Refund.id)
        )
    )
    outcomes: list[Applied] = []
    for state in listed:
        if state.status.upper() == DONE:
            continue
        match = next((refund for refund in open_refunds if refund.amount_cents == state.amount_cents), None)
        if match is None:
            continue
        open_refunds.remove(match)
        if match.denied_at is not None and not is_denied(state.status):
            continue  # an older denial listed again beside a new attempt: the person's decision stands
        outcomes.append(follow(match, state.status, now))
    if Applied.REFUND_DENIED in outcomes:
        return Applied.REFUND_DENIED
    return Applied.REFUND_PENDING if outcomes else Applied.IGNORED


def refunds_for_a_person(session: Session, now: datetime) -> list[Refund]:
    """Refunds a gateway denied, or accepted and has not finished for `STUCK_AFTER`: a person looks at them."""
    return list(
        session.scalars(
            select(Refund)
            .where(
                ((Refund.status == RefundStatus.OWED) & Refund.denied_at.is_not(None))
                | ((Refund.status == RefundStatus.PENDING) & (Refund.sent_at <= now - STUCK_AFTER))
            )
            .order_by(Refund.created_at, Refund.id)
        )
    )
