"""CPF and CNPJ: accepted only with the right check digits, with or without their punctuation."""

from __future__ import annotations

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from billing.documents import is_valid_cnpj, is_valid_cpf, normalize_document

VALID_CPFS = ["111.444.777-35", "529.982.247-25", "123.456.789-09"]
VALID_CNPJS = ["11.222.333/0001-81", "11.444.777/0001-61"]


def mod11_digit(digits: list[int], weights_from_right: list[int]) -> int:
    """The oracle: a mod-11 check digit, written as (-sum) mod 11, where 10 counts as 0."""
    total = sum(d * w for d, w in zip(reversed(digits), weights_from_right, strict=False))
    return (-total) % 11 % 10


def complete_cpf(base: list[int]) -> str:
    weights = list(range(2, 12))
    first = mod11_digit(base, weights)
    second = mod11_digit([*base, first], weights)
    return "".join(map(str, [*base, first, second]))


def complete_cnpj(base: list[int]) -> str:
    weights = [2, 3, 4, 5, 6, 7, 8, 9] * 2
    first = mod11_digit(base, weights)
    second = mod11_digit([*base, first], weights)
    return "".join(map(str, [*base, first, second]))


def punctuated_cpf(digits: str) -> str:
    return f"{digits[:3]}.{digits[3:6]}.{digits[6:9]}-{digits[9:]}"


def punctuated_cnpj(digits: str) -> str:
    return f"{digits[:2]}.{digits[2:5]}.{digits[5:8]}/{digits[8:12]}-{digits[12:]}"


cpf_bases = st.lists(st.integers(0, 9), min_size=9, max_size=9)
cnpj_bases = st.lists(st.integers(0, 9), min_size=12, max_size=12)


def test_the_spec_example_cnpj_is_valid() -> None:
    assert normalize_document("11.222.333/0001-81") == "11222333000181"
    assert is_valid_cnpj("11222333000181")


@pytest.mark.parametrize("document", VALID_CPFS)
def test_a_valid_cpf_is_accepted_with_or_without_punctuation(document: str) -> None:
    digits = document.replace(".", "").replace("-", "")

    assert is_valid_cpf(digits)
    assert not is_valid_cnpj(digits)
    assert normalize_document(document) == digits
    assert normalize_document(digits) == digits
    assert normalize_document(f" {digits[:3]} {digits[3:6]} {digits[6:9]} {digits[9:]} ") == digits


@pytest.mark.parametrize("document", VALID_CNPJS)
def test_a_valid_cnpj_is_accepted_with_or_without_punctuation(document: str) -> None:
    digits = document.replace(".", "").replace("/", "").replace("-", "")

    assert is_valid_cnpj(digits)
    assert not is_valid_cpf(digits)
    assert normalize_document(document) == digits
    assert normalize_document(digits) == digits


@pytest.mark.parametrize(
    "document",
    ["111.444.777-36", "111.444.777-45", "529.982.247-52", "123.456.789-00"],
)
def test_a_cpf_with_a_wrong_check_digit_is_refused(document: str) -> None:
    assert not is_valid_cpf(document.replace(".", "").replace("-", ""))
    with pytest.raises(ValueError, match="not a valid CPF"):
        normalize_document(document)


@pytest.mark.parametrize(
    "document",
    ["11.222.333/0001-82", "11.222.333/0001-91", "11.222.333/0001-18", "11.444.777/0001-16"],
)
def test_a_cnpj_with_a_wrong_check_digit_is_refused(document: str) -> None:
    assert not is_valid_cnpj(document.replace(".", "").replace("/", "").replace("-", ""))
    with pytest.raises(ValueError, match="not a valid CPF"):
        normalize_document(document)


@pytest.mark.parametrize("digit", "0123456789")
def test_a_cpf_of_one_repeated_digit_is_refused_even_when_its_check_digits_add_up(digit: str) -> None:
    assert not is_valid_cpf(digit * 11)
    with pytest.raises(ValueError, match="not a valid CPF"):
        normalize_document(digit * 11)


