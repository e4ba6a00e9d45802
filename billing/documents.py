"""CPF and CNPJ: the Brazilian taxpayer numbers every account must carry, checked by their digits."""

from __future__ import annotations

import re

_NOT_DIGITS = re.compile(r"[^0-9]")
_PUNCTUATION = re.compile(r"^[0-9./\- ]+$")


def _check_digit(digits: str, weights: list[int]) -> str:
    remainder = sum(int(d) * w for d, w in zip(digits, weights, strict=True)) % 11
    return "0" if remainder < 2 else str(11 - remainder)


def is_valid_cpf(digits: str) -> bool:
    if len(digits) != 11 or digits == digits[0] * 11:
        return False
    first = _check_digit(digits[:9], list(range(10, 1, -1)))
    second = _check_digit(digits[:10], list(range(11, 1, -1)))
    return digits[9:] == first + second


def is_valid_cnpj(digits: str) -> bool:
    if len(digits) != 14 or digits == digits[0] * 14:
        return False
    weights = [5, 4, 3, 2, 9, 8, 7, 6, 5, 4, 3, 2]
    first = _check_digit(digits[:12], weights)
    second = _check_digit(digits[:13], [6, *weights])
    return digits[12:] == first + second


def normalize_document(text: str) -> str:
    """The digits of a valid CPF or CNPJ ("11.222.333/0001-81" -> "11222333000181"), or ValueError."""
    if not _PUNCTUATION.match(text):
        raise ValueError("a CPF or CNPJ has only digits, dots, slashes and dashes")
    digits = _NOT_DIGITS.sub("", text)
    if len(digits) == 11 and is_valid_cpf(digits):
        return digits
    if len(digits) == 14 and is_valid_cnpj(digits):
        return digits
    raise ValueError("not a valid CPF (11 digits) or CNPJ (14 digits)")
