"""What every part of the simulated Asaas shares: its errors and JSON, request parsing, its calendar."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from datetime import date, timedelta
from decimal import Decimal
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from starlette.requests import Request
from starlette.responses import Response

from regua.gateway.asaas import cents_from_json, encode_json

ASAAS_TIMEZONE = ZoneInfo("America/Sao_Paulo")
T = TypeVar("T")


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


def error_response(error: SimulatorError) -> Response:
    body = {"errors": [{"code": error.code, "description": error.description}]}
    return AsaasJSONResponse(body, status_code=error.status_code)


async def json_body(request: Request) -> Mapping[str, Any]:
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


def positive_cents(value: object, name: str) -> int:
    try:
        cents = cents_from_json(value)
    except ValueError:
        cents = 0
    if cents <= 0:
        raise SimulatorError(400, f"invalid_{name}", f"O campo {name} deve ser um valor positivo.")
    return cents


def optional_date(value: object, name: str) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise SimulatorError(400, f"invalid_{name}", f"{name} deve estar no formato AAAA-MM-DD.") from None


def int_param(params: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    try:
        value = int(params.get(name, default))
    except ValueError:
        raise SimulatorError(400, f"invalid_{name}", f"{name} deve ser um número.") from None
    return max(low, min(high, value))


def add_months(day: date, months: int) -> date:
    month_index = day.month - 1 + months
    year, month = day.year + month_index // 12, month_index % 12 + 1
    for candidate in (day.day, 30, 29, 28):
        try:
            return date(year, month, min(day.day, candidate))
        except ValueError:
            continue
    raise AssertionError("unreachable: every month has 28 days")


def business_day_from(day: date) -> date:
    """`day`, or the Monday after it when it falls on a weekend (national holidays are not modelled)."""
    while day.weekday() >= 5:
        day += timedelta(days=1)
    return day


def iso(day: date | None) -> str | None:
    return day.isoformat() if day else None


def listing(
    found: Sequence[T], params: Mapping[str, str], render: Callable[[T], dict[str, object]]
) -> dict[str, object]:
    """Asaas's list envelope over the page of `found` (already newest first) that `params` ask for."""
    offset = int_param(params, "offset", 0, 0, 1_000_000)
    limit = int_param(params, "limit", 10, 1, 100)
    return {
        "object": "list",
        "hasMore": offset + limit < len(found),
        "totalCount": len(found),
        "limit": limit,
        "offset": offset,
        "data": [render(item) for item in found[offset : offset + limit]],
    }
