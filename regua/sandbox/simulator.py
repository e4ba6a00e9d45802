"""A simulator of the Asaas API subset regua uses, with scripted cards and real webhooks: for dev, demos, tests.

It speaks `/v3/payments` (create, list by externalReference, get, delete, refund, pixQrCode,
identificationField) and `/v3/customers` (create, list by externalReference or cpfCnpj, get) with the
`access_token` header, keeps its state in memory, and posts Asaas-format
webhooks from a background thread, retrying while the receiver is down. Card tokens script outcomes:

    tok_ok             approved: the payment is CONFIRMED (so is any other token, as in Asaas's sandbox)
    tok_soft_decline   HTTP 400 invalid_creditCard, insufficient funds; nothing stored
    tok_hard_decline   HTTP 400 invalid_creditCard, stolen card; nothing stored
    tok_expired        HTTP 400 invalid_creditCard, expired card; nothing stored
    tok_timeout        approved and CONFIRMED, but the answer comes `timeout_delay_s` later, after the
                       client has given up: the charge exists and the client does not know it

Test controls live under /sim/ (no token): `POST /sim/payments/{id}/pay` (boleto, PIX, or a confirmed
card received), `pay-again` (the customer pays a second time: a new received payment with the same
externalReference), `overdue`, `refuse` (PAYMENT_CREDIT_CARD_CAPTURE_REFUSED), `chargeback`, `event`
(any event for the payment as it is), `GET /sim/state` (payments, refused cards, webhook deliveries),
`POST /sim/webhooks/resend` (queue failed deliveries again), `POST /sim/reset`, and
`POST /sim/outages` with `{"create": [...]}`: how the next payment creations go wrong, in order:

    "500"          HTTP 500 before anything is stored (the request never reached the ledger)
    "502-charged"  the payment is created (a card charged), then the answer is an HTTP 502
    "timeout"      the payment is created, the answer held `timeout_delay_s` like tok_timeout

`GET /sim/state` lists under "outages" each one served, with the externalReference it hit.
"""

from __future__ import annotations

import base64
import hashlib
import json
import queue
import secrets
import struct
import threading
import uuid
import zlib
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import anyio
import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from billing.clock import Clock, SystemClock
from regua.gateway.asaas import cents_from_json, encode_json, money

DEFAULT_WEBHOOK_URL = "http://127.0.0.1:8000/webhooks/asaas"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8001
# Longer than AsaasGateway's default read timeout (20 s), so that a default client gives up first.
DEFAULT_TIMEOUT_DELAY_S = 25.0
DEFAULT_WEBHOOK_RETRY_DELAYS = (1.0, 2.0, 5.0, 10.0, 30.0)

ASAAS_TIMEZONE = ZoneInfo("America/Sao_Paulo")
ASAAS_BANK_CODE = "461"
TIMEOUT_TOKEN = "tok_timeout"
SCRIPTED_DECLINES = {
    "tok_soft_decline": "Transação não autorizada: saldo insuficiente.",
    "tok_hard_decline": "Transação não autorizada: cartão roubado.",
    "tok_expired": "Transação não autorizada: cartão expirado.",
}
BILLING_TYPES = ("BOLETO", "PIX", "CREDIT_CARD", "UNDEFINED")
_UNPAID = ("PENDING", "OVERDUE")
_PAID = ("CONFIRMED", "RECEIVED")
OUTAGES = frozenset({"500", "502-charged", "timeout"})


class SimulatorError(Exception):
    """A request the simulated Asaas refuses, answered as Asaas does: `{"errors": [{code, description}]}`."""

    def __init__(self, status_code: int, code: str, description: str) -> None:
        super().__init__(description)
        self.status_code = status_code
        self.code = code
        self.description = description


class AsaasJSONResponse(Response):
    """JSON with money written as exact decimal numbers, the way Asaas writes it."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return encode_json(content)


def _error_response(error: SimulatorError) -> Response:
    body = {"errors": [{"code": error.code, "description": error.description}]}
    return AsaasJSONResponse(body, status_code=error.status_code)


class AccessTokenMiddleware:
    """Asaas's authentication for /v3/: a non-empty `access_token` header, equal to `api_key` if one is set."""

    def __init__(self, app: ASGIApp, api_key: str | None = None) -> None:
        self.app = app
        self.api_key = api_key

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Mounted under a prefix (as in `regua dev`), the path still starts with the mount's root_path.
        path, root = scope.get("path", ""), scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root) :]
        if scope["type"] == "http" and path.startswith("/v3/"):
            headers = dict(scope["headers"])
            token = headers.get(b"access_token", b"").decode("latin-1")
            if not token or (self.api_key is not None and token != self.api_key):
                error = SimulatorError(401, "invalid_access_token", "A chave de API informada é inválida.")
                await _error_response(error)(scope, receive, send)
                return
        await self.app(scope, receive, send)