@pytest.mark.parametrize("digit", "0123456789")
def test_a_cnpj_of_one_repeated_digit_is_refused_even_when_its_check_digits_add_up(digit: str) -> None:
    assert not is_valid_cnpj(digit * 14)
    with pytest.raises(ValueError, match="not a valid CPF"):
        normalize_document(digit * 14)


def test_some_repeated_digit_documents_do_pass_the_check_digits() -> None:
    # Why the repeated-digit rule exists: these would pass on their check digits alone.
    assert complete_cpf([1] * 9) == "1" * 11
    assert complete_cpf([0] * 9) == "0" * 11
    assert complete_cnpj([0] * 12) == "0" * 14


@pytest.mark.parametrize(
    "document",
    ["111.444.777-3A", "11.222.333/0001-8l", "CPF 111.444.777-35", "abc", "111,444,777-35", "١١١٤٤٤٧٧٧٣٥"],
)
def test_letters_and_other_characters_are_refused(document: str) -> None:
    with pytest.raises(ValueError, match="only digits"):
        normalize_document(document)


@pytest.mark.parametrize(
    "document",
    ["...", "1114447773", "111444777350", "1122233300018", "112223330001810", "11.222.333/0001"],
)
def test_a_document_with_the_wrong_number_of_digits_is_refused(document: str) -> None:
    with pytest.raises(ValueError, match="not a valid CPF"):
        normalize_document(document)


@pytest.mark.parametrize("blank", ["", " "])
def test_an_empty_document_is_refused(blank: str) -> None:
    with pytest.raises(ValueError, match="CPF"):
        normalize_document(blank)


@pytest.mark.parametrize("digits", ["1114447773", "111444777350", ""])
def test_a_cpf_needs_exactly_eleven_digits(digits: str) -> None:
    assert not is_valid_cpf(digits)


@pytest.mark.parametrize("digits", ["1122233300018", "112223330001810", ""])
def test_a_cnpj_needs_exactly_fourteen_digits(digits: str) -> None:
    assert not is_valid_cnpj(digits)


@settings(max_examples=300)
@given(base=cpf_bases)
def test_any_cpf_with_correct_check_digits_is_accepted(base: list[int]) -> None:
    digits = complete_cpf(base)
    assume(len(set(digits)) > 1)

    assert is_valid_cpf(digits)
    assert normalize_document(digits) == digits
    assert normalize_document(punctuated_cpf(digits)) == digits


@settings(max_examples=300)
@given(base=cnpj_bases)
def test_any_cnpj_with_correct_check_digits_is_accepted(base: list[int]) -> None:
    digits = complete_cnpj(base)
    assume(len(set(digits)) > 1)

    assert is_valid_cnpj(digits)
    assert normalize_document(digits) == digits
    assert normalize_document(punctuated_cnpj(digits)) == digits


@settings(max_examples=300)
@given(base=cpf_bases, position=st.sampled_from([9, 10]), shift=st.integers(1, 9))
def test_a_cpf_with_either_check_digit_changed_is_refused(base: list[int], position: int, shift: int) -> None:
    digits = list(complete_cpf(base))
    digits[position] = str((int(digits[position]) + shift) % 10)
    wrong = "".join(digits)

    assert not is_valid_cpf(wrong)
    with pytest.raises(ValueError, match="not a valid CPF"):
        normalize_document(punctuated_cpf(wrong))


@settings(max_examples=300)
@given(base=cnpj_bases, position=st.sampled_from([12, 13]), shift=st.integers(1, 9))
def test_a_cnpj_with_either_check_digit_changed_is_refused(base: list[int], position: int, shift: int) -> None:
    digits = list(complete_cnpj(base))
    digits[position] = str((int(digits[position]) + shift) % 10)
    wrong = "".join(digits)

    assert not is_valid_cnpj(wrong)
    with pytest.raises(ValueError, match="not a valid CPF"):
        normalize_document(punctuated_cnpj(wrong))
