"""What gateways tell regua, in regua's own terms, and the one table that applies each kind."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from billing.models import TAKEN_BACK, Charge, charge_id_from_reference
from billing.policy import Policy
from billing.refund_progress import GatewayRefundState, refunds_changed
from billing.refunds import record_chargeback, record_refund
from billing.reversals import receive_again, restore_charge, reverse_chargeback, undo_cash_receipt
from billing.settlement import ConfirmedPayment, find_payment, record_failure, record_gateway_cancel, settle_charge
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
    amount_cents: int | None = None
    """What the disputed gateway payment was worth (an installment's own value); None: the whole payment."""
    installment: int = 0
    """Which installment of a card plan was disputed (0: not a plan)."""


@dataclass(frozen=True)
class ChargebackReversed(GatewayEvent):
    """The merchant won the dispute: the money a chargeback took back comes back."""


@dataclass(frozen=True)
class PaymentUndone(GatewayEvent):
    """A cash receipt the merchant recorded at the gateway was undone: that money never came."""


@dataclass(frozen=True)
class PaymentCanceled(GatewayEvent):
    pass


@dataclass(frozen=True)
class PaymentRestored(GatewayEvent):
    """A payment deleted at the gateway was restored: it can be paid again."""


@dataclass(frozen=True)
class RefundsChanged(GatewayEvent):
    """The gateway's refunds of a payment that are not done: in progress, or denied (CANCELLED)."""

    refunds: tuple[GatewayRefundState, ...]


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
    known = find_payment(session, event.gateway, event.payment_id)
    if known is not None and known.status in TAKEN_BACK:
        outcome = receive_again(session, charge_id, event.gateway, event.payment_id, event.paid_at, now)
        return AppliedEvent(charge_id, outcome, {"payment_id": known.id})
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
    amount = event.amount_cents if event.installment else None  # a plan's installment takes back its own value
    outcome = record_chargeback(session, charge_id, event.gateway, event.payment_id, now, amount_cents=amount)
    return AppliedEvent(charge_id, outcome, {})


def _reversed(session: Session, charge_id: str, event: Any, now: datetime, _policy: Policy) -> AppliedEvent:
    return AppliedEvent(charge_id, reverse_chargeback(session, charge_id, event.gateway, event.payment_id, now), {})


def _undone(session: Session, charge_id: str, event: Any, now: datetime, _policy: Policy) -> AppliedEvent:
    return AppliedEvent(charge_id, undo_cash_receipt(session, charge_id, event.gateway, event.payment_id, now), {})


def _canceled(session: Session, charge_id: str, _event: Any, _now: datetime, _policy: Policy) -> AppliedEvent:
    return AppliedEvent(charge_id, record_gateway_cancel(session, charge_id), {})


def _restored(session: Session, charge_id: str, _event: Any, _now: datetime, _policy: Policy) -> AppliedEvent:
    return AppliedEvent(charge_id, restore_charge(session, charge_id), {})


def _refunds_changed(session: Session, charge_id: str, event: Any, now: datetime, _policy: Policy) -> AppliedEvent:
    outcome = refunds_changed(session, charge_id, event.gateway, event.payment_id, event.refunds, now)
    return AppliedEvent(charge_id, outcome, {})


Handler = Callable[[Session, str, Any, datetime, Policy], AppliedEvent]

HANDLERS: dict[type[GatewayEvent], Handler] = {
    PaymentConfirmed: _confirmed,
    PaymentPending: _pending,
    PaymentFailed: _failed,
    PaymentRefunded: _refunded,
    PaymentChargeback: _chargeback,
    ChargebackReversed: _reversed,
    PaymentUndone: _undone,
    PaymentCanceled: _canceled,
    PaymentRestored: _restored,
    RefundsChanged: _refunds_changed,
}
assert set(HANDLERS) == set(GatewayEvent.__subclasses__()), "every gateway event kind needs a handler"


def apply_gateway_event(session: Session, event: GatewayEvent, now: datetime, policy: Policy) -> AppliedEvent:
    """Apply one event in the caller's transaction; raises UnknownCharge for a charge regua never made."""
    charge_id = find_charge(session, event)
    return HANDLERS[type(event)](session, charge_id, event, now, policy)
