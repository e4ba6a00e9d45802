"""Money in integer centavos: half-up rounding, the 5% auto-debit discount, BRL and gateway decimals."""

from __future__ import annotations

import math
import re
from decimal import ROUND_HALF_UP, Decimal, localcontext
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from billing.money import (
    auto_debit_discount,
    divide_half_up,
    format_brl,
    parse_decimal,
    percent_of,
    to_decimal_string,
)

amounts = st.integers(min_value=0, max_value=10**13)
denominators = st.integers(min_value=1, max_value=10**6)
percents = st.integers(min_value=0, max_value=100)
# Gateways send at most 15 digits of reais.
gateway_amounts = st.integers(min_value=0, max_value=10**17 - 1)


def exact_half_up(numerator: int, denominator: int) -> int:
    """The oracle: the exact quotient, rounded to the nearest integer, halves away from zero."""
    quotient = Fraction(numerator, denominator)
    whole = math.floor(quotient)
    return whole + 1 if quotient - whole >= Fraction(1, 2) else whole


def decimal_percent(amount: int, percent: int) -> int:
    with localcontext() as context:
        context.prec = 60
        exact = Decimal(amount) * Decimal(percent) / Decimal(100)
        return int(exact.quantize(Decimal(1), rounding=ROUND_HALF_UP))


@settings(max_examples=300)
@given(numerator=amounts, denominator=denominators)
def test_dividing_rounds_the_exact_quotient_half_up(numerator: int, denominator: int) -> None:
    assert divide_half_up(numerator, denominator) == exact_half_up(numerator, denominator)


@pytest.mark.parametrize(
    ("numerator", "denominator", "expected"),
    [(1, 2, 1), (3, 2, 2), (5, 2, 3), (2, 4, 1), (1, 3, 0), (2, 3, 1), (0, 7, 0), (14, 7, 2), (999, 1000, 1)],
    ids=lambda value: str(value),
)
def test_dividing_rounds_a_half_up_and_not_to_even(numerator: int, denominator: int, expected: int) -> None:
    assert divide_half_up(numerator, denominator) == expected


@pytest.mark.parametrize(("numerator", "denominator"), [(-1, 2), (1, 0), (1, -2), (-5, -5)])
def test_dividing_refuses_a_negative_numerator_or_a_non_positive_denominator(numerator: int, denominator: int) -> None:
    with pytest.raises(ValueError, match="divide_half_up"):
        divide_half_up(numerator, denominator)


@settings(max_examples=300)
@given(amount=amounts, percent=percents)
def test_a_percentage_is_rounded_half_up_to_the_centavo(amount: int, percent: int) -> None:
    assert percent_of(amount, percent) == decimal_percent(amount, percent)


@settings(max_examples=300)
@given(subtotal=amounts)
def test_the_auto_debit_discount_is_five_percent_rounded_half_up(subtotal: int) -> None:
    discount = auto_debit_discount(subtotal)

    assert discount == decimal_percent(subtotal, 5)
    assert 0 <= discount <= subtotal
    assert abs(Fraction(discount) - Fraction(subtotal, 20)) <= Fraction(1, 2)


def test_the_spec_example_takes_1000_off_19990_leaving_18990() -> None:
    # 5% of 199.90 is 9.995: the half centavo rounds up.
    assert auto_debit_discount(19990) == 1000
    assert 19990 - auto_debit_discount(19990) == 18990


@pytest.mark.parametrize(
    ("subtotal", "discount"),
    [(10, 1), (9, 0), (30, 2), (50, 3), (100, 5), (14186, 709), (59970, 2999), (0, 0)],
    ids=lambda value: str(value),
)
def test_the_auto_debit_discount_of_known_amounts(subtotal: int, discount: int) -> None:
    assert auto_debit_discount(subtotal) == discount


