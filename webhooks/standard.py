"""Standard Webhooks (any gateway or relay): HMAC-SHA256 signatures, several secrets, 5-minute tolerance.

The tolerance protects the transport against replays, so it is measured on the wall clock that
`authenticate` is handed, whatever the shared test clock says; the business instant of an event is
its own `data.occurred_at`.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from standardwebhooks.webhooks import Webhook

from billing.clock import parse_instant
from billing.gateway_events import (
    GatewayEvent,
    PaymentChargeback,
    PaymentConfirmed,
    PaymentFailed,
    PaymentPending,
    PaymentRefunded,
)
from webhooks.base import (
    MAX_AMOUNT_CENTS,
    BadPayload,
    Delivery,
    IncomingEvent,
    ToldPaid,
    Unauthorized,
    decode_json,
    identifier,
    require,
)

TOLERANCE = timedelta(minutes=5)
GATEWAY = "standard"
METHODS = ("card", "boleto", "pix")
EVENT_TYPES = (
    "payment.confirmed",
    "payment.pending",
    "payment.failed",
    "payment.refunded",
    "payment.chargeback",
)


class StandardProvider:
    name = "standard"

    def __init__(self, secrets: tuple[str, ...]) -> None:
        self._webhooks = [Webhook(secret) for secret in secrets]

    def authenticate(self, delivery: Delivery, now: datetime) -> None:
        """`now` is the wall clock's: a delivery signed more than 5 minutes from it is refused."""
        message_id = delivery.headers.get("webhook-id", "")
        timestamp_text = delivery.headers.get("webhook-timestamp", "")
        signatures = delivery.headers.get("webhook-signature", "")
        if not (message_id and timestamp_text and signatures and self._webhooks):
            raise Unauthorized("webhook-id, webhook-timestamp and webhook-signature are required")
        try:
            timestamp = datetime.fromtimestamp(int(timestamp_text), tz=UTC)
            body = delivery.body.decode()
        except (ValueError, OverflowError, UnicodeDecodeError):
            raise Unauthorized("webhook-timestamp is not a Unix time, or the body is not UTF-8") from None
        if abs(now - timestamp) > TOLERANCE:
            raise Unauthorized("webhook-timestamp is more than 5 minutes from the real time")
        given = []
        for candidate in signatures.split():
            version, _, signature = candidate.partition(",")
            if version == "v1":
                try:
                    given.append(base64.b64decode(signature, validate=True))
                except (binascii.Error, ValueError):
                    continue
        for webhook in self._webhooks:
            expected = base64.b64decode(webhook.sign(message_id, timestamp, body).partition(",")[2])
            if any(hmac.compare_digest(expected, signature) for signature in given):
                return
        raise Unauthorized("no webhook-signature matches a configured secret")

    def parse(self, delivery: Delivery) -> list[IncomingEvent]:
        payload = decode_json(delivery.body)
        event_type = require(payload, "type", str)
        body = delivery.body.decode()
        key = delivery.headers["webhook-id"]
        if event_type not in EVENT_TYPES:
            return [IncomingEvent(key, event_type[:64], body, ignored=True)]
        _event_from(event_type, payload)  # every required field checked now, while the sender can hear it
        return [IncomingEvent(key, event_type, body)]

    def told_paid(self, event_type: str, body: str) -> ToldPaid | None:
        return None  # normalizing asks nothing of the gateway: every event takes the whole path

    def normalize(self, event_type: str, body: str, received_at: datetime) -> list[GatewayEvent]:
        return [_event_from(event_type, json.loads(body))]


def _event_from(event_type: str, payload: object) -> GatewayEvent:
    charge_id = identifier(require(payload, "data.charge_id", str), "data.charge_id")
    payment_id = identifier(require(payload, "data.payment_id", str), "data.payment_id")
    amount = require(payload, "data.amount_cents", int)
    if not 0 <= amount <= MAX_AMOUNT_CENTS:
        raise BadPayload("data.amount_cents", f"must be 0 to {MAX_AMOUNT_CENTS} centavos")
    method = require(payload, "data.method", str)
    if method not in METHODS:
        raise BadPayload("data.method", f"must be one of {', '.join(METHODS)}")
    occurred_text = require(payload, "data.occurred_at", str)
    try:
        occurred_at = parse_instant(occurred_text)
    except ValueError:
        raise BadPayload("data.occurred_at", "must be an ISO 8601 instant with its offset") from None
    common: dict[str, Any] = {"gateway": GATEWAY, "charge_ref": charge_id, "payment_id": payment_id}
    if event_type == "payment.confirmed":
        return PaymentConfirmed(**common, amount_cents=amount, method=method, paid_at=occurred_at)
    if event_type == "payment.pending":
        return PaymentPending(**common)
    if event_type == "payment.failed":
        code = payload["data"].get("failure_code")  # type: ignore[index]
        if code is not None:
            identifier(code, "data.failure_code")
        return PaymentFailed(**common, failure_code=code)
    if event_type == "payment.refunded":
        refund_id = identifier(require(payload, "data.refund_id", str), "data.refund_id")
        return PaymentRefunded(**common, refund_id=refund_id, amount_cents=amount, refunded_at=occurred_at)
    return PaymentChargeback(**common)
