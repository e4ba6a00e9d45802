"""PIX (Banco Central API v2): batches `{"pix": [...]}` posted to the registered URL (+ "/pix"), `hmac` query."""

from __future__ import annotations

import hmac
import json
from datetime import datetime
from typing import Any

from billing.clock import parse_instant
from billing.gateway_events import GatewayEvent, PaymentConfirmed, PaymentRefunded
from billing.money import parse_decimal
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

GATEWAY = "pix"
MAX_ITEMS = 1000
MAX_REFUND_ID = 64
"""The Banco Central's devolução ids are 1 to 35 characters; regua keeps them as `pix:<id>`."""
MAX_STATUS = 32


class PixProvider:
    name = "pix"

    def __init__(self, secret: str) -> None:
        self._secret = secret.encode()

    def authenticate(self, delivery: Delivery, now: datetime) -> None:
        given = delivery.query.get("hmac", "").encode()
        if not self._secret or not hmac.compare_digest(given, self._secret):
            raise Unauthorized("the hmac query parameter is missing or wrong")

    def parse(self, delivery: Delivery) -> list[IncomingEvent]:
        payload = decode_json(delivery.body)
        items = require(payload, "pix", list)
        if not items or len(items) > MAX_ITEMS:
            raise BadPayload("pix", f"must hold 1 to {MAX_ITEMS} items")
        events = []
        for index, item in enumerate(items):
            prefix = f"pix[{index}]"
            if not isinstance(item, dict):
                raise BadPayload(prefix, "must be an object")
            end_to_end = identifier(item.get("endToEndId"), f"{prefix}.endToEndId")
            _amount(item, "valor", prefix)
            _instant(item.get("horario"), f"{prefix}.horario")
            if item.get("txid") is not None:
                identifier(item["txid"], f"{prefix}.txid")
            refunds = _devolucoes(item.get("devolucoes"), f"{prefix}.devolucoes")
            plain = {key: value for key, value in item.items() if key != "devolucoes"}
            events.append(IncomingEvent(end_to_end, "pix.received", json.dumps(plain, ensure_ascii=False)))
            for position, refund in enumerate(refunds):
                where = f"{prefix}.devolucoes[{position}]"
                if not isinstance(refund, dict):
                    raise BadPayload(where, "must be an object")
                refund_id = identifier(refund.get("id"), f"{where}.id", MAX_REFUND_ID)
                status = identifier(refund.get("status"), f"{where}.status", MAX_STATUS)
                _amount(refund, "valor", where)
                _moments(refund.get("horario"), f"{where}.horario")
                single = {**plain, "devolucoes": [refund]}
                events.append(
                    IncomingEvent(
                        f"devolucao:{refund_id}:{status}",
                        "pix.refunded",
                        json.dumps(single, ensure_ascii=False),
                        ignored=status != "DEVOLVIDO",
                    )
                )
        return events

    def told_paid(self, event_type: str, body: str) -> ToldPaid | None:
        return None  # normalizing asks nothing of the gateway: every event takes the whole path

    def normalize(self, event_type: str, body: str, received_at: datetime) -> list[GatewayEvent]:
        item = json.loads(body)
        common: dict[str, Any] = {
            "gateway": GATEWAY,
            "charge_ref": item.get("txid"),
            "payment_id": item["endToEndId"],
        }
        if event_type == "pix.received":
            return [
                PaymentConfirmed(
                    **common,
                    amount_cents=parse_decimal(item["valor"]),
                    method="pix",
                    paid_at=parse_instant(item["horario"]),
                )
            ]
        refund = item["devolucoes"][0]
        moments = refund.get("horario") or {}
        at = moments.get("liquidacao") or moments.get("solicitacao") or item["horario"]
        return [
            PaymentRefunded(
                **common,
                refund_id=f"pix:{refund['id']}",
                amount_cents=parse_decimal(refund["valor"]),
                refunded_at=parse_instant(at),
            )
        ]


def _devolucoes(value: Any, field: str) -> list[Any]:
    """The refunds of an item as a list: absent or null is none, and one object alone is a list of one.

    The Banco Central's own callback example (`pixWebhook1` in the PIX API's OpenAPI document)
    writes `devolucoes` as a single object where its schema names an array; PSPs copy examples.
    """
    if value is None:
        return []
    if isinstance(value, dict):
        return [value]
    if not isinstance(value, list):
        raise BadPayload(field, "must be a list of devoluções (or one devolução)")
    return value


def _amount(item: dict[str, Any], field: str, prefix: str) -> int:
    value = item.get(field)
    try:
        amount = parse_decimal(value) if isinstance(value, str) else parse_decimal("")
    except ValueError:
        raise BadPayload(f"{prefix}.{field}", 'must be a decimal string such as "110.00"') from None
    if amount > MAX_AMOUNT_CENTS:
        raise BadPayload(f"{prefix}.{field}", "is over the largest amount regua keeps")
    return amount


def _moments(value: Any, field: str) -> None:
    """A devolução's `horario`: an object whose `solicitacao` and `liquidacao`, when given, are instants."""
    if value is None:
        return
    if not isinstance(value, dict):
        raise BadPayload(field, "must be an object with solicitacao and liquidacao")
    for moment in ("solicitacao", "liquidacao"):
        if value.get(moment) is not None:
            _instant(value[moment], f"{field}.{moment}")


def _instant(value: Any, field: str) -> datetime:
    if not isinstance(value, str):
        raise BadPayload(field, "is required and must be an ISO 8601 instant")
    try:
        return parse_instant(value)
    except ValueError:
        raise BadPayload(field, "must be an ISO 8601 instant with its offset") from None
