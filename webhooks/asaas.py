"""Asaas: unsigned deliveries authenticated by the `asaas-access-token` header; the payment is re-fetched."""

from __future__ import annotations

import hmac
import json
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

from billing.gateway_events import (
    GatewayEvent,
    PaymentCanceled,
    PaymentChargeback,
    PaymentConfirmed,
    PaymentFailed,
    PaymentPending,
    PaymentRefunded,
)
from billing.ports import PaymentSource
from webhooks.base import (
    BadPayload,
    Delivery,
    IncomingEvent,
    NothingToApply,
    Unauthorized,
    decode_json,
    identifier,
    require,
)

GATEWAY = "asaas"
ASAAS_ZONE = ZoneInfo("America/Sao_Paulo")
"""Asaas writes its timestamps ("2026-12-01 10:15:00") in Brasília time, without an offset."""

PAID = ("CONFIRMED", "RECEIVED", "RECEIVED_IN_CASH")
PENDING = ("PENDING", "AWAITING_RISK_ANALYSIS")
REFUNDED = ("REFUNDED",)
CHARGEBACK = ("CHARGEBACK_REQUESTED", "CHARGEBACK_DISPUTE", "AWAITING_CHARGEBACK_REVERSAL")
METHODS = {"CREDIT_CARD": "card", "BOLETO": "boleto", "PIX": "pix"}

ACTED_ON = (
    "PAYMENT_CONFIRMED",
    "PAYMENT_RECEIVED",
    "PAYMENT_OVERDUE",
    "PAYMENT_REFUNDED",
    "PAYMENT_PARTIALLY_REFUNDED",
    "PAYMENT_CREDIT_CARD_CAPTURE_REFUSED",
    "PAYMENT_REPROVED_BY_RISK_ANALYSIS",
    "PAYMENT_AWAITING_RISK_ANALYSIS",
    "PAYMENT_CHARGEBACK_REQUESTED",
    "PAYMENT_DELETED",
)


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
        payload = decode_json(delivery.body)
        event_id = require(payload, "id", str)
        event = require(payload, "event", str)
        body = delivery.body.decode()
        if event not in ACTED_ON:
            return [IncomingEvent(event_id, event[:64], body, ignored=True)]
        identifier(require(payload, "payment.id", str), "payment.id")
        cents(require(payload, "payment.value", (int, float)), "payment.value")
        reference = payload["payment"].get("externalReference")
        if reference is not None and not isinstance(reference, str):
            raise BadPayload("payment.externalReference", "must be a string")
        if reference:
            identifier(reference, "payment.externalReference")
        return [IncomingEvent(event_id, event, body)]

    def normalize(self, event_type: str, body: str, received_at: datetime) -> list[GatewayEvent]:
        """The event as the re-fetched payment tells it: an unsigned delivery is only a hint."""
        delivery = json.loads(body)
        payment_id = delivery["payment"]["id"]
        if self._payments is None:
            raise RuntimeError("Asaas events need the Asaas API to re-fetch their payment")
        payment = self._payments.fetch_payment(payment_id)
        status = str(payment.get("status", ""))
        now_hint = asaas_instant(delivery.get("dateCreated"), received_at)
        common: dict[str, Any] = {
            "gateway": GATEWAY,
            "charge_ref": payment.get("externalReference") or delivery["payment"].get("externalReference"),
            "payment_id": payment_id,
        }
        if event_type in ("PAYMENT_CONFIRMED", "PAYMENT_RECEIVED"):
            if status in PAID:
                installment = _installment(payment)
                if installment > 1:
                    raise NothingToApply(f"installment {installment} of a card plan: the plan settled with the first")
                return [
                    PaymentConfirmed(
                        **common,
                        amount_cents=cents(payment.get("value"), "payment.value"),
                        method=METHODS.get(str(payment.get("billingType")), "card"),
                        paid_at=now_hint,
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
            return _refunds(payment_id, payment, common, now_hint, whole=full)
        if event_type in ("PAYMENT_CREDIT_CARD_CAPTURE_REFUSED", "PAYMENT_REPROVED_BY_RISK_ANALYSIS"):
            if status in PAID:
                raise NothingToApply(f"webhook says {event_type}, the API says {status}")
            return [PaymentFailed(**common, failure_code=event_type.removeprefix("PAYMENT_").lower())]
        if event_type == "PAYMENT_AWAITING_RISK_ANALYSIS":
            return [PaymentPending(**common)] if status in PENDING else []
        if event_type == "PAYMENT_CHARGEBACK_REQUESTED":
            return [PaymentChargeback(**common)] if status in CHARGEBACK else []
        if event_type == "PAYMENT_DELETED":
            return [PaymentCanceled(**common)]
        raise NothingToApply(f"{event_type}: the régua runs on regua's own calendar")


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