# -- the simulated payments -----------------------------------------------------------------------------


@dataclass
class _Refund:
    value_cents: int
    created: str
    description: str | None

    def to_json(self) -> dict[str, object]:
        return {
            "dateCreated": self.created,
            "status": "DONE",
            "value": money(self.value_cents),
            "description": self.description,
            "transactionReceiptUrl": None,
        }


@dataclass
class _Payment:
    id: str
    customer: str
    billing_type: str
    value_cents: int
    due_date: date
    created: date
    external_reference: str | None
    description: str | None
    invoice_url: str
    nosso_numero: str
    status: str = "PENDING"
    confirmed_date: date | None = None
    payment_date: date | None = None
    client_payment_date: date | None = None
    deleted: bool = False
    installment: str | None = None
    installment_number: int | None = None
    card_token: str | None = None
    refunds: list[_Refund] = field(default_factory=list)

    @property
    def refunded_cents(self) -> int:
        return sum(refund.value_cents for refund in self.refunds)

    def to_json(self) -> dict[str, object]:
        boleto = self.billing_type in ("BOLETO", "UNDEFINED")
        card = None
        if self.card_token is not None:
            last4 = str(int(hashlib.sha256(self.card_token.encode()).hexdigest(), 16) % 10000).zfill(4)
            card = {"creditCardNumber": last4, "creditCardBrand": "VISA", "creditCardToken": self.card_token}
        return {
            "object": "payment",
            "id": self.id,
            "dateCreated": self.created.isoformat(),
            "customer": self.customer,
            "installment": self.installment,
            "installmentNumber": self.installment_number,
            "dueDate": self.due_date.isoformat(),
            "originalDueDate": self.due_date.isoformat(),
            "value": money(self.value_cents),
            "netValue": money(self.value_cents),
            "description": self.description,
            "externalReference": self.external_reference,
            "billingType": self.billing_type,
            "status": self.status,
            "confirmedDate": _iso(self.confirmed_date),
            "paymentDate": _iso(self.payment_date),
            "clientPaymentDate": _iso(self.client_payment_date),
            "invoiceUrl": self.invoice_url,
            "bankSlipUrl": self.invoice_url.replace("/i/", "/b/pdf/") if boleto else None,
            "nossoNumero": self.nosso_numero if boleto else None,
            "deleted": self.deleted,
            "creditCard": card,
            "refunds": [refund.to_json() for refund in self.refunds] or None,
        }


@dataclass
class _Customer:
    id: str
    name: str
    cpf_cnpj: str
    created: date
    email: str | None
    external_reference: str | None

    def to_json(self) -> dict[str, object]:
        return {
            "object": "customer",
            "id": self.id,
            "dateCreated": self.created.isoformat(),
            "name": self.name,
            "email": self.email,
            "phone": None,
            "mobilePhone": None,
            "cpfCnpj": self.cpf_cnpj,
            "personType": "FISICA" if len(self.cpf_cnpj) == 11 else "JURIDICA",
            "deleted": False,
            "additionalEmails": None,
            "externalReference": self.external_reference,
            "notificationDisabled": True,
            "observations": None,
        }


def _iso(day: date | None) -> str | None:
    return day.isoformat() if day else None


# -- webhooks --------------------------------------------------------------------------------------------


@dataclass
class _Delivery:
    event: dict[str, object]
    status: str = "pending"  # pending, delivered, failed, abandoned, disabled (no URL)
    attempts: int = 0
    last_error: str | None = None

    def summary(self) -> dict[str, object]:
        payment = self.event.get("payment")
        return {
            "id": self.event["id"],
            "event": self.event["event"],
            "payment_id": payment.get("id") if isinstance(payment, Mapping) else None,
            "status": self.status,
            "attempts": self.attempts,
            "last_error": self.last_error,
        }


