"""Refunds at the simulated Asaas: asked for PENDING, DONE a moment later, or denied (CANCELLED).

`POST /v3/payments/{id}/refund` answers the payment with the new refund PENDING. A refund of all
that is left moves the payment to REFUND_REQUESTED (money already credited) or REFUND_IN_PROGRESS (a
card payment not yet credited, which Asaas announces with PAYMENT_REFUND_IN_PROGRESS: "the refund
waits for the settlement"). After `refund_delay_s` of wall-clock time the refund is DONE: the
payment is REFUNDED with PAYMENT_REFUNDED once its refunds cover it, PAYMENT_PARTIALLY_REFUNDED
otherwise. A delay of 0 makes it DONE within the request (the switch for tests that need it). The
`refund-denied` control cancels the newest PENDING refund: PAYMENT_REFUND_DENIED, and the payment is
back where it was.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from regua.sandbox.simulator.common import SimulatorError, positive_cents
from regua.sandbox.simulator.payments import Ledger, Payment, Refund

DEFAULT_REFUND_DELAY_S = 0.2
REFUNDABLE = ("CONFIRMED", "RECEIVED")
REFUNDING = ("REFUND_REQUESTED", "REFUND_IN_PROGRESS")


def request(sim: Ledger, payment: Payment, body: Mapping[str, Any]) -> dict[str, object]:
    if payment.status not in REFUNDABLE:
        raise SimulatorError(400, "invalid_action", "Só é possível estornar cobranças pagas.")
    remaining = payment.value_cents - payment.refunded_cents
    value = body.get("value")
    amount = remaining if value is None else positive_cents(value, "value")
    if amount > remaining:
        raise SimulatorError(400, "invalid_value", "O valor do estorno excede o valor disponível.")
    description = body.get("description")
    refund = Refund(
        amount,
        sim.stamp(),
        description if isinstance(description, str) else None,
        settles_at=time.monotonic() + sim.refund_delay_s,
    )
    payment.refunds.append(refund)
    credited = payment.status == "RECEIVED"
    if amount == remaining:
        payment.status_before = payment.status
        payment.status = "REFUND_REQUESTED" if credited else "REFUND_IN_PROGRESS"
    if not credited:
        sim.emit("PAYMENT_REFUND_IN_PROGRESS", payment)
    sim.refunds_pending.add(payment.id)
    if sim.refund_delay_s <= 0:
        _settle(sim, payment, refund)
    return payment.to_json()


def settle_due(sim: Ledger, now: float) -> None:
    """Every PENDING refund whose delay has passed becomes DONE, oldest payment first."""
    for payment_id in sorted(sim.refunds_pending, key=lambda pid: sim.payments[pid].sequence):
        payment = sim.payments[payment_id]
        for refund in [r for r in payment.refunds if r.status == "PENDING" and r.settles_at <= now]:
            _settle(sim, payment, refund)


def deny(sim: Ledger, payment: Payment) -> None:
    pending = [refund for refund in payment.refunds if refund.status == "PENDING"]
    if not pending:
        raise SimulatorError(409, "invalid_action", f"Payment {payment.id} has no PENDING refund.")
    pending[-1].status = "CANCELLED"
    _forget_when_settled(sim, payment)
    if payment.status in REFUNDING and payment.status_before is not None:
        payment.status, payment.status_before = payment.status_before, None
        if payment.status == "CONFIRMED":
            sim.await_credit(payment)
    sim.emit("PAYMENT_REFUND_DENIED", payment)


def _settle(sim: Ledger, payment: Payment, refund: Refund) -> None:
    refund.status = "DONE"
    _forget_when_settled(sim, payment)
    done = sum(r.value_cents for r in payment.refunds if r.status == "DONE")
    if done >= payment.value_cents:
        payment.status, payment.status_before = "REFUNDED", None
        sim.emit("PAYMENT_REFUNDED", payment)
    else:
        sim.emit("PAYMENT_PARTIALLY_REFUNDED", payment)


def _forget_when_settled(sim: Ledger, payment: Payment) -> None:
    if not any(refund.status == "PENDING" for refund in payment.refunds):
        sim.refunds_pending.discard(payment.id)
