"""The simulated Asaas's payments: the state behind `/v3/payments`, its events, and time passing.

Every change happens under one lock. Time moves the payments on by itself in two ways, both applied
by `advance()`, which every request and the webhook thread's pulse call: a PENDING refund becomes
DONE once its delay (wall-clock seconds, `refund_delay_s`) has passed, and a CONFIRMED card payment
becomes RECEIVED (`PAYMENT_RECEIVED`) once the simulator's clock reaches its `creditDate` (D+32).
"""

from __future__ import annotations

import heapq
import secrets
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterable, Mapping
from datetime import date, datetime
from typing import Any

from billing.clock import Clock
from regua.sandbox.simulator import cards, codes, controls, refunds
from regua.sandbox.simulator.common import ASAAS_TIMEZONE, SimulatorError, add_months, listing
from regua.sandbox.simulator.customers import CustomerBook
from regua.sandbox.simulator.payments import UNPAID, CreateRequest, Payment
from regua.sandbox.simulator.webhooks import WebhookDispatcher

OUTAGES = frozenset({"500", "502-charged", "timeout"})
_LIST_FILTERS = (
    ("external_reference", "externalReference"),
    ("customer", "customer"),
    ("status", "status"),
    ("billing_type", "billingType"),
    ("installment", "installment"),
)