class WebhookDispatcher:
    """Posts events one at a time, in order, from its own thread; only HTTP 200 counts, as at Asaas."""

    def __init__(
        self,
        url: str,
        token: str,
        *,
        retry_delays: Sequence[float] = DEFAULT_WEBHOOK_RETRY_DELAYS,
        timeout: float = 10.0,
    ) -> None:
        self.url = url
        self.token = token
        self.retry_delays = tuple(retry_delays)
        self.timeout = timeout
        self._queue: queue.Queue[_Delivery | None] = queue.Queue()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._log: list[_Delivery] = []

    def start(self) -> None:
        if self._thread is None:
            self._stopping.clear()
            self._thread = threading.Thread(target=self._run, name="asaas-sim-webhooks", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        if self._thread is not None:
            self._stopping.set()
            self._queue.put(None)
            self._thread.join(timeout)
            self._thread = None

    def send(self, event: dict[str, object]) -> None:
        delivery = _Delivery(event)
        with self._lock:
            self._log.append(delivery)
        if not self.url:
            delivery.status = "disabled"
            return
        self._queue.put(delivery)

    def log(self) -> list[dict[str, object]]:
        with self._lock:
            return [delivery.summary() for delivery in self._log]

    def resend_failed(self) -> int:
        """Queue again every delivery that failed or was abandoned (Asaas: "reactivate the queue")."""
        with self._lock:
            again = [delivery for delivery in self._log if delivery.status in ("failed", "abandoned")]
            for delivery in again:
                delivery.status = "pending"
                self._queue.put(delivery)
        return len(again)

    def forget(self) -> None:
        with self._lock:
            self._log = [delivery for delivery in self._log if delivery.status == "pending"]

    def _run(self) -> None:
        headers = {"Content-Type": "application/json", "User-Agent": "regua-asaas-simulator"}
        if self.token:
            headers["asaas-access-token"] = self.token
        with httpx.Client(timeout=self.timeout, headers=headers) as client:
            while (delivery := self._queue.get()) is not None:
                self._deliver(client, delivery)

    def _deliver(self, client: httpx.Client, delivery: _Delivery) -> None:
        body = encode_json(delivery.event)
        for delay in (0.0, *self.retry_delays):
            if delay and self._stopping.wait(delay):
                delivery.status = "abandoned"
                return
            delivery.attempts += 1
            try:
                response = client.post(self.url, content=body)
            except httpx.HTTPError as error:
                delivery.last_error = f"{type(error).__name__}: {error}"
                continue
            if response.status_code == 200:
                delivery.status = "delivered"
                return
            delivery.last_error = f"HTTP {response.status_code}"
        delivery.status = "failed"


# -- the simulated Asaas -----------------------------------------------------------------------------------


class AsaasSimulator:
    """The state and the behaviour behind the routes; every change happens under one lock."""

    def __init__(
        self,
        dispatcher: WebhookDispatcher,
        *,
        clock: Clock,
        timeout_delay_s: float,
        send_created_events: bool = False,
    ) -> None:
        self.dispatcher = dispatcher
        self.clock = clock
        self.timeout_delay_s = timeout_delay_s
        self.send_created_events = send_created_events
        self._lock = threading.Lock()
        self._payments: dict[str, _Payment] = {}
        self._by_reference: dict[str | None, list[_Payment]] = {}
        """The payments of each externalReference, in creation order: regua looks one up before every
        creation, and a scan of 100,000 payments takes 90 ms."""
        self._customers: dict[str, _Customer] = {}
        self._refused: list[dict[str, object]] = []
        self._outages: deque[str] = deque()
        self._outages_served: list[dict[str, object]] = []
        self._events = 0
        self._nosso_numero = 10_000_000

    # -- time, ids, events

    def _now(self) -> datetime:
        return self.clock.now().astimezone(ASAAS_TIMEZONE)

    def _today(self) -> date:
        return self._now().date()

    def _emit(self, name: str, payment: _Payment) -> None:
        self._events += 1
        event: dict[str, object] = {
            "id": f"evt_{uuid.uuid4().hex}&{self._events}",
            "event": name,
            "dateCreated": self._now().strftime("%Y-%m-%d %H:%M:%S"),
            "payment": payment.to_json(),
        }
        self.dispatcher.send(event)

    def _find(self, payment_id: str, *, include_deleted: bool = True) -> _Payment:
        payment = self._payments.get(payment_id)
        if payment is None or (payment.deleted and not include_deleted):
            raise SimulatorError(404, "not_found", f"Cobrança {payment_id} não encontrada.")
        return payment

    def _new_payment(self, base_url: str, **fields: Any) -> _Payment:
        payment_id = f"pay_{secrets.token_hex(8)}"
        self._nosso_numero += 1
        payment = _Payment(
            id=payment_id,
            created=self._today(),
            invoice_url=f"{base_url}/i/{payment_id.removeprefix('pay_')}",
            nosso_numero=str(self._nosso_numero),
            **fields,
        )
        self._payments[payment_id] = payment
        self._by_reference.setdefault(payment.external_reference, []).append(payment)
        if self.send_created_events:
            self._emit("PAYMENT_CREATED", payment)
        return payment

    # -- the API

    def script_outages(self, body: Mapping[str, Any]) -> dict[str, object]:
        outages = body.get("create")
        if not isinstance(outages, list) or not all(outage in OUTAGES for outage in outages):
            allowed = ", ".join(sorted(OUTAGES))
            raise SimulatorError(400, "invalid_outages", f'Send {{"create": [...]}} with items among {allowed}.')
        with self._lock:
            self._outages.extend(outages)
            return {"scripted": list(self._outages)}

    def create(self, body: Mapping[str, Any], base_url: str) -> tuple[dict[str, object], str | None]:
        """The created payment (the first installment, for an installment plan), and how the answer goes
        wrong: None (it does not), "timeout" (held back) or "502-charged" (an error after the ledger)."""
        request = _CreateRequest.parse(body)
        with self._lock:
            outage = self._outages.popleft() if self._outages else None
            if outage is not None:
                self._outages_served.append({"outage": outage, "externalReference": request.external_reference})
            if outage == "500":
                raise SimulatorError(500, "internal_error", "Erro interno. Tente novamente.")
            token = request.card_token
            if token in SCRIPTED_DECLINES:
                self._refused.append({"externalReference": request.external_reference, "creditCardToken": token})
                raise SimulatorError(400, "invalid_creditCard", SCRIPTED_DECLINES[token])
            payments = [
                self._new_payment(
                    base_url,
                    customer=request.customer,
                    billing_type=request.billing_type,
                    value_cents=value_cents,
                    due_date=_add_months(request.due_date, number - 1),
                    external_reference=request.external_reference,
                    description=request.describe(number),
                    installment=request.installment_id,
                    installment_number=number if request.installment_id else None,
                    card_token=token,
                )
                for number, value_cents in enumerate(request.split(), start=1)
            ]
            if token is not None:
                for payment in payments:
                    payment.status = "CONFIRMED"
                    payment.confirmed_date = payment.client_payment_date = self._today()
                    self._emit("PAYMENT_CONFIRMED", payment)
            return payments[0].to_json(), outage or ("timeout" if token == TIMEOUT_TOKEN else None)

    def create_customer(self, body: Mapping[str, Any]) -> dict[str, object]:
        name = body.get("name")
        if not isinstance(name, str) or not name.strip():
            raise SimulatorError(400, "invalid_name", "O campo name deve ser informado.")
        document = "".join(ch for ch in str(body.get("cpfCnpj") or "") if ch.isdigit())
        if len(document) not in (11, 14):
            raise SimulatorError(400, "invalid_cpfCnpj", "O CPF/CNPJ informado é inválido.")
        email, reference = body.get("email"), body.get("externalReference")
        with self._lock:
            customer = _Customer(
                id=f"cus_{len(self._customers) + 1:012d}",
                name=name.strip(),
                cpf_cnpj=document,
                created=self._today(),
                email=email if isinstance(email, str) and email else None,
                external_reference=reference if isinstance(reference, str) and reference else None,
            )
            self._customers[customer.id] = customer
            return customer.to_json()

    def list_customers(self, params: Mapping[str, str]) -> dict[str, object]:
        offset = _int_param(params, "offset", 0, 0, 1_000_000)
        limit = _int_param(params, "limit", 10, 1, 100)
        filters = {
            key: params[param]
            for key, param in (("external_reference", "externalReference"), ("cpf_cnpj", "cpfCnpj"))
            if param in params
        }
        with self._lock:
            found = [c for c in self._customers.values() if all(getattr(c, k) == v for k, v in filters.items())]
            return {
                "object": "list",
                "hasMore": offset + limit < len(found),
                "totalCount": len(found),
                "limit": limit,
                "offset": offset,
                "data": [customer.to_json() for customer in found[offset : offset + limit]],
            }

    def get_customer(self, customer_id: str) -> dict[str, object]:
        with self._lock:
            customer = self._customers.get(customer_id)
            if customer is None:
                raise SimulatorError(404, "not_found", f"Cliente {customer_id} não encontrado.")
            return customer.to_json()

    def list(self, params: Mapping[str, str]) -> dict[str, object]:
        offset = _int_param(params, "offset", 0, 0, 1_000_000)
        limit = _int_param(params, "limit", 10, 1, 100)
        filters = {
            key: params[param]
            for key, param in (
                ("external_reference", "externalReference"),
                ("customer", "customer"),
                ("status", "status"),
                ("billing_type", "billingType"),
            )
            if param in params
        }
        with self._lock:
            if "external_reference" in filters:
                candidates: Iterable[_Payment] = self._by_reference.get(filters["external_reference"], [])
            else:
                candidates = self._payments.values()
            found = [
                payment
                for payment in candidates
                if not payment.deleted and all(getattr(payment, key) == value for key, value in filters.items())
            ]
            page = found[offset : offset + limit]
            return {
                "object": "list",
                "hasMore": offset + limit < len(found),
                "totalCount": len(found),
                "limit": limit,
                "offset": offset,
                "data": [payment.to_json() for payment in page],
            }

    def get(self, payment_id: str) -> dict[str, object]:
        with self._lock:
            return self._find(payment_id).to_json()

    def delete(self, payment_id: str) -> dict[str, object]:
        with self._lock:
            payment = self._find(payment_id, include_deleted=False)
            if payment.status not in _UNPAID:
                raise SimulatorError(400, "invalid_action", "Só é possível remover cobranças não pagas.")
            payment.deleted = True
            self._emit("PAYMENT_DELETED", payment)
            return {"deleted": True, "id": payment.id}

    def refund(self, payment_id: str, body: Mapping[str, Any]) -> dict[str, object]:
        with self._lock:
            payment = self._find(payment_id, include_deleted=False)
            if payment.status not in _PAID:
                raise SimulatorError(400, "invalid_action", "Só é possível estornar cobranças pagas.")
            remaining = payment.value_cents - payment.refunded_cents
            value = body.get("value")
            amount = remaining if value is None else _positive_cents(value, "value")
            if amount > remaining:
                raise SimulatorError(400, "invalid_value", "O valor do estorno excede o valor disponível.")
            description = body.get("description")
            created = self._now().strftime("%Y-%m-%d %H:%M:%S")
            payment.refunds.append(_Refund(amount, created, description if isinstance(description, str) else None))
            if payment.refunded_cents == payment.value_cents:
                payment.status = "REFUNDED"
                self._emit("PAYMENT_REFUNDED", payment)
            else:
                self._emit("PAYMENT_PARTIALLY_REFUNDED", payment)
            return payment.to_json()

    def pix_code(self, payment_id: str) -> dict[str, object]:
        with self._lock:
            payment = self._find(payment_id, include_deleted=False)
            if payment.billing_type == "CREDIT_CARD":
                raise SimulatorError(400, "invalid_billingType", "Cobranças em cartão não têm QR Code Pix.")
            payload = _pix_payload(payment)
            return {
                "encodedImage": _qr_image(payload),
                "payload": payload,
                "expirationDate": f"{_add_months(payment.due_date, 12).isoformat()} 23:59:59",
            }

    def identification_field(self, payment_id: str) -> dict[str, object]:
        with self._lock:
            payment = self._find(payment_id, include_deleted=False)
            if payment.billing_type not in ("BOLETO", "UNDEFINED"):
                raise SimulatorError(400, "invalid_billingType", "Esta cobrança não possui boleto.")
            bar_code = _bar_code(payment)
            return {
                "identificationField": _typeable_line(bar_code),
                "nossoNumero": payment.nosso_numero,
                "barCode": bar_code,
            }

    # -- the test controls

    def pay(self, payment_id: str, body: Mapping[str, Any]) -> dict[str, object]:
        with self._lock:
            payment = self._find(payment_id, include_deleted=False)
            paid_on = _optional_date(body.get("paymentDate"), "paymentDate") or self._today()
            if payment.billing_type == "CREDIT_CARD" and payment.status == "PENDING" and payment.card_token is None:
                # The customer typed a card on the payment's own page (invoiceUrl): confirmed now.
                payment.status = "CONFIRMED"
                payment.confirmed_date = payment.client_payment_date = paid_on
                self._emit("PAYMENT_CONFIRMED", payment)
                return payment.to_json()
            if payment.billing_type == "CREDIT_CARD":
                if payment.status != "CONFIRMED":
                    raise SimulatorError(409, "invalid_action", "Only a confirmed card payment can be received.")
            elif payment.status not in _UNPAID:
                raise SimulatorError(409, "invalid_action", f"Payment {payment.id} is {payment.status}.")
            billing_type = body.get("billingType")
            if billing_type in ("BOLETO", "PIX") and payment.billing_type != "CREDIT_CARD":
                payment.billing_type = billing_type  # a boleto paid through its PIX code becomes PIX
            payment.status = "RECEIVED"
            payment.confirmed_date = payment.confirmed_date or paid_on
            payment.payment_date = paid_on
            payment.client_payment_date = payment.client_payment_date or paid_on
            self._emit("PAYMENT_RECEIVED", payment)
            return payment.to_json()

    def pay_again(self, payment_id: str, base_url: str) -> dict[str, object]:
        with self._lock:
            original = self._find(payment_id)
            payment = self._new_payment(
                base_url,
                customer=original.customer,
                billing_type=original.billing_type,
                value_cents=original.value_cents,
                due_date=original.due_date,
                external_reference=original.external_reference,
                description=original.description,
            )
            payment.status = "RECEIVED"
            payment.confirmed_date = payment.payment_date = payment.client_payment_date = self._today()
            self._emit("PAYMENT_RECEIVED", payment)
            return payment.to_json()

    def change(self, payment_id: str, action: str, body: Mapping[str, Any]) -> dict[str, object]:
        with self._lock:
            payment = self._find(payment_id)
            if action == "overdue":
                if payment.status != "PENDING":
                    raise SimulatorError(409, "invalid_action", f"Payment {payment.id} is {payment.status}.")
                payment.status = "OVERDUE"
                self._emit("PAYMENT_OVERDUE", payment)
            elif action == "refuse":
                if payment.billing_type != "CREDIT_CARD" or payment.status not in _UNPAID:
                    raise SimulatorError(409, "invalid_action", "Only an unpaid card payment can be refused.")
                self._emit("PAYMENT_CREDIT_CARD_CAPTURE_REFUSED", payment)
            elif action == "chargeback":
                if payment.status not in _PAID:
                    raise SimulatorError(409, "invalid_action", f"Payment {payment.id} is {payment.status}.")
                payment.status = "CHARGEBACK_REQUESTED"
                self._emit("PAYMENT_CHARGEBACK_REQUESTED", payment)
            else:  # "event": any event, for the payment as it is
                name = body.get("event")
                if not isinstance(name, str) or not name.startswith("PAYMENT_"):
                    raise SimulatorError(400, "invalid_event", 'Send {"event": "PAYMENT_..."}.')
                self._emit(name, payment)
            return payment.to_json()

    def state(self) -> dict[str, object]:
        with self._lock:
            return {
                "payments": [payment.to_json() for payment in self._payments.values()],
                "customers": [customer.to_json() for customer in self._customers.values()],
                "refused": list(self._refused),
                "outages": list(self._outages_served),
                "webhooks": self.dispatcher.log(),
            }

    def reset(self) -> None:
        with self._lock:
            self._payments.clear()
            self._by_reference.clear()
            self._customers.clear()
            self._refused.clear()
            self._outages.clear()
            self._outages_served.clear()
            self.dispatcher.forget()


@dataclass(frozen=True)
class _CreateRequest:
    customer: str
    billing_type: str
    total_cents: int
    due_date: date
    external_reference: str | None
    description: str | None
    card_token: str | None
    installments: int
    installment_id: str | None

    @classmethod
    def parse(cls, body: Mapping[str, Any]) -> _CreateRequest:
        customer = body.get("customer")
        if not isinstance(customer, str) or not customer:
            raise SimulatorError(400, "invalid_customer", "O campo customer deve ser informado.")
        billing_type = body.get("billingType")
        if billing_type not in BILLING_TYPES:
            raise SimulatorError(400, "invalid_billingType", "Informe uma forma de pagamento válida.")
        due_date = _optional_date(body.get("dueDate"), "dueDate")
        if due_date is None:
            raise SimulatorError(400, "invalid_dueDate", "O campo dueDate deve ser informado.")
        installments = body.get("installmentCount") or 1
        if not isinstance(installments, int) or not 1 <= installments <= 21:
            raise SimulatorError(400, "invalid_installmentCount", "Número de parcelas inválido.")
        if installments > 1 and body.get("totalValue") is not None:
            total = _positive_cents(body["totalValue"], "totalValue")
        elif installments > 1 and body.get("installmentValue") is not None:
            total = _positive_cents(body["installmentValue"], "installmentValue") * installments
        else:
            total = _positive_cents(body.get("value"), "value")
        token = body.get("creditCardToken")
        if billing_type == "CREDIT_CARD" and body.get("creditCard") is not None:
            raise SimulatorError(400, "invalid_creditCard", "The simulator charges saved cards: send creditCardToken.")
        reference = body.get("externalReference")
        description = body.get("description")
        return cls(
            customer=customer,
            billing_type=billing_type,
            total_cents=total,
            due_date=due_date,
            external_reference=reference if isinstance(reference, str) and reference else None,
            description=description if isinstance(description, str) and description else None,
            card_token=token if billing_type == "CREDIT_CARD" and isinstance(token, str) and token else None,
            installments=installments,
            installment_id=str(uuid.uuid4()) if installments > 1 else None,
        )

    def split(self) -> list[int]:
        """The installments' values: equal parts, the odd centavos on the first ones."""
        base, extra = divmod(self.total_cents, self.installments)
        return [base + (1 if number < extra else 0) for number in range(self.installments)]

    def describe(self, number: int) -> str | None:
        if self.installments == 1:
            return self.description
        return f"Parcela {number} de {self.installments}." + (f" {self.description}" if self.description else "")


def _positive_cents(value: object, name: str) -> int:
    try:
        cents = cents_from_json(value)
    except ValueError:
        cents = 0
    if cents <= 0:
        raise SimulatorError(400, f"invalid_{name}", f"O campo {name} deve ser um valor positivo.")
    return cents


def _optional_date(value: object, name: str) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise SimulatorError(400, f"invalid_{name}", f"{name} deve estar no formato AAAA-MM-DD.") from None


def _int_param(params: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    try:
        value = int(params.get(name, default))
    except ValueError:
        raise SimulatorError(400, f"invalid_{name}", f"{name} deve ser um número.") from None
    return max(low, min(high, value))


def _add_months(day: date, months: int) -> date:
    month_index = day.month - 1 + months
    year, month = day.year + month_index // 12, month_index % 12 + 1
    for candidate in (day.day, 30, 29, 28):
        try:
            return date(year, month, min(day.day, candidate))
        except ValueError:
            continue
    raise AssertionError("unreachable: every month has 28 days")


# -- boleto lines and PIX codes that look like the real thing ---------------------------------------------


def _mod10(digits: str) -> int:
    total = 0
    for index, digit in enumerate(reversed(digits)):
        product = int(digit) * (2 if index % 2 == 0 else 1)
        total += product // 10 + product % 10
    return (10 - total % 10) % 10


def _mod11(digits: str) -> int:
    total = sum(int(digit) * (2 + index % 8) for index, digit in enumerate(reversed(digits)))
    check = 11 - total % 11
    return 1 if check in (0, 10, 11) else check


def _due_factor(due: date) -> int:
    """Days since 1997-10-07, restarting at 1000 after 9999 (which happened on 2025-02-22)."""
    days = (due - date(1997, 10, 7)).days
    return days if days <= 9999 else (days - 1000) % 9000 + 1000


def _bar_code(payment: _Payment) -> str:
    free_field = payment.nosso_numero.zfill(25)[-25:]
    value = str(payment.value_cents).zfill(10)[-10:]
    body = f"{ASAAS_BANK_CODE}9{_due_factor(payment.due_date):04d}{value}{free_field}"
    return body[:4] + str(_mod11(body)) + body[4:]


def _typeable_line(bar_code: str) -> str:
    free_field = bar_code[19:]
    first = bar_code[:4] + free_field[:5]
    second, third = free_field[5:15], free_field[15:]
    fields = (first + str(_mod10(first)), second + str(_mod10(second)), third + str(_mod10(third)))
    return "".join(fields) + bar_code[4] + bar_code[5:19]


def _tlv(tag: str, value: str) -> str:
    return f"{tag}{len(value):02d}{value}"


def _crc16(text: str) -> str:
    crc = 0xFFFF
    for byte in text.encode():
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return f"{crc:04X}"


def _pix_payload(payment: _Payment) -> str:
    """A structurally valid BR Code (EMV tags, CRC16) that no bank will pay."""
    account = _tlv("00", "br.gov.bcb.pix") + _tlv("25", f"pix.regua-sim.invalid/qr/v2/{payment.id}")
    payload = (
        _tlv("00", "01")
        + _tlv("01", "12")
        + _tlv("26", account)
        + _tlv("52", "0000")
        + _tlv("53", "986")
        + _tlv("54", format(money(payment.value_cents), "f"))
        + _tlv("58", "BR")
        + _tlv("59", "REGUA SIMULADOR")
        + _tlv("60", "SAO PAULO")
        + _tlv("62", _tlv("05", "***"))
        + "6304"
    )
    return payload + _crc16(payload)


def _qr_image(payload: str, size: int = 21) -> str:
    """A small grayscale PNG, base64: a stand-in for the QR image, different for every payload."""
    bits = int(hashlib.sha256(payload.encode()).hexdigest() * 2, 16)
    rows = b"".join(
        b"\x00" + bytes(0 if (bits >> ((y * size + x) % 512)) & 1 else 255 for x in range(size)) for y in range(size)
    )

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", size, size, 8, 0, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")
    return base64.b64encode(png).decode("ascii")


# -- HTTP ---------------------------------------------------------------------------------------------------


async def _json_body(request: Request) -> Mapping[str, Any]:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw, parse_float=Decimal)
    except ValueError:
        raise SimulatorError(400, "invalid_json", "O corpo da requisição não é um JSON válido.") from None
    if not isinstance(body, dict):
        raise SimulatorError(400, "invalid_json", "O corpo da requisição deve ser um objeto JSON.")
    return body


