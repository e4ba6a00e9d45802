"""The simulator's test controls: what a customer, a bank, a card network or Asaas's staff does to a payment.

Each moves the payment as Asaas would and emits the events Asaas sends for it, under
`POST /sim/payments/{id}/{action}`:

    pay                 a boleto or PIX received, a card payment without a card paid on its page
                        (CONFIRMED), or a CONFIRMED card received now (PAYMENT_RECEIVED)
    pay-again           the customer pays a second time: a new RECEIVED payment, same externalReference
    overdue             PENDING past its due date: OVERDUE
    refuse              a card capture refused: PAYMENT_CREDIT_CARD_CAPTURE_REFUSED, still unpaid
    chargeback          CHARGEBACK_REQUESTED, chargeback REQUESTED
    chargeback-dispute  the merchant disputes: CHARGEBACK_DISPUTE, chargeback IN_DISPUTE
    chargeback-won      AWAITING_CHARGEBACK_REVERSAL (PAYMENT_AWAITING_CHARGEBACK_REVERSAL), then the
                        money comes back: RECEIVED, chargeback REVERSED, PAYMENT_RECEIVED
    chargeback-lost     the dispute is lost: back to CHARGEBACK_REQUESTED for good, chargeback DONE,
                        told as PAYMENT_CHARGEBACK_DISPUTE (Asaas has no event of its own for it)
    cash                received outside Asaas: RECEIVED_IN_CASH, PAYMENT_RECEIVED
    cash-undone         that undone: PENDING, or OVERDUE past its due date, PAYMENT_RECEIVED_IN_CASH_UNDONE
    refund-denied       the newest PENDING refund CANCELLED: PAYMENT_REFUND_DENIED
    deleted             as DELETE /v3/payments/{id}: PAYMENT_DELETED
    restored            a deleted payment PENDING again, with a fresh nossoNumero: PAYMENT_RESTORED
    risk-review         a card payment held: AWAITING_RISK_ANALYSIS, PAYMENT_AWAITING_RISK_ANALYSIS
    risk-approved       CONFIRMED: PAYMENT_APPROVED_BY_RISK_ANALYSIS, then PAYMENT_CONFIRMED
    risk-refused        PAYMENT_REPROVED_BY_RISK_ANALYSIS; unpaid again (PENDING), as a refused capture
    event               any event, for the payment as it is ({"event": "PAYMENT_..."})

Asaas's own routes for three of them are served too: `POST /v3/payments/{id}/receiveInCash`,
`/undoReceivedInCash` and `/restore`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from regua.sandbox.simulator import cards, refunds
from regua.sandbox.simulator.common import SimulatorError, optional_date
from regua.sandbox.simulator.payments import UNPAID, Chargeback, Ledger, Payment

DEFAULT_CHARGEBACK_REASON = "ABSENT_CARD_FRAUD"
CHARGED_BACK = ("CHARGEBACK_REQUESTED", "CHARGEBACK_DISPUTE")


def _refuse_unless(payment: Payment, allowed: tuple[str, ...]) -> None:
    if payment.status not in allowed:
        raise SimulatorError(409, "invalid_action", f"Payment {payment.id} is {payment.status}.")


def pay(sim: Ledger, payment: Payment, body: Mapping[str, Any]) -> None:
    paid_on = optional_date(body.get("paymentDate"), "paymentDate") or sim.today()
    if payment.billing_type == "CREDIT_CARD" and payment.status == "PENDING" and payment.card is None:
        # The customer typed a card on the payment's own page (invoiceUrl): confirmed now.
        sim.confirm_card(payment, cards.typed_card(str(body.get("creditCardNumber") or "4444444444444444")))
        return
    if payment.billing_type == "CREDIT_CARD":
        _refuse_unless(payment, ("CONFIRMED",))
    else:
        _refuse_unless(payment, UNPAID)
    billing_type = body.get("billingType")
    if billing_type in ("BOLETO", "PIX") and payment.billing_type != "CREDIT_CARD":
        payment.billing_type = billing_type  # a boleto paid through its PIX code becomes PIX
    payment.confirmed_date = payment.confirmed_date or paid_on
    payment.receive(paid_on)
    sim.emit("PAYMENT_RECEIVED", payment)


def overdue(sim: Ledger, payment: Payment, _body: Mapping[str, Any]) -> None:
    _refuse_unless(payment, ("PENDING",))
    payment.status = "OVERDUE"
    sim.emit("PAYMENT_OVERDUE", payment)


def refuse(sim: Ledger, payment: Payment, _body: Mapping[str, Any]) -> None:
    if payment.billing_type != "CREDIT_CARD" or payment.status not in UNPAID:
        raise SimulatorError(409, "invalid_action", "Only an unpaid card payment can be refused.")
    sim.emit("PAYMENT_CREDIT_CARD_CAPTURE_REFUSED", payment)


def chargeback(sim: Ledger, payment: Payment, body: Mapping[str, Any]) -> None:
    _refuse_unless(payment, ("CONFIRMED", "RECEIVED"))
    reason = body.get("reason")
    payment.status_before, payment.status = payment.status, "CHARGEBACK_REQUESTED"
    payment.chargeback = Chargeback("REQUESTED", reason if isinstance(reason, str) else DEFAULT_CHARGEBACK_REASON)
    sim.emit("PAYMENT_CHARGEBACK_REQUESTED", payment)


def chargeback_dispute(sim: Ledger, payment: Payment, _body: Mapping[str, Any]) -> None:
    _refuse_unless(payment, ("CHARGEBACK_REQUESTED",))
    assert payment.chargeback is not None
    payment.status, payment.chargeback.status = "CHARGEBACK_DISPUTE", "IN_DISPUTE"
    sim.emit("PAYMENT_CHARGEBACK_DISPUTE", payment)


def _open_chargeback(payment: Payment) -> Chargeback:
    """The chargeback still being decided (REQUESTED or IN_DISPUTE), or a 409."""
    if payment.status not in CHARGED_BACK or payment.chargeback is None or payment.chargeback.status == "DONE":
        raise SimulatorError(409, "invalid_action", f"Payment {payment.id} has no open chargeback.")
    return payment.chargeback


def chargeback_won(sim: Ledger, payment: Payment, _body: Mapping[str, Any]) -> None:
    chargeback = _open_chargeback(payment)
    payment.status = "AWAITING_CHARGEBACK_REVERSAL"
    sim.emit("PAYMENT_AWAITING_CHARGEBACK_REVERSAL", payment)
    chargeback.status = "REVERSED"
    payment.status_before = None
    payment.receive(payment.payment_date or sim.today())
    sim.emit("PAYMENT_RECEIVED", payment)


def chargeback_lost(sim: Ledger, payment: Payment, _body: Mapping[str, Any]) -> None:
    chargeback = _open_chargeback(payment)
    payment.status, chargeback.status = "CHARGEBACK_REQUESTED", "DONE"
    sim.emit("PAYMENT_CHARGEBACK_DISPUTE", payment)


def cash(sim: Ledger, payment: Payment, body: Mapping[str, Any]) -> None:
    _refuse_unless(payment, UNPAID)
    paid_on = optional_date(body.get("paymentDate"), "paymentDate") or sim.today()
    payment.status = "RECEIVED_IN_CASH"
    payment.payment_date = payment.client_payment_date = paid_on
    sim.emit("PAYMENT_RECEIVED", payment)


def cash_undone(sim: Ledger, payment: Payment, _body: Mapping[str, Any]) -> None:
    _refuse_unless(payment, ("RECEIVED_IN_CASH",))
    payment.status = "OVERDUE" if payment.due_date < sim.today() else "PENDING"
    payment.payment_date = payment.client_payment_date = None
    sim.emit("PAYMENT_RECEIVED_IN_CASH_UNDONE", payment)


def refund_denied(sim: Ledger, payment: Payment, _body: Mapping[str, Any]) -> None:
    refunds.deny(sim, payment)


def deleted(sim: Ledger, payment: Payment, _body: Mapping[str, Any]) -> None:
    if payment.deleted or payment.status not in UNPAID:
        raise SimulatorError(400, "invalid_action", "Só é possível remover cobranças não pagas.")
    payment.deleted = True
    sim.emit("PAYMENT_DELETED", payment)


def restored(sim: Ledger, payment: Payment, _body: Mapping[str, Any]) -> None:
    if not payment.deleted:
        raise SimulatorError(400, "invalid_action", "Só é possível restaurar cobranças removidas.")
    payment.deleted = False
    payment.status = "PENDING"
    sim.fresh_codes(payment)
    sim.emit("PAYMENT_RESTORED", payment)


def risk_review(sim: Ledger, payment: Payment, _body: Mapping[str, Any]) -> None:
    if payment.billing_type != "CREDIT_CARD":
        raise SimulatorError(409, "invalid_action", "Only a card payment goes to risk analysis.")
    _refuse_unless(payment, ("PENDING", "CONFIRMED"))
    payment.status = "AWAITING_RISK_ANALYSIS"
    payment.confirmed_date = payment.client_payment_date = payment.credit_date = None
    sim.emit("PAYMENT_AWAITING_RISK_ANALYSIS", payment)


def risk_approved(sim: Ledger, payment: Payment, _body: Mapping[str, Any]) -> None:
    _refuse_unless(payment, ("AWAITING_RISK_ANALYSIS",))
    sim.emit("PAYMENT_APPROVED_BY_RISK_ANALYSIS", payment)
    sim.confirm_card(payment, payment.card or cards.typed_card("4444444444444444"))


def risk_refused(sim: Ledger, payment: Payment, _body: Mapping[str, Any]) -> None:
    _refuse_unless(payment, ("AWAITING_RISK_ANALYSIS",))
    payment.status = "PENDING"
    sim.emit("PAYMENT_REPROVED_BY_RISK_ANALYSIS", payment)


def any_event(sim: Ledger, payment: Payment, body: Mapping[str, Any]) -> None:
    name = body.get("event")
    if not isinstance(name, str) or not name.startswith("PAYMENT_"):
        raise SimulatorError(400, "invalid_event", 'Send {"event": "PAYMENT_..."}.')
    sim.emit(name, payment)


Control = Callable[[Ledger, Payment, Mapping[str, Any]], None]
CONTROLS: dict[str, Control] = {
    "pay": pay,
    "overdue": overdue,
    "refuse": refuse,
    "chargeback": chargeback,
    "chargeback-dispute": chargeback_dispute,
    "chargeback-won": chargeback_won,
    "chargeback-lost": chargeback_lost,
    "cash": cash,
    "cash-undone": cash_undone,
    "refund-denied": refund_denied,
    "deleted": deleted,
    "restored": restored,
    "risk-review": risk_review,
    "risk-approved": risk_approved,
    "risk-refused": risk_refused,
    "event": any_event,
}
# Asaas's own routes for some of them (POST /v3/payments/{id}/<name>).
API_ACTIONS = {"receiveInCash": "cash", "undoReceivedInCash": "cash-undone", "restore": "restored"}


def run(sim: Ledger, payment_id: str, action: str, body: Mapping[str, Any]) -> dict[str, object]:
    control = CONTROLS.get(action)
    if control is None:
        raise SimulatorError(404, "not_found", f"No such control: {action}")
    sim.advance()
    with sim.lock:
        control(sim, sim.find(payment_id), body)
        return sim.find(payment_id).to_json()


def pay_again(sim: Ledger, payment_id: str, base_url: str) -> dict[str, object]:
    with sim.lock:
        original = sim.find(payment_id)
        payment = sim.new_payment(
            base_url,
            customer=original.customer,
            billing_type=original.billing_type,
            value_cents=original.value_cents,
            fee_cents=original.fee_cents,
            due_date=original.due_date,
            external_reference=original.external_reference,
            description=original.description,
        )
        today = sim.today()
        payment.confirmed_date = today
        payment.receive(today)
        sim.emit("PAYMENT_RECEIVED", payment)
        return payment.to_json()
