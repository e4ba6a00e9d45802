"""Asaas: unsigned deliveries authenticated by the `asaas-access-token` header; the payment is re-fetched."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import date, datetime, time
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

from billing.gateway_events import (
    ChargebackReversed,
    GatewayEvent,
    PaymentCanceled,
    PaymentChargeback,
    PaymentConfirmed,
    PaymentFailed,
    PaymentPending,
    PaymentRefunded,
    PaymentRestored,
    PaymentUndone,
    RefundsChanged,
)
from billing.ports import PaymentSource
from billing.refund_progress import GatewayRefundState
from webhooks.base import (
    MAX_KEY_LENGTH,
    BadPayload,
    Delivery,
    IncomingEvent,
    NothingToApply,
    ToldPaid,
    Unauthorized,
    decode_json,
    identifier,
    require,
)

GATEWAY = "asaas"
ASAAS_ZONE = ZoneInfo("America/Sao_Paulo")
"""Asaas writes its timestamps ("2026-12-01 10:15:00") in Brasília time, without an offset."""

PAID = ("CONFIRMED", "RECEIVED", "RECEIVED_IN_CASH", "DUNNING_RECEIVED")
PENDING = ("PENDING", "AWAITING_RISK_ANALYSIS", "AUTHORIZED")
OPEN_AGAIN = ("PENDING", "OVERDUE", "AWAITING_RISK_ANALYSIS")
REFUNDED = ("REFUNDED",)
CHARGEBACK = ("CHARGEBACK_REQUESTED", "CHARGEBACK_DISPUTE", "AWAITING_CHARGEBACK_REVERSAL")
DISPUTE_WON = ("AWAITING_CHARGEBACK_REVERSAL",)
"""Asaas: "disputa vencida, aguardando repasse": the merchant won; the money is on its way back."""
METHODS = {"CREDIT_CARD": "card", "BOLETO": "boleto", "PIX": "pix"}

ACTED_ON = (
    "PAYMENT_CONFIRMED",
    "PAYMENT_RECEIVED",
    "PAYMENT_APPROVED_BY_RISK_ANALYSIS",
    "PAYMENT_RECEIVED_IN_CASH_UNDONE",
    "PAYMENT_OVERDUE",
    "PAYMENT_REFUNDED",
    "PAYMENT_PARTIALLY_REFUNDED",
    "PAYMENT_REFUND_IN_PROGRESS",
    "PAYMENT_REFUND_DENIED",
    "PAYMENT_CREDIT_CARD_CAPTURE_REFUSED",
    "PAYMENT_REPROVED_BY_RISK_ANALYSIS",
    "PAYMENT_AWAITING_RISK_ANALYSIS",
    "PAYMENT_CHARGEBACK_REQUESTED",
    "PAYMENT_CHARGEBACK_DISPUTE",
    "PAYMENT_AWAITING_CHARGEBACK_REVERSAL",
    "PAYMENT_DELETED",
    "PAYMENT_RESTORED",
)
"""The events whose payment is fetched and applied (README: "What each Asaas event does"). Every other
event (PAYMENT_CREATED, PAYMENT_UPDATED, PAYMENT_ANTICIPATED, PAYMENT_BANK_SLIP_VIEWED,
PAYMENT_CHECKOUT_VIEWED, the dunning and split events, anything not about payments) is stored as
ignored: no money moves with them."""


MAX_AMOUNT = Decimal(10) ** 13
"""No payment is this large; below it, quantizing to centavos stays within the decimal context."""


def cents(value: Any, field: str) -> int:
    """Asaas's decimal `value` (a JSON number such as 189.9) as exact centavos."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise BadPayload(field, "must be a number")
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        raise BadPayload(field, "must be a number") from None
    if not amount.is_finite() or amount < 0 or amount >= MAX_AMOUNT or amount != amount.quantize(Decimal("0.01")):
        raise BadPayload(field, "must be a non-negative amount under R$ 10 trillion with at most 2 decimals")
    return int(amount * 100)


def asaas_instant(text: Any, fallback: datetime) -> datetime:
    if not isinstance(text, str):
        return fallback
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return fallback
    return parsed.replace(tzinfo=ASAAS_ZONE) if parsed.tzinfo is None else parsed