async def _linger(request: Request, seconds: float) -> None:
    """Hold the answer back, giving up as soon as the client has gone (so servers stop fast)."""
    step = 0.05
    waited = 0.0
    while waited < seconds:
        if await request.is_disconnected():
            return
        await anyio.sleep(step)
        waited += step


def _base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def _routes(sim: AsaasSimulator) -> list[Route]:
    def endpoint(
        handler: Callable[[Request], Awaitable[tuple[object, int]]],
    ) -> Callable[[Request], Awaitable[Response]]:
        async def run(request: Request) -> Response:
            try:
                content, status_code = await handler(request)
            except SimulatorError as error:
                return _error_response(error)
            return AsaasJSONResponse(content, status_code=status_code)

        return run

    def payment_id(request: Request) -> str:
        return str(request.path_params["payment_id"])

    async def create(request: Request) -> tuple[object, int]:
        payment, outage = sim.create(await _json_body(request), _base_url(request))
        if outage == "timeout":
            await _linger(request, sim.timeout_delay_s)
        if outage == "502-charged":
            raise SimulatorError(502, "bad_gateway", "Bad Gateway")
        return payment, 200

    async def list_payments(request: Request) -> tuple[object, int]:
        return sim.list(request.query_params), 200

    async def get(request: Request) -> tuple[object, int]:
        return sim.get(payment_id(request)), 200

    async def delete(request: Request) -> tuple[object, int]:
        return sim.delete(payment_id(request)), 200

    async def refund(request: Request) -> tuple[object, int]:
        return sim.refund(payment_id(request), await _json_body(request)), 200

    async def pix(request: Request) -> tuple[object, int]:
        return sim.pix_code(payment_id(request)), 200

    async def line(request: Request) -> tuple[object, int]:
        return sim.identification_field(payment_id(request)), 200

    async def pay(request: Request) -> tuple[object, int]:
        return sim.pay(payment_id(request), await _json_body(request)), 200

    async def pay_again(request: Request) -> tuple[object, int]:
        return sim.pay_again(payment_id(request), _base_url(request)), 201

    async def change(request: Request) -> tuple[object, int]:
        action = str(request.path_params["action"])
        if action not in ("overdue", "refuse", "chargeback", "event"):
            raise SimulatorError(404, "not_found", f"No such control: {action}")
        return sim.change(payment_id(request), action, await _json_body(request)), 200

    async def create_customer(request: Request) -> tuple[object, int]:
        return sim.create_customer(await _json_body(request)), 200

    async def list_customers(request: Request) -> tuple[object, int]:
        return sim.list_customers(request.query_params), 200

    async def get_customer(request: Request) -> tuple[object, int]:
        return sim.get_customer(str(request.path_params["customer_id"])), 200

    async def state(_request: Request) -> tuple[object, int]:
        return sim.state(), 200

    async def reset(_request: Request) -> tuple[object, int]:
        sim.reset()
        return {"reset": True}, 200

    async def outages(request: Request) -> tuple[object, int]:
        return sim.script_outages(await _json_body(request)), 200

    async def resend(_request: Request) -> tuple[object, int]:
        return {"requeued": sim.dispatcher.resend_failed()}, 200

    return [
        Route("/v3/payments", endpoint(create), methods=["POST"]),
        Route("/v3/payments", endpoint(list_payments), methods=["GET"]),
        Route("/v3/payments/{payment_id}", endpoint(get), methods=["GET"]),
        Route("/v3/payments/{payment_id}", endpoint(delete), methods=["DELETE"]),
        Route("/v3/payments/{payment_id}/refund", endpoint(refund), methods=["POST"]),
        Route("/v3/payments/{payment_id}/pixQrCode", endpoint(pix), methods=["GET"]),
        Route("/v3/payments/{payment_id}/identificationField", endpoint(line), methods=["GET"]),
        Route("/v3/customers", endpoint(create_customer), methods=["POST"]),
        Route("/v3/customers", endpoint(list_customers), methods=["GET"]),
        Route("/v3/customers/{customer_id}", endpoint(get_customer), methods=["GET"]),
        Route("/sim/payments/{payment_id}/pay", endpoint(pay), methods=["POST"]),
        Route("/sim/payments/{payment_id}/pay-again", endpoint(pay_again), methods=["POST"]),
        Route("/sim/payments/{payment_id}/{action}", endpoint(change), methods=["POST"]),
        Route("/sim/state", endpoint(state), methods=["GET"]),
        Route("/sim/reset", endpoint(reset), methods=["POST"]),
        Route("/sim/outages", endpoint(outages), methods=["POST"]),
        Route("/sim/webhooks/resend", endpoint(resend), methods=["POST"]),
    ]


