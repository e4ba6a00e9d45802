"""Asaas's wire format: money as JSON numbers in reais, request bodies, error answers, declines and payments read.

A refused card is HTTP 400 with no payment created (Asaas does not persist a declined charge). Asaas
sends one generic code for every refusal (`invalid_creditCard`) and the reason only in the free-text
`description`, so declines are classified on the code and description together (lower case, accents
removed), the hard signs first:

    reason              matched in the code or the description              kind
    ------------------  --------------------------------------------------  ----
    expired             expired, expirad-, vencid-, validade                hard
    stolen_or_lost      stolen, lost, roubad-, furtad-, perda, perdid-,     hard
                        extraviad-
    invalid_token       token (an unknown or another customer's token)      hard
    invalid_card        invalid card number, cartao invalido,               hard
                        numero do/de cartao invalido
    card_canceled       cartao cancelado, canceled card, bloquead-, blocked hard
    insufficient_funds  insufficient, insuficiente, limite, limit           soft
    generic             anything else ("Transacao nao autorizada",          soft
                        "tente novamente")

A 400 counts as a refusal when its code mentions creditCard or its text says the transaction was not
authorized, refused, denied or declined; any other 400 (invalid customer, value, due date) is a
GatewayRejected. An unknown reason is soft on purpose: the dunning schedule retries it twice, then stops.

Hard declines are never retried with the same card; soft ones are retried on day 3 and day 5.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Mapping
from datetime import date
from decimal import Decimal
from typing import Any
from urllib.parse import quote

import httpx

from billing.money import json_cents, to_decimal_string
from billing.ports import GatewayPayment, GatewayRejected, GatewayUnavailable, PaymentNotFound

_HARD_SIGNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("expired", re.compile(r"expired|expirad|vencid|validade")),
    ("stolen_or_lost", re.compile(r"stolen|\blost\b|roubad|furtad|\bperda\b|perdid|extraviad")),
    ("invalid_token", re.compile(r"token")),
    ("invalid_card", re.compile(r"invalid card number|cartao invalido|numero (do|de) cartao invalido")),
    ("card_canceled", re.compile(r"cartao cancelado|cancell?ed card|card cancell?ed|bloquead|blocked")),
)
_SOFT_SIGNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("insufficient_funds", re.compile(r"insufficient|insuficiente|\blimite?\b")),
)
_REFUSAL = re.compile(r"creditcard|nao autorizad|not authori[sz]ed|recusad|negad|declined|refused")


def classify_decline(code: str, description: str) -> tuple[bool, str]:
    """(hard, reason) for a card refusal, from the table in this module's docstring."""
    text = _plain(f"{code} {description}")
    for reason, pattern in _HARD_SIGNS:
        if pattern.search(text):
            return True, reason
    for reason, pattern in _SOFT_SIGNS:
        if pattern.search(text):
            return False, reason
    return False, "generic"


def _plain(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(char for char in decomposed if not unicodedata.combining(char)).lower()


def cents_from_json(value: object) -> int:
    """A JSON money value (189.9, 5, "189.90") as centavos, exactly; anything else is refused."""
    return json_cents(value)


def money(amount_cents: int) -> Decimal:
    """Centavos as the exact decimal that `encode_json` writes as a JSON number (18990 -> 189.90)."""
    return Decimal(to_decimal_string(amount_cents))


def encode_json(value: object) -> bytes:
    """JSON with Decimal written digit for digit as a number; floats are refused (money never floats)."""
    return _encode(value).encode("utf-8")


def _encode(value: object) -> str:
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"not a JSON number: {value}")
        return format(value, "f")
    if isinstance(value, float):
        raise TypeError("a float cannot carry money exactly: pass a Decimal")
    if isinstance(value, Mapping):
        items = []
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"JSON keys are strings, not {key!r}")
            items.append(f"{json.dumps(key, ensure_ascii=False)}:{_encode(item)}")
        return "{" + ",".join(items) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(_encode(item) for item in value) + "]"
    if value is None or isinstance(value, bool | int | str):
        return json.dumps(value, ensure_ascii=False)
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")


def _segment(identifier: str) -> str:
    if not identifier:
        raise ValueError("an empty payment id")
    return quote(identifier, safe="")


def _json_object(response: httpx.Response) -> Mapping[str, Any]:
    try:
        data = response.json()
    except ValueError:
        raise GatewayUnavailable(
            f"Asaas answered HTTP {response.status_code} with no JSON", outcome_unknown=True
        ) from None
    if not isinstance(data, dict):
        raise GatewayUnavailable("Asaas answered with JSON that is not an object", outcome_unknown=True)
    return data


def _errors(response: httpx.Response) -> tuple[tuple[str, str], ...]:
    try:
        data = response.json()
    except ValueError:
        return ()
    items = data.get("errors") if isinstance(data, dict) else None
    if not isinstance(items, list):
        return ()
    return tuple(
        (str(item.get("code") or ""), str(item.get("description") or "")) for item in items if isinstance(item, dict)
    )


def _rejection(response: httpx.Response, what: str) -> GatewayRejected:
    errors = _errors(response)
    detail = "; ".join(f"{code}: {text}" for code, text in errors) or response.reason_phrase
    message = f"{what}: Asaas answered HTTP {response.status_code} ({detail})"
    kind = PaymentNotFound if response.status_code == 404 else GatewayRejected
    return kind(message, status_code=response.status_code, errors=errors)


def _text(data: Mapping[str, Any], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value:
        raise GatewayUnavailable(f"Asaas's answer lacks {key}", outcome_unknown=True)
    return value


def _optional_text(data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    return value if isinstance(value, str) and value else None


def _date(data: Mapping[str, Any], *keys: str) -> date | None:
    for key in keys:
        value = data.get(key)
        if isinstance(value, str) and value:
            try:
                return date.fromisoformat(value[:10])  # "2026-12-01" or "2026-12-01 10:28:40"
            except ValueError:
                raise GatewayUnavailable(f"Asaas sent {key}={value!r}", outcome_unknown=True) from None
    return None


def _installment_number(payment: GatewayPayment) -> int:
    number = payment.raw.get("installmentNumber")
    return number if isinstance(number, int) and not isinstance(number, bool) else 0


def _payment(data: Mapping[str, Any]) -> GatewayPayment:
    try:
        amount = cents_from_json(data.get("value"))
    except ValueError as error:
        raise GatewayUnavailable(f"payment with an unreadable value: {error}", outcome_unknown=True) from None
    reference = data.get("externalReference")
    installment = data.get("installment")
    return GatewayPayment(
        id=_text(data, "id"),
        status=_text(data, "status"),
        amount_cents=amount,
        billing_type=_optional_text(data, "billingType") or "UNDEFINED",
        external_reference=reference if isinstance(reference, str) and reference else None,
        due_date=_date(data, "dueDate"),
        confirmed_on=_date(data, "confirmedDate"),
        paid_on=_date(data, "clientPaymentDate", "paymentDate"),  # the day the customer paid; paymentDate is the credit
        invoice_url=_optional_text(data, "invoiceUrl"),
        deleted=data.get("deleted") is True,
        installment_id=installment if isinstance(installment, str) and installment else None,
        raw=dict(data),
    )