class AsaasProvider:
    name = "asaas"

    def __init__(self, token: str, payments: PaymentSource | None = None) -> None:
        self._token = token.encode()
        self._payments = payments

    def authenticate(self, delivery: Delivery, now: datetime) -> None:
        given = delivery.headers.get("asaas-access-token", "").encode()
        if not self._token or not hmac.compare_digest(given, self._token):
            raise Unauthorized("asaas-access-token is missing or wrong")

    def parse(self, delivery: Delivery) -> list[IncomingEvent]:
        """Any authenticated Asaas delivery that is a JSON object with its `event` is stored and answered 200:
        Asaas holds every later event behind one it could not deliver, and pauses the queue after 15
        failures, so a payment regua did not make (any reference, or none) must never be refused."""
        payload = decode_json(delivery.body)
        if not isinstance(payload, dict):
            raise BadPayload("body", "must be a JSON object")
        event = require(payload, "event", str)
        event_id = _event_id(payload.get("id"), delivery.body)
        body = delivery.body.decode()
        if event not in ACTED_ON:
            return [IncomingEvent(event_id, event[:64], body, ignored=True)]
        identifier(require(payload, "payment.id", str), "payment.id")
        cents(require(payload, "payment.value", (int, float)), "payment.value")
        reference = payload["payment"].get("externalReference")
        if reference is not None and not isinstance(reference, str):
            raise BadPayload("payment.externalReference", "must be a string")
        return [IncomingEvent(event_id, event, body)]

    def told_paid(self, event_type: str, body: str) -> ToldPaid | None:
        """A confirmation or receipt of a payment: if regua holds it as confirmed, fetching it again changes
        nothing (a refund or chargeback since has events of its own, each fetched and applied)."""
        if event_type not in ("PAYMENT_CONFIRMED", "PAYMENT_RECEIVED"):
            return None
        payment = json.loads(body)["payment"]
        return ToldPaid(GATEWAY, str(payment["id"]), _our_reference(payment.get("externalReference")))

    def normalize(self, event_type: str, body: str, received_at: datetime) -> list[GatewayEvent]:
        """The event as the re-fetched payment tells it: an unsigned delivery is only a hint."""
        delivery = json.loads(body)
        payment_id = delivery["payment"]["id"]
        if self._payments is None:
            raise RuntimeError("Asaas events need the Asaas API to re-fetch their payment")
        payment = self._payments.fetch_payment(payment_id)
        status = str(payment.get("status", ""))
        told_at = asaas_instant(delivery.get("dateCreated"), received_at)
        common: dict[str, Any] = {
            "gateway": GATEWAY,
            "charge_ref": _our_reference(payment.get("externalReference"))
            or _our_reference(delivery["payment"].get("externalReference")),
            "payment_id": payment_id,
        }
        if event_type in ("PAYMENT_CONFIRMED", "PAYMENT_RECEIVED", "PAYMENT_APPROVED_BY_RISK_ANALYSIS"):
            if status in DISPUTE_WON:
                return [ChargebackReversed(**common)]
            if status in PAID:
                installment = _installment(payment)
                if installment > 1:
                    raise NothingToApply(f"installment {installment} of a card plan: the plan settled with the first")
                return [
                    PaymentConfirmed(
                        **common,
                        amount_cents=cents(payment.get("value"), "payment.value"),
                        method=METHODS.get(str(payment.get("billingType")), "card"),
                        paid_at=paid_at(payment, told_at),
                        whole_charge=installment == 1,
                    )
                ]
            if status not in REFUNDED:
                raise NothingToApply(f"webhook says {event_type}, the API says {status or 'nothing'}")
            event_type = "PAYMENT_REFUNDED"
        if event_type in ("PAYMENT_REFUNDED", "PAYMENT_PARTIALLY_REFUNDED"):
            full = event_type == "PAYMENT_REFUNDED"
            if full and status not in REFUNDED:
                raise NothingToApply(f"webhook says {event_type}, the API says {status or 'nothing'}")
            return _refunds(payment_id, payment, common, told_at, whole=full)
        if event_type in ("PAYMENT_REFUND_IN_PROGRESS", "PAYMENT_REFUND_DENIED"):
            states = _refund_states(payment_id, payment)
            if not any(state.status != "DONE" for state in states):
                raise NothingToApply(f"{event_type}: the payment lists no refund in progress or denied")
            return [RefundsChanged(**common, refunds=states)]
        if event_type == "PAYMENT_RECEIVED_IN_CASH_UNDONE":
            if status in PAID:
                raise NothingToApply(f"webhook says {event_type}, the API says {status}")
            return [PaymentUndone(**common)]
        if event_type in ("PAYMENT_CREDIT_CARD_CAPTURE_REFUSED", "PAYMENT_REPROVED_BY_RISK_ANALYSIS"):
            if status in PAID:
                raise NothingToApply(f"webhook says {event_type}, the API says {status}")
            return [PaymentFailed(**common, failure_code=event_type.removeprefix("PAYMENT_").lower())]
        if event_type == "PAYMENT_AWAITING_RISK_ANALYSIS":
            return [PaymentPending(**common)] if status in PENDING else []
        if event_type == "PAYMENT_CHARGEBACK_REQUESTED":
            if status not in CHARGEBACK:
                return []
            amount = cents(payment.get("value"), "payment.value")
            return [PaymentChargeback(**common, amount_cents=amount, installment=_installment(payment))]
        if event_type == "PAYMENT_AWAITING_CHARGEBACK_REVERSAL":
            return [ChargebackReversed(**common)] if status in DISPUTE_WON or status in PAID else []
        if event_type == "PAYMENT_CHARGEBACK_DISPUTE":
            raise NothingToApply("chargeback disputed: the money stays taken back until the dispute is decided")
        if event_type == "PAYMENT_DELETED":
            return [PaymentCanceled(**common)]
        if event_type == "PAYMENT_RESTORED":
            if payment.get("deleted") is True or status not in OPEN_AGAIN:
                raise NothingToApply(f"webhook says {event_type}, the API says {status or 'nothing'}")
            return [PaymentRestored(**common)]
        raise NothingToApply(f"{event_type}: the régua runs on regua's own calendar")