@pytest.mark.parametrize(
    ("cents", "shown"),
    [
        (123456, "R$ 1.234,56"),
        (5, "R$ 0,05"),
        (0, "R$ 0,00"),
        (100, "R$ 1,00"),
        (18990, "R$ 189,90"),
        (99999, "R$ 999,99"),
        (100000, "R$ 1.000,00"),
        (123456789012, "R$ 1.234.567.890,12"),
        (100000000000000, "R$ 1.000.000.000.000,00"),
        (-123456, "-R$ 1.234,56"),
        (-5, "-R$ 0,05"),
    ],
    ids=lambda value: str(value),
)
def test_an_amount_is_shown_in_brazilian_reais(cents: int, shown: str) -> None:
    assert format_brl(cents) == shown


@settings(max_examples=300)
@given(cents=st.integers(min_value=-(10**15), max_value=10**15))
def test_a_shown_amount_groups_thousands_with_dots_and_reads_back_as_the_same_centavos(cents: int) -> None:
    shown = format_brl(cents)

    assert re.fullmatch(r"-?R\$ \d{1,3}(\.\d{3})*,\d{2}", shown), shown
    assert shown.startswith("-") == (cents < 0)
    digits = shown.removeprefix("-").removeprefix("R$ ").replace(".", "").replace(",", "")
    assert int(digits) == abs(cents)


@pytest.mark.parametrize(
    ("text", "cents"),
    [
        ("110.00", 11000),
        ("99.9", 9990),
        ("5", 500),
        ("0.05", 5),
        ("189.90", 18990),
        ("0", 0),
        ("0.5", 50),
        (" 189.90 ", 18990),
        ("999999999999999.99", 99999999999999999),
    ],
    ids=lambda value: repr(value),
)
def test_a_gateway_decimal_is_read_as_centavos(text: str, cents: int) -> None:
    assert parse_decimal(text) == cents


@pytest.mark.parametrize(
    "text",
    [
        "1.999",
        "0.001",
        "110.000",
        "-1",
        "-0.05",
        "+5",
        "1e3",
        "1E3",
        "",
        "   ",
        "1,00",
        "1.234,56",
        "R$ 5",
        ".5",
        "5.",
        "NaN",
        "inf",
        "abc",
        "1 000",
        "1000000000000000.00",
    ],
    ids=lambda value: repr(value),
)
def test_anything_but_a_plain_decimal_with_up_to_two_places_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not a decimal amount"):
        parse_decimal(text)


@pytest.mark.parametrize(
    "text",
    ["\u0665", "\u0661\u0660\u0660.00", "\uff15", "\uff11\uff10.\uff10\uff10", "5.\u0665\u0660"],
    ids=["arabic-indic-5", "arabic-indic-100.00", "fullwidth-5", "fullwidth-10.00", "mixed-5.50"],
)
def test_digits_other_than_ascii_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not a decimal amount"):
        parse_decimal(text)


@pytest.mark.parametrize(
    "value", [5, 5.0, 110.00, None, Decimal("5"), b"5", ["5"]], ids=lambda value: type(value).__name__
)
def test_a_value_that_is_not_a_string_is_refused(value: object) -> None:
    with pytest.raises(ValueError, match="not a decimal amount"):
        parse_decimal(value)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("cents", "text"),
    [(18990, "189.90"), (5, "0.05"), (0, "0.00"), (100, "1.00"), (11000, "110.00"), (123456, "1234.56")],
    ids=lambda value: str(value),
)
def test_centavos_are_written_as_the_decimal_string_gateways_expect(cents: int, text: str) -> None:
    assert to_decimal_string(cents) == text


@settings(max_examples=300)
@given(cents=gateway_amounts)
def test_centavos_survive_a_round_trip_through_a_gateway_decimal(cents: int) -> None:
    text = to_decimal_string(cents)

    assert re.fullmatch(r"\d+\.\d{2}", text), text
    assert parse_decimal(text) == cents
    assert Decimal(text) * 100 == cents


@settings(max_examples=300)
@given(reais=st.integers(min_value=0, max_value=10**15 - 1), centavos=st.integers(min_value=0, max_value=99))
def test_a_two_place_gateway_decimal_survives_a_round_trip_through_centavos(reais: int, centavos: int) -> None:
    text = f"{reais}.{centavos:02d}"

    assert to_decimal_string(parse_decimal(text)) == text