def create_simulator_app(
    webhook_url: str = DEFAULT_WEBHOOK_URL,
    webhook_token: str = "",
    *,
    timeout_delay_s: float = DEFAULT_TIMEOUT_DELAY_S,
    api_key: str | None = None,
    clock: Clock | None = None,
    webhook_retry_delays: Sequence[float] = DEFAULT_WEBHOOK_RETRY_DELAYS,
    send_created_events: bool = False,
) -> Starlette:
    """The simulator as an ASGI app. Webhooks go to `webhook_url` (none if empty) with `webhook_token`
    in `asaas-access-token`; `api_key`, if set, is the only access_token accepted."""
    dispatcher = WebhookDispatcher(webhook_url, webhook_token, retry_delays=webhook_retry_delays)
    sim = AsaasSimulator(
        dispatcher,
        clock=clock or SystemClock(),
        timeout_delay_s=timeout_delay_s,
        send_created_events=send_created_events,
    )

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        dispatcher.start()
        try:
            yield
        finally:
            await anyio.to_thread.run_sync(dispatcher.stop)

    app = Starlette(
        routes=_routes(sim),
        middleware=[Middleware(AccessTokenMiddleware, api_key=api_key)],
        lifespan=lifespan,
    )
    app.state.simulator = sim
    return app


def run_simulator(
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    webhook_url: str = DEFAULT_WEBHOOK_URL,
    webhook_token: str = "",
    *,
    api_key: str | None = None,
    timeout_delay_s: float = DEFAULT_TIMEOUT_DELAY_S,
    clock: Clock | None = None,
) -> None:
    """Serve the simulator under uvicorn until stopped (the `regua gateway-sim` command)."""
    app = create_simulator_app(
        webhook_url, webhook_token, timeout_delay_s=timeout_delay_s, api_key=api_key, clock=clock
    )
    uvicorn.run(app, host=host, port=port, log_level="info")