def _event_id(given: Any, body: bytes) -> str:
    """The event's `id`, or, for an event sent without one, a hash of its body: a redelivery is the same bytes."""
    if given is None:
        return "sha256:" + hashlib.sha256(body).hexdigest()
    if not isinstance(given, str) or not given.strip():
        raise BadPayload("id", "must be a string")
    if len(given) <= MAX_KEY_LENGTH and given.isprintable():
        return given
    return "sha256:" + hashlib.sha256(given.encode("utf-8", "surrogatepass")).hexdigest()


def _our_reference(reference: Any) -> str | None:
    """An externalReference regua could have sent (one of its charge ids); anything else names no charge of ours,
    and the event is then matched by the gateway's payment id, or parked as unmatched."""
    if not isinstance(reference, str) or not reference.strip():
        return None
    if len(reference) > MAX_ID_LENGTH_OURS or not reference.isprintable():
        return None
    return reference


MAX_ID_LENGTH_OURS = 64
"""Longer than any reference regua sends (charge ids and PIX txids are at most 35 characters)."""


def paid_at(payment: dict[str, Any], told_at: datetime) -> datetime:
    """When the customer paid: `clientPaymentDate` (else `confirmedDate`, else `paymentDate`), a date in
    Brasília. The delivery's own instant stands when it falls on that day (it is more precise) or when the
    payment carries no date; a day before it is taken from its start (a boleto paid on day 6 and cleared
    on day 8 was paid on day 6, rule 3.3)."""
    for field in ("clientPaymentDate", "confirmedDate", "paymentDate"):
        day = _date(payment.get(field))
        if day is not None:
            break
    else:
        return told_at
    if day >= told_at.astimezone(ASAAS_ZONE).date():
        return told_at
    return datetime.combine(day, time(0, 0), tzinfo=ASAAS_ZONE)


def _date(text: Any) -> date | None:
    if not isinstance(text, str):
        return None
    try:
        return date.fromisoformat(text[:10])
    except ValueError:
        return None


def _installment(payment: dict[str, Any]) -> int:
    """Which installment of a card plan this payment is (Asaas makes one payment each); 0 if none."""
    if not payment.get("installment") or payment.get("billingType") != "CREDIT_CARD":
        return 0
    number = payment.get("installmentNumber")
    return number if isinstance(number, int) and not isinstance(number, bool) and number > 0 else 1


def _refunds(
    payment_id: str, payment: dict[str, Any], common: dict[str, Any], at: datetime, *, whole: bool
) -> list[GatewayEvent]:
    """One event per refund the payment lists, each at its own amount and keyed by its place in the list:
    every delivery names them all, and the books record each once. A refunded payment that lists none
    gave back all that was left."""
    items = payment.get("refunds")
    listed = [item for item in items if isinstance(item, dict)] if isinstance(items, list) else []
    events: list[GatewayEvent] = [
        PaymentRefunded(
            **common,
            refund_id=f"{payment_id}:refund{position}",
            amount_cents=cents(item.get("value"), "payment.refunds.value"),
            refunded_at=asaas_instant(item.get("dateCreated"), at),
        )
        for position, item in enumerate(listed, start=1)
        if item.get("status") in (None, "DONE")
    ]
    if whole and not listed:
        amount = cents(payment.get("value"), "payment.value")
        events.append(
            PaymentRefunded(**common, refund_id=f"{payment_id}:full", amount_cents=amount, refunded_at=at, whole=True)
        )
    if not events:
        raise NothingToApply("the payment lists no refund made yet")
    return events


def _refund_states(payment_id: str, payment: dict[str, Any]) -> tuple[GatewayRefundState, ...]:
    """Every refund the payment lists, with the gateway's status, keyed by its place as `_refunds` keys it."""
    items = payment.get("refunds")
    listed = [item for item in items if isinstance(item, dict)] if isinstance(items, list) else []
    return tuple(
        GatewayRefundState(
            key=f"{payment_id}:refund{position}",
            amount_cents=cents(item.get("value"), "payment.refunds.value"),
            status=str(item.get("status") or "DONE").upper(),
        )
        for position, item in enumerate(listed, start=1)
    )
