"""`regua trigger`: the webhooks a gateway would post about an account's charge, sent to a running regua.

Where the gateway simulator has a control for the event (paying, paying twice, refunding, a
chargeback and its dispute, cash, a payment deleted or restored, risk analysis, a refused card),
the simulator is asked and posts its own Asaas webhook; otherwise (a boleto or PIX failing, a
payment pending, a charge the simulator does not hold) a Standard Webhooks delivery is signed with
the configured secret and posted to `/webhooks/standard`. An Asaas event with no Standard Webhooks
equivalent is refused for such a charge, before anything is sent.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, case, select
from sqlalchemy.orm import Session

from billing.models import Account, Charge, ChargeStatus, Invoice, Subscription
from regua.gateway.asaas import money
from regua.runtime import Runtime
from regua.sandbox.trigger_wire import ChargeRef, TriggerError, Wire

__all__ = ["ASAAS_ONLY", "EVENTS", "Trigger", "TriggerError"]

EVENTS = (
    "payment",
    "duplicate",
    "refund",
    "partial-refund",
    "chargeback",
    "decline",
    "pending",
    "chargeback-won",
    "chargeback-lost",
    "cash",
    "cash-undone",
    "refund-denied",
    "deleted",
    "restored",
    "risk-review",
    "risk-refused",
)
ASAAS_ONLY = ("chargeback-won", "chargeback-lost", "cash", "cash-undone", "refund-denied", "deleted", "restored")
"""Asaas's payment lifecycle, which Standard Webhooks' five event types do not tell."""

_NEEDS_PAID = ("refund", "partial-refund", "chargeback")
_CHECKOUT_METHOD = {"boleto": "boleto", "pix": "pix", "card": "card", "card_auto_debit": "card"}
_ASAAS_TYPE = {"boleto": "BOLETO", "pix": "PIX"}
_UNPAID = ("PENDING", "OVERDUE")
_REFUNDABLE = ("CONFIRMED", "RECEIVED")
_PAID = (*_REFUNDABLE, "RECEIVED_IN_CASH")
_CHARGED_BACK = ("CHARGEBACK_REQUESTED", "CHARGEBACK_DISPUTE")
_REVIEWABLE = ("PENDING", "CONFIRMED")  # a card payment the simulator can hold for risk analysis
_RECENT_CHARGES = 20

Payment = dict[str, Any]


def _is_card(payment: Payment) -> bool:
    return bool(payment["billingType"] == "CREDIT_CARD")


def _refund_pending(payment: Payment) -> bool:
    return any(refund.get("status") == "PENDING" for refund in payment.get("refunds") or [])


def _open(payment: Payment) -> bool:
    return payment["status"] in _UNPAID and not payment.get("deleted")


@dataclass(frozen=True)
class _Lifecycle:
    """Which of the gateway's payments an event of Asaas's lifecycle is about, and how to get there."""

    about: Callable[[Payment], bool]
    charges: tuple[str, ...] | None = None  # regua's charge statuses to look at (None: any)
    opens: bool = False  # with none, a checkout opens the charge it is about
    first: str = ""  # with none, the trigger that makes one


_OPEN_CHARGE = (ChargeStatus.PENDING.value,)
_LIFECYCLE = {
    "chargeback-won": _Lifecycle(lambda p: p["status"] in _CHARGED_BACK, first="chargeback"),
    "chargeback-lost": _Lifecycle(lambda p: p["status"] in _CHARGED_BACK, first="chargeback"),
    "cash": _Lifecycle(_open, _OPEN_CHARGE, opens=True),
    "cash-undone": _Lifecycle(lambda p: p["status"] == "RECEIVED_IN_CASH", first="cash"),
    "refund-denied": _Lifecycle(lambda p: _refund_pending(p) or p["status"] in _REFUNDABLE, first="payment"),
    "deleted": _Lifecycle(_open, _OPEN_CHARGE, opens=True),
    "restored": _Lifecycle(lambda p: bool(p.get("deleted")), first="deleted"),
    "risk-review": _Lifecycle(lambda p: _is_card(p) and p["status"] in _REVIEWABLE, _OPEN_CHARGE, opens=True),
    "risk-refused": _Lifecycle(
        lambda p: _is_card(p) and p["status"] in (*_REVIEWABLE, "AWAITING_RISK_ANALYSIS"), _OPEN_CHARGE, opens=True
    ),
}


def _ref(charge: Charge) -> ChargeRef:
    return ChargeRef(
        charge.id, charge.product, charge.method, charge.amount_cents, charge.status, charge.gateway_payment_id
    )


def _newest_first(account_id: str, product: str | None, statuses: tuple[str, ...] | None) -> Select[Charge]:
    """The account's charges, newest first; first of all the one whose payment the gateway reported
    started (a decline after a `pending` is about that very payment, rule 3.7)."""
    query = select(Charge).where(Charge.account_id == account_id)
    if statuses is not None:
        query = query.where(Charge.status.in_(statuses))
    if product is not None:
        query = query.where(Charge.product == product)
    reported = select(Invoice.verifying_charge_id).where(
        Invoice.account_id == account_id, Invoice.verifying_charge_id.is_not(None)
    )
    first = case((Charge.id.in_(reported), 0), else_=1)
    return query.order_by(first, Charge.created_at.desc(), Charge.id.desc())


def _charge(session: Session, account_id: str, product: str | None, statuses: tuple[str, ...]) -> ChargeRef | None:
    charge = session.scalars(_newest_first(account_id, product, statuses)).first()
    return None if charge is None else _ref(charge)


def _charges(
    session: Session, account_id: str, product: str | None, statuses: tuple[str, ...] | None
) -> list[ChargeRef]:
    query = _newest_first(account_id, product, statuses).limit(_RECENT_CHARGES)
    return [_ref(charge) for charge in session.scalars(query)]


def _subscription(session: Session, account_id: str, product: str | None) -> tuple[str, str, str | None] | None:
    query = select(Subscription).where(Subscription.account_id == account_id)
    if product is not None:
        query = query.where(Subscription.product == product)
    subscription = session.scalars(query.order_by(Subscription.product)).first()
    if subscription is None:
        return None
    return subscription.product, subscription.payment_method, subscription.card_token


class Trigger:
    """Sends one event about an account's charge to the regua at `url` and prints what happened."""

    def __init__(self, runtime: Runtime, url: str, out: Callable[[str], None] = print) -> None:
        self.runtime = runtime
        self.out = out
        self.wire = Wire(runtime, url, out)

    def close(self) -> None:
        self.wire.close()

    def run(self, event: str, account_id: str, product: str | None) -> None:
        if event not in EVENTS:
            raise TriggerError(f"unknown event {event!r}: one of {', '.join(EVENTS)}")
        if self.runtime.read(lambda s: s.get(Account, account_id)) is None:
            raise TriggerError(f"no account {account_id}: nothing sent (the product creates it: PUT /api/accounts/ID)")
        self.wire.check_target()
        if event in _LIFECYCLE:
            self._lifecycle(event, account_id, product)
            return
        if event in _NEEDS_PAID:
            charge = self.runtime.read(lambda s: _charge(s, account_id, product, (ChargeStatus.CONFIRMED,)))
            if charge is None:
                raise TriggerError(f"account {account_id} has no paid charge: `regua trigger payment` first")
        else:
            # A duplicate may also follow a payment already made: the customer pays a second time.
            statuses = (
                (ChargeStatus.PENDING, ChargeStatus.CONFIRMED) if event == "duplicate" else (ChargeStatus.PENDING,)
            )
            found = self.runtime.read(lambda s: _charge(s, account_id, product, statuses))
            if found is None and event == "decline" and self._pays_by_card(account_id, product):
                # A card is declined while it is charged: the checkout's own answer is the decline.
                self._checkout(account_id, product, card_token="tok_soft_decline")
                return
            charge = found or self._checkout(account_id, product)
            if found is None and event == "payment" and charge.status == ChargeStatus.CONFIRMED:
                self.out(f"charge {charge.id}: the card was charged at the checkout; the simulator posts its webhook")
                return
        self._about(charge)
        payment = self._simulated_payment(charge)
        getattr(self, "_" + event.replace("-", "_"))(charge, payment)

    # -- the events of every gateway

    def _payment(self, charge: ChargeRef, payment: Payment | None) -> None:
        if payment is None:
            self.wire.standard("payment.confirmed", charge)
        elif _is_card(payment) and payment["status"] == "AWAITING_RISK_ANALYSIS":
            self.wire.control(f"/sim/payments/{payment['id']}/risk-approved")
        elif _is_card(payment) and payment["status"] == "CONFIRMED":
            self.wire.control(f"/sim/payments/{payment['id']}/event", {"event": "PAYMENT_CONFIRMED"})
        else:
            self.wire.control(f"/sim/payments/{payment['id']}/pay", {"billingType": _ASAAS_TYPE.get(charge.method)})

    def _duplicate(self, charge: ChargeRef, payment: Payment | None) -> None:
        if payment is None:
            self.wire.standard("payment.confirmed", charge)
            self.wire.standard("payment.confirmed", charge)
            return
        if payment["status"] in _UNPAID:
            self._payment(charge, payment)
        self.wire.control(f"/sim/payments/{payment['id']}/pay-again")

    def _refund(self, charge: ChargeRef, payment: Payment | None) -> None:
        if payment is None:
            self.wire.standard("payment.refunded", charge, refund_id=f"re_{uuid.uuid4().hex[:16]}")
        else:
            self.wire.control(f"/v3/payments/{payment['id']}/refund", via_api=True)

    def _partial_refund(self, charge: ChargeRef, payment: Payment | None) -> None:
        half = max(1, charge.amount_cents // 2)
        if payment is None:
            self.wire.standard("payment.refunded", charge, amount_cents=half, refund_id=f"re_{uuid.uuid4().hex[:16]}")
        else:
            body = {"value": money(half), "description": "regua trigger partial-refund"}
            self.wire.control(f"/v3/payments/{payment['id']}/refund", body, via_api=True)

    def _chargeback(self, charge: ChargeRef, payment: Payment | None) -> None:
        if payment is None:
            self.wire.standard("payment.chargeback", charge)
        else:
            self.wire.control(f"/sim/payments/{payment['id']}/chargeback")

    def _decline(self, charge: ChargeRef, payment: Payment | None) -> None:
        if payment is not None and _is_card(payment) and payment["status"] == "PENDING":
            self.wire.control(f"/sim/payments/{payment['id']}/refuse")
        else:
            self.wire.standard("payment.failed", charge, failure_code="insufficient_funds")

    def _pending(self, charge: ChargeRef, payment: Payment | None) -> None:
        if payment is not None and _is_card(payment) and payment["status"] in _REVIEWABLE:
            self.wire.control(f"/sim/payments/{payment['id']}/risk-review")
        else:
            self.wire.standard("payment.pending", charge)

    # -- Asaas's payment lifecycle

    def _lifecycle(self, event: str, account_id: str, product: str | None) -> None:
        """Find the gateway's payment the event is about (opening a charge where it may), then run its controls."""
        lifecycle = _LIFECYCLE[event]
        risk = event.startswith("risk-")
        if risk and not self._pays_by_card(account_id, product):
            raise TriggerError(f"risk analysis is for card payments: account {account_id} does not pay by card")
        if not self.wire.simulator_answers():
            self._told_as_standard(event, account_id, product)
            return
        charges = self.runtime.read(lambda s: _charges(s, account_id, product, lifecycle.charges))
        found = next(((c, p) for c in charges for p in self.wire.payments(c) if lifecycle.about(p)), None)
        if found is None and lifecycle.opens:
            opened = self._checkout(account_id, product, card_page=risk)
            found = next(((opened, p) for p in self.wire.payments(opened) if lifecycle.about(p)), None)
        if found is None:
            hint = f": `regua trigger {lifecycle.first} --account {account_id}` first" if lifecycle.first else ""
            raise TriggerError(f"account {account_id} has no payment at the gateway that `{event}` is about{hint}")
        charge, payment = found
        self._about(charge)
        self.out(f"payment {payment['id']} at the gateway: {payment['status']}")
        if event == "refund-denied" and not _refund_pending(payment):
            # A refund to deny: asked for now, denied before the simulator makes it (a moment later).
            self.wire.control(f"/v3/payments/{payment['id']}/refund", via_api=True)
        for control in self._controls(event, payment):
            self.wire.control(f"/sim/payments/{payment['id']}/{control}")

    @staticmethod
    def _controls(event: str, payment: Payment) -> list[str]:
        """The simulator's controls that play `event` from where `payment` stands."""
        if event == "chargeback-won" and payment["status"] != "CHARGEBACK_DISPUTE":
            return ["chargeback-dispute", event]
        if event == "risk-refused" and payment["status"] != "AWAITING_RISK_ANALYSIS":
            return ["risk-review", event]
        return [event]

    def _told_as_standard(self, event: str, account_id: str, product: str | None) -> None:
        """No simulated Asaas: the charge is a Standard Webhooks gateway's, which tells risk analysis as a
        payment pending, then failed, and has nothing for the rest of Asaas's lifecycle."""
        if event in ASAAS_ONLY:
            raise TriggerError(
                f"`{event}` is an Asaas event with no Standard Webhooks equivalent, and no simulated Asaas "
                f"answers at {self.runtime.settings.asaas_api_url}: nothing sent"
            )
        charge = self.runtime.read(lambda s: _charge(s, account_id, product, _OPEN_CHARGE))
        charge = charge or self._checkout(account_id, product, card_page=True)
        self._about(charge)
        if event == "risk-review":
            self.wire.standard("payment.pending", charge)
        else:
            self.wire.standard("payment.failed", charge, failure_code="reproved_by_risk_analysis")

    # -- finding and opening charges

    def _about(self, charge: ChargeRef) -> None:
        self.out(f"charge {charge.id}: {charge.method}, {charge.amount_cents} centavos, {charge.status}")

    def _pays_by_card(self, account_id: str, product: str | None) -> bool:
        found = self.runtime.read(lambda s: _subscription(s, account_id, product))
        return found is not None and _CHECKOUT_METHOD[found[1]] == "card"

    def _checkout(
        self, account_id: str, product: str | None, card_token: str | None = None, *, card_page: bool = False
    ) -> ChargeRef:
        """A charge opened through the product API by the subscription's method; a card charge with the
        saved token (or `card_token`), or, with `card_page`, on the gateway's own page (still unpaid)."""
        found = self.runtime.read(lambda s: _subscription(s, account_id, product))
        if found is None:
            raise TriggerError(f"account {account_id} has no subscription{f' to {product}' if product else ''}")
        product_name, payment_method, saved_token = found
        body: dict[str, Any] = {"product": product_name, "method": _CHECKOUT_METHOD[payment_method]}
        if body["method"] == "card" and not card_page:
            # The sandbox's customer is on this machine: its IP goes with the card (Asaas's remoteIp).
            body |= {"card_token": card_token or saved_token or "tok_ok", "remote_ip": "127.0.0.1"}
        return self.wire.checkout(account_id, body)

    def _simulated_payment(self, charge: ChargeRef) -> Payment | None:
        """The payment the simulated gateway holds for the charge, or None (no simulator, or unknown):
        the newest still paid (a duplicate refunded by regua is not the one to refund), else the newest."""
        payments = [payment for payment in self.wire.payments(charge) if not payment.get("deleted")]
        paid = [payment for payment in payments if payment["status"] in _PAID]
        return paid[0] if paid else (payments[0] if payments else None)
