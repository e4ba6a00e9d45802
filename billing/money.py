"""Money as integer centavos: one rounding rule (half-up), the auto-debit discount, BRL formatting."""

from __future__ import annotations

import math
import re
from decimal import Decimal, InvalidOperation

AUTO_DEBIT_DISCOUNT_PERCENT = 5

_DECIMAL = re.compile(r"([0-9]{1,15})(?:\.([0-9]{1,2}))?")


def divide_half_up(numerator: int, denominator: int) -> int:
    """numerator / denominator rounded half-up, for non-negative integers (no floats anywhere)."""
    if numerator < 0 or denominator <= 0:
        raise ValueError("divide_half_up takes a non-negative numerator and a positive denominator")
    return (2 * numerator + denominator) // (2 * denominator)


def percent_of(amount_cents: int, percent: int) -> int:
    """percent% of an amount in centavos, rounded half-up to the centavo."""
    return divide_half_up(amount_cents * percent, 100)


def auto_debit_discount(subtotal_cents: int) -> int:
    """The 5% that a card auto-debit subscription takes off every invoice."""
    return percent_of(subtotal_cents, AUTO_DEBIT_DISCOUNT_PERCENT)


def format_brl(amount_cents: int) -> str:
    """R$ 1.234,56: the way amounts are shown to customers."""
    sign = "-" if amount_cents < 0 else ""
    reais, centavos = divmod(abs(amount_cents), 100)
    grouped = f"{reais:,}".replace(",", ".")
    return f"{sign}R$ {grouped},{centavos:02d}"


def parse_decimal(text: str) -> int:
    """A gateway's decimal string ("110.00", "99.9", "5") as centavos; anything else is refused."""
    match = _DECIMAL.fullmatch(text.strip()) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f"not a decimal amount: {text!r}")
    reais, fraction = match.group(1), (match.group(2) or "").ljust(2, "0")
    return int(reais) * 100 + int(fraction)


def to_decimal_string(amount_cents: int) -> str:
    """Centavos as the decimal string that gateway APIs expect ("189.90"); never a negative amount."""
    if amount_cents < 0:
        raise ValueError("gateway amounts are never negative")
    reais, centavos = divmod(amount_cents, 100)
    return f"{reais}.{centavos:02d}"


def json_cents(value: object) -> int:
    """A JSON money value (189.9, 5, "189.90") as centavos, exactly; anything else is refused (ValueError)."""
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        raise ValueError(f"not a money value: {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"not a money value: {value!r}")
    if isinstance(value, str):
        return parse_decimal(value)
    try:
        # str() of a float is the shortest text that reads back as the same float: for money
        # (at most 15 significant digits) it is exactly the literal the gateway wrote.
        text = format(Decimal(str(value)), "f")
    except InvalidOperation:
        raise ValueError(f"not a money value: {value!r}") from None
    return parse_decimal(text)