class AsaasSimulator:
    """The state and the behaviour behind the routes."""

    def __init__(
        self,
        dispatcher: WebhookDispatcher,
        *,
        clock: Clock,
        timeout_delay_s: float,
        send_created_events: bool = False,
        refund_delay_s: float = refunds.DEFAULT_REFUND_DELAY_S,
        require_remote_ip: bool = True,
    ) -> None:
        self.dispatcher = dispatcher
        self.clock = clock
        self.timeout_delay_s = timeout_delay_s
        self.send_created_events = send_created_events
        self.refund_delay_s = refund_delay_s
        self.require_remote_ip = require_remote_ip
        self.lock = threading.RLock()
        self.customers = CustomerBook()
        self.payments: dict[str, Payment] = {}
        self._by_reference: dict[str | None, list[Payment]] = {}
        """The payments of each externalReference, in creation order: regua looks one up before every
        creation, and a scan of 100,000 payments takes 90 ms."""
        self._credits: list[tuple[date, int, str]] = []  # (creditDate, sequence, id) of CONFIRMED card payments
        self.refunds_pending: set[str] = set()  # payments with a PENDING refund
        self._refused: list[dict[str, object]] = []
        self._outages: deque[str] = deque()
        self._outages_served: list[dict[str, object]] = []
        self._events = 0
        self._sequence = 0
        self._nosso_numero = 10_000_000
        self._pulsed_credits_at = 0.0
        dispatcher.on_idle = self.pulse

    # -- time, ids, events

    def now(self) -> datetime:
        return self.clock.now().astimezone(ASAAS_TIMEZONE)

    def today(self) -> date:
        return self.now().date()

    def stamp(self) -> str:
        return self.now().strftime("%Y-%m-%d %H:%M:%S")

    def emit(self, name: str, payment: Payment) -> None:
        self._events += 1
        event: dict[str, object] = {
            "id": f"evt_{uuid.uuid4().hex}&{self._events}",
            "event": name,
            "dateCreated": self.stamp(),
            "payment": payment.to_json(),
        }
        self.dispatcher.send(event)

    def find(self, payment_id: str, *, include_deleted: bool = True) -> Payment:
        payment = self.payments.get(payment_id)
        if payment is None or (payment.deleted and not include_deleted):
            raise SimulatorError(404, "not_found", f"Cobrança {payment_id} não encontrada.")
        return payment

    def new_payment(self, base_url: str, **fields: Any) -> Payment:
        payment_id = f"pay_{secrets.token_hex(8)}"
        self._sequence += 1
        self._nosso_numero += 1
        payment = Payment(
            id=payment_id,
            sequence=self._sequence,
            created=self.today(),
            invoice_url=f"{base_url}/i/{payment_id.removeprefix('pay_')}",
            nosso_numero=str(self._nosso_numero),
            **fields,
        )
        self.payments[payment_id] = payment
        self._by_reference.setdefault(payment.external_reference, []).append(payment)
        if self.send_created_events:
            self.emit("PAYMENT_CREATED", payment)
        return payment

    def fresh_codes(self, payment: Payment) -> None:
        self._nosso_numero += 1
        payment.nosso_numero = str(self._nosso_numero)

    def confirm_card(self, payment: Payment, card: cards.Card) -> None:
        payment.confirm_card(card, self.today())
        self.await_credit(payment)
        self.emit("PAYMENT_CONFIRMED", payment)

    def await_credit(self, payment: Payment) -> None:
        """A CONFIRMED card payment becomes RECEIVED when the clock reaches its creditDate."""
        if payment.credit_date is not None:
            heapq.heappush(self._credits, (payment.credit_date, payment.sequence, payment.id))

    def advance(self) -> None:
        """Settle what time has made due: refunds past their delay, card money past its creditDate."""
        with self.lock:
            if self.refunds_pending:
                refunds.settle_due(self, time.monotonic())
            if not self._credits:
                return
            today = self.today()
            while self._credits and self._credits[0][0] <= today:
                credit_date, _, payment_id = heapq.heappop(self._credits)
                payment = self.payments.get(payment_id)
                if payment is not None and payment.status == "CONFIRMED" and payment.credit_date == credit_date:
                    payment.receive(credit_date)
                    self.emit("PAYMENT_RECEIVED", payment)

    def pulse(self) -> None:
        """The webhook thread's tick: refunds at every call, card credits (a clock read) once a second."""
        now = time.monotonic()
        if now - self._pulsed_credits_at >= 1.0:
            self._pulsed_credits_at = now
            self.advance()
        elif self.refunds_pending:
            with self.lock:
                refunds.settle_due(self, now)

    # -- the API

    def script_outages(self, body: Mapping[str, Any]) -> dict[str, object]:
        outages = body.get("create")
        if not isinstance(outages, list) or not all(outage in OUTAGES for outage in outages):
            allowed = ", ".join(sorted(OUTAGES))
            raise SimulatorError(400, "invalid_outages", f'Send {{"create": [...]}} with items among {allowed}.')
        with self.lock:
            self._outages.extend(outages)
            return {"scripted": list(self._outages)}

    def create(self, body: Mapping[str, Any], base_url: str) -> tuple[dict[str, object], str | None]:
        """The created payment (the first installment, for an installment plan), and how the answer goes
        wrong: None (it does not), "timeout" (held back) or "502-charged" (an error after the ledger)."""
        request = CreateRequest.parse(body)
        self.advance()
        with self.lock:
            outage = self._outages.popleft() if self._outages else None
            if outage is not None:
                self._outages_served.append({"outage": outage, "externalReference": request.external_reference})
            if outage == "500":
                raise SimulatorError(500, "internal_error", "Erro interno. Tente novamente.")
            card: cards.Card | None = None
            if request.billing_type == "CREDIT_CARD":
                if self.require_remote_ip:
                    cards.require_remote_ip(body)
                try:
                    card = cards.card_of(body)
                except cards.CardRefused:
                    token = body.get("creditCardToken")
                    refused = {"externalReference": request.external_reference, "creditCardToken": token}
                    self._refused.append(refused)
                    raise
            payments = [
                self.new_payment(
                    base_url,
                    customer=request.customer,
                    billing_type=request.billing_type,
                    value_cents=value_cents,
                    fee_cents=fee_cents,
                    due_date=add_months(request.due_date, number - 1),
                    external_reference=request.external_reference,
                    description=request.describe(number),
                    installment=request.installment_id,
                    installment_number=number if request.installment_id else None,
                    terms=request.terms,
                )
                for number, (value_cents, fee_cents) in enumerate(zip(request.split(), request.fees(), strict=True), 1)
            ]
            if card is not None:
                for payment in payments:
                    self.confirm_card(payment, card)
            token = body.get("creditCardToken")
            return payments[0].to_json(), outage or ("timeout" if token == cards.TIMEOUT_TOKEN else None)

    def list(self, params: Mapping[str, str]) -> dict[str, object]:
        """Newest first, as Asaas lists."""
        filters = {key: params[param] for key, param in _LIST_FILTERS if param in params}
        self.advance()
        with self.lock:
            candidates: Iterable[Payment]
            if "external_reference" in filters:
                candidates = reversed(self._by_reference.get(filters["external_reference"], []))
            else:
                candidates = reversed(self.payments.values())
            found = [
                payment
                for payment in candidates
                if not payment.deleted and all(getattr(payment, key) == value for key, value in filters.items())
            ]
            return listing(found, params, Payment.to_json)

    def get(self, payment_id: str) -> dict[str, object]:
        self.advance()
        with self.lock:
            return self.find(payment_id).to_json()

    def delete(self, payment_id: str) -> dict[str, object]:
        self.advance()
        with self.lock:
            payment = self.find(payment_id, include_deleted=False)
            if payment.status not in UNPAID:
                raise SimulatorError(400, "invalid_action", "Só é possível remover cobranças não pagas.")
            payment.deleted = True
            self.emit("PAYMENT_DELETED", payment)
            return {"deleted": True, "id": payment.id}

    def refund(self, payment_id: str, body: Mapping[str, Any]) -> dict[str, object]:
        self.advance()
        with self.lock:
            return refunds.request(self, self.find(payment_id, include_deleted=False), body)

    def pix_code(self, payment_id: str) -> dict[str, object]:
        with self.lock:
            payment = self.find(payment_id, include_deleted=False)
            if payment.billing_type == "CREDIT_CARD":
                raise SimulatorError(400, "invalid_billingType", "Cobranças em cartão não têm QR Code Pix.")
            payload = codes.pix_payload(payment)
            return {
                "encodedImage": codes.qr_image(payload),
                "payload": payload,
                "expirationDate": f"{add_months(payment.due_date, 12).isoformat()} 23:59:59",
            }

    def identification_field(self, payment_id: str) -> dict[str, object]:
        with self.lock:
            payment = self.find(payment_id, include_deleted=False)
            if not payment.is_boleto:
                raise SimulatorError(400, "invalid_billingType", "Esta cobrança não possui boleto.")
            bar_code = codes.bar_code(payment)
            return {
                "identificationField": codes.typeable_line(bar_code),
                "nossoNumero": payment.nosso_numero,
                "barCode": bar_code,
            }

    # -- the controls, for callers in process (as `POST /sim/payments/{id}/{action}`)

    def pay(self, payment_id: str, body: Mapping[str, Any]) -> dict[str, object]:
        return controls.run(self, payment_id, "pay", body)

    def change(self, payment_id: str, action: str, body: Mapping[str, Any]) -> dict[str, object]:
        return controls.run(self, payment_id, action, body)

    # -- what the controls see

    def state(self) -> dict[str, object]:
        self.advance()
        with self.lock:
            return {
                "payments": [payment.to_json() for payment in self.payments.values()],
                "customers": self.customers.all(),
                "refused": list(self._refused),
                "outages": list(self._outages_served),
                "webhooks": self.dispatcher.log(),
                "webhook_queue": self.dispatcher.queue_state(),
            }

    def reset(self) -> None:
        with self.lock:
            self.payments.clear()
            self._by_reference.clear()
            self._credits.clear()
            self.refunds_pending.clear()
            self.customers.clear()
            self._refused.clear()
            self._outages.clear()
            self._outages_served.clear()
            self.dispatcher.forget()
