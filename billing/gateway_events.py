"""What gateways tell regua, in regua's own terms, and the one table that applies each kind."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from billing.models import Charge, charge_id_from_reference
from billing.policy import Policy
from billing.refunds import record_chargeback, record_refund
from billing.settlement import ConfirmedPayment, record_failure, record_gateway_cancel, settle_charge
from billing.states import Applied
from billing.verification import mark_charge_verifying


@dataclass(frozen=True)
class GatewayEvent:
    """Common to every event: which gateway, which of our charges (if it says), which of its payments."""

    gateway: str
    charge_ref: str | None
    payment_id: str


@dataclass(frozen=True)
class PaymentConfirmed(GatewayEvent):
    amount_cents: int
    method: str
    paid_at: datetime
    whole_charge: bool = False
    """The first installment of a card plan: the gateway holds the whole amount, paid in parts."""


@dataclass(frozen=True)
class PaymentPending(GatewayEvent):
    pass


@dataclass(frozen=True)
class PaymentFailed(GatewayEvent):
    failure_code: str | None


@dataclass(frozen=True)
class PaymentRefunded(GatewayEvent):
    refund_id: str
    amount_cents: int
    refunded_at: datetime
    whole: bool = False
    """All that was left of the payment went back (the amount is then taken from the books)."""


@dataclass(frozen=True)
class PaymentChargeback(GatewayEvent):
    pass


@dataclass(frozen=True)
class PaymentCanceled(GatewayEvent):
    pass


class UnknownCharge(Exception):
    """A valid event for a charge regua does not know: parked as unmatched, replayable."""


@dataclass(frozen=True)
class AppliedEvent:
    charge_id: str
    outcome: Applied
    details: dict[str, Any]


def find_charge(session: Session, event: GatewayEvent) -> str:
    """Our charge: by the reference we sent (externalReference, txid), else by the gateway's payment id."""
    if event.charge_ref:
        charge_id = charge_id_from_reference(event.charge_ref)
        if session.get(Charge, charge_id) is not None:
            return charge_id
    found = session.scalar(
        select(Charge.id).where(Charge.gateway == event.gateway, Charge.gateway_payment_id == event.payment_id)
    )
    if found is None:
        raise UnknownCharge(f"no charge for reference {event.charge_ref!r} / payment {event.payment_id!r}")
    return found


def _confirmed(session: Session, charge_id: str, event: Any, now: datetime, _policy: Policy) -> AppliedEvent:
    amount = event.amount_cents
    if event.whole_charge:
        charge = session.get(Charge, charge_id)
        assert charge is not None
        amount = charge.amount_cents
    payment = ConfirmedPayment(event.gateway, event.payment_id, amount, event.method, event.paid_at)
    settlement = settle_charge(session, charge_id, payment, now)
    if settlement.already_recorded:
        return AppliedEvent(charge_id, Applied.ALREADY_RECORDED, {"payment_id": settlement.payment_id})
    return AppliedEvent(
        charge_id,
        Applied.SETTLED if settlement.invoices_paid else Applied.DUPLICATE_PAYMENT,
        {
            "payment_id": settlement.payment_id,
            "invoices_paid": settlement.invoices_paid,
            "refunds_owed": settlement.refunds_owed,
            "charges_canceled": settlement.charges_canceled,
            "blocks_lifted": [block.id for block in settlement.blocks.lifted],
        },
    )


def _pending(session: Session, charge_id: str, _event: Any, now: datetime, policy: Policy) -> AppliedEvent:
    changes = mark_charge_verifying(session, charge_id, now, policy)
    return AppliedEvent(charge_id, Applied.VERIFYING, {"blocks_lifted": [block.id for block in changes.lifted]})


def _failed(session: Session, charge_id: str, event: Any, now: datetime, _policy: Policy) -> AppliedEvent:
    return AppliedEvent(charge_id, record_failure(session, charge_id, event.failure_code, now), {})


def _refunded(session: Session, charge_id: str, event: Any, now: datetime, _policy: Policy) -> AppliedEvent:
    outcome = record_refund(
        session,
        charge_id,
        event.gateway,
        event.payment_id,
        event.refund_id,
        event.amount_cents,
        event.refunded_at,
        now,
        whole=event.whole,
    )
    return AppliedEvent(charge_id, outcome, {})


def _chargeback(session: Session, charge_id: str, event: Any, now: datetime, _policy: Policy) -> AppliedEvent:
    return AppliedEvent(charge_id, record_chargeback(session, charge_id, event.gateway, event.payment_id, now), {})


def _canceled(session: Session, charge_id: str, _event: Any, _now: datetime, _policy: Policy) -> AppliedEvent:
    return AppliedEvent(charge_id, record_gateway_cancel(session, charge_id), {})


Handler = Callable[[Session, str, Any, datetime, Policy], AppliedEvent]

HANDLERS: dict[type[GatewayEvent], Handler] = {
    PaymentConfirmed: _confirmed,
    PaymentPending: _pending,
    PaymentFailed: _failed,
    PaymentRefunded: _refunded,
    PaymentChargeback: _chargeback,
    PaymentCanceled: _canceled,
}
assert set(HANDLERS) == set(GatewayEvent.__subclasses__()), "every gateway event kind needs a handler"


def apply_gateway_event(session: Session, event: GatewayEvent, now: datetime, policy: Policy) -> AppliedEvent:
    """Apply one event in the caller's transaction; raises UnknownCharge for a charge regua never made."""
    charge_id = find_charge(session, event)
    return HANDLERS[type(event)](session, charge_id, event, now, policy)
