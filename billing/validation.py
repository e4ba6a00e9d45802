"""Reading typed fields out of decoded JSON, naming the field that is missing or wrong."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import date, datetime
from typing import Any

from billing.clock import parse_instant
from billing.errors import InvalidInput

_MISSING = object()


def _get(payload: Mapping[str, Any], field: str, prefix: str) -> Any:
    if not isinstance(payload, Mapping):
        raise InvalidInput(prefix.rstrip(".") or "body", "must be a JSON object")
    return payload.get(field, _MISSING)


def text(
    payload: Mapping[str, Any],
    field: str,
    *,
    prefix: str = "",
    required: bool = True,
    pattern: re.Pattern[str] | None = None,
    described: str | None = None,
    max_length: int = 200,
) -> str | None:
    """`described` says in words what `pattern` accepts: a person reads it, never the regular expression."""
    value = _get(payload, field, prefix)
    name = prefix + field
    if value is _MISSING or value is None:
        if required:
            raise InvalidInput(name, "is required")
        return None
    if not isinstance(value, str):
        raise InvalidInput(name, "must be a string")
    if not value.strip() and required:
        raise InvalidInput(name, "must not be empty")
    if len(value) > max_length:
        raise InvalidInput(name, f"must be at most {max_length} characters")
    if pattern is not None and not pattern.fullmatch(value):
        raise InvalidInput(name, f"must be {described}" if described else f"must match {pattern.pattern}")
    return value


def integer(
    payload: Mapping[str, Any],
    field: str,
    *,
    prefix: str = "",
    required: bool = True,
    minimum: int | None = None,
    maximum: int | None = None,
    default: int | None = None,
) -> int | None:
    value = _get(payload, field, prefix)
    name = prefix + field
    if value is _MISSING or value is None:
        if required:
            raise InvalidInput(name, "is required")
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(name, "must be an integer")
    if minimum is not None and value < minimum:
        raise InvalidInput(name, f"must be at least {minimum}")
    if maximum is not None and value > maximum:
        raise InvalidInput(name, f"must be at most {maximum}")
    return value


def boolean(payload: Mapping[str, Any], field: str, *, prefix: str = "", default: bool) -> bool:
    value = _get(payload, field, prefix)
    if value is _MISSING or value is None:
        return default
    if not isinstance(value, bool):
        raise InvalidInput(prefix + field, "must be true or false")
    return value


def choice(payload: Mapping[str, Any], field: str, options: tuple[str, ...], *, prefix: str = "") -> str:
    value = text(payload, field, prefix=prefix)
    if value not in options:
        raise InvalidInput(prefix + field, f"must be one of {', '.join(options)}")
    return value


def day(payload: Mapping[str, Any], field: str, *, prefix: str = "", required: bool = True) -> date | None:
    value = text(payload, field, prefix=prefix, required=required, max_length=10)
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise InvalidInput(prefix + field, "must be a date as YYYY-MM-DD") from None


def instant(payload: Mapping[str, Any], field: str, *, prefix: str = "", required: bool = True) -> datetime | None:
    value = text(payload, field, prefix=prefix, required=required, max_length=40)
    if value is None:
        return None
    try:
        return parse_instant(value)
    except ValueError:
        raise InvalidInput(prefix + field, "must be an ISO 8601 instant with its offset") from None


DAY_OR_INSTANT = (
    "must be a date, YYYY-MM-DD (00:00 of that day in the billing time zone), "
    "or an ISO 8601 instant with its UTC offset, YYYY-MM-DDTHH:MM:SS-03:00 or YYYY-MM-DDTHH:MM:SSZ"
)


def day_or_instant(
    payload: Mapping[str, Any],
    field: str,
    start_of_day: Callable[[date], datetime],
    *,
    prefix: str = "",
    required: bool = True,
) -> datetime | None:
    """A bare date, meaning `start_of_day(date)`, or an instant with its offset; the error names both forms."""
    value = _get(payload, field, prefix)
    name = prefix + field
    if value is _MISSING or value is None:
        if required:
            raise InvalidInput(name, "is required")
        return None
    if not isinstance(value, str) or len(value) > 40:
        raise InvalidInput(name, DAY_OR_INSTANT)
    try:
        if len(value.strip()) == 10:
            return start_of_day(date.fromisoformat(value.strip()))
        return parse_instant(value)
    except ValueError:
        raise InvalidInput(name, f"{DAY_OR_INSTANT}, not {value!r}") from None


def string_list(payload: Mapping[str, Any], field: str, *, prefix: str = "", max_items: int = 50) -> list[str]:
    value = _get(payload, field, prefix)
    name = prefix + field
    if value is _MISSING or value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise InvalidInput(name, "must be a list of strings")
    if len(value) > max_items:
        raise InvalidInput(name, f"must have at most {max_items} items")
    return list(value)


def object_list(
    payload: Mapping[str, Any], field: str, *, prefix: str = "", max_items: int = 50
) -> list[Mapping[str, Any]]:
    value = _get(payload, field, prefix)
    name = prefix + field
    if value is _MISSING or value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, Mapping) for item in value):
        raise InvalidInput(name, "must be a list of objects")
    if len(value) > max_items:
        raise InvalidInput(name, f"must have at most {max_items} items")
    return list(value)
