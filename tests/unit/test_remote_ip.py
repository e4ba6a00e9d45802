"""The customer's IP a card comes with: one spelling per address, required on every card charge, told plainly."""

from __future__ import annotations

from datetime import date

import pytest

from billing.errors import InvalidInput
from billing.ports import CardCharge, ManualCharge
from billing.remote_ip import MISSING_DECLINE, normalize_ip, read_remote_ip
from regua.mail import render_email
from tests.unit.test_mail_render import auto_debit, flat


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("203.0.113.7", "203.0.113.7"),
        ("::ffff:203.0.113.7", "203.0.113.7"),
        ("2001:0DB8:0000:0000:0000:0000:0000:0001", "2001:db8::1"),
        ("\t198.51.100.4\n", "198.51.100.4"),
    ],
)
def test_an_address_is_kept_in_one_spelling(given: str, kept: str) -> None:
    assert normalize_ip(given) == kept


@pytest.mark.parametrize("given", ["", "localhost", "203.0.113.256", "203.0.113.7/32", "fe80::1%eth0", "1.2.3"])
def test_anything_else_is_not_an_address(given: str) -> None:
    with pytest.raises(ValueError, match="IPv6 address"):
        normalize_ip(given)


def test_a_request_without_remote_ip_has_none_and_a_wrong_one_is_named() -> None:
    assert read_remote_ip({}) is None
    assert read_remote_ip({"remote_ip": None}) is None
    with pytest.raises(InvalidInput) as refused:
        read_remote_ip({"remote_ip": "203.0.113.7, 10.0.0.1"})
    assert refused.value.field == "remote_ip"


def card(**changes: object) -> CardCharge:
    fields: dict[str, object] = {
        "charge_id": "chg_1",
        "customer_id": "cus_1",
        "amount_cents": 18990,
        "due_date": date(2026, 12, 1),
        "card_token": "tok_ok",
        "remote_ip": "203.0.113.7",
    }
    return CardCharge(**{**fields, **changes})  # type: ignore[arg-type]


@pytest.mark.parametrize("remote_ip", ["", "server", "203.0.113"])
def test_a_card_charge_cannot_be_made_without_the_customers_ip(remote_ip: str) -> None:
    assert card().remote_ip == "203.0.113.7"
    with pytest.raises(ValueError, match="IPv6 address"):
        card(remote_ip=remote_ip)
    with pytest.raises(TypeError):
        CardCharge("chg_1", "cus_1", 18990, date(2026, 12, 1), "tok_ok")  # type: ignore[call-arg]


def test_a_card_page_payment_takes_an_ip_only_when_it_is_one() -> None:
    page = ManualCharge("chg_1", "cus_1", 18990, date(2026, 12, 1), "card", remote_ip="2001:db8::1")
    assert page.remote_ip == "2001:db8::1"
    assert ManualCharge("chg_1", "cus_1", 18990, date(2026, 12, 1), "pix").remote_ip is None
    with pytest.raises(ValueError, match="IPv6 address"):
        ManualCharge("chg_1", "cus_1", 18990, date(2026, 12, 1), "card", remote_ip="not-an-ip")


def test_the_failed_payment_email_for_a_card_saved_without_an_ip_asks_for_another_card() -> None:
    rendered = render_email(auto_debit("payment_failed", failure_reason=MISSING_DECLINE))

    text = flat(rendered.text)
    assert rendered.subject == "Pagamento não aprovado: atualize sua forma de pagamento"
    assert "Não faremos novas tentativas com este cartão" in text
    assert "o cartão salvo precisa ser cadastrado de novo" in text
    assert MISSING_DECLINE not in text
