"""The payment page's link tokens: signed, naming the account, 60 days by regua's clock."""

from __future__ import annotations

from datetime import timedelta

import pytest

from billing.clock import parse_instant
from regua.mailer import portal_link
from regua.portal.tokens import ExpiredToken, InvalidToken, PortalTokens
from regua.settings import Settings

NOW = parse_instant("2026-12-01T00:05:00-03:00")


def test_a_token_names_its_account_until_sixty_days_have_passed() -> None:
    tokens = PortalTokens("a-secret")
    token = tokens.issue("padaria-central", NOW)
    read = tokens.read(token, NOW + timedelta(days=59, hours=23))
    assert read.account_id == "padaria-central"
    assert read.expires_at == NOW + timedelta(days=60)
    with pytest.raises(ExpiredToken):
        tokens.read(token, NOW + timedelta(days=60))


def test_a_token_signed_with_another_key_or_changed_is_refused() -> None:
    token = PortalTokens("a-secret").issue("padaria-central", NOW)
    with pytest.raises(InvalidToken):
        PortalTokens("another-secret").read(token, NOW)
    payload, signature = token.rsplit(".", 1)
    forged = PortalTokens("a-secret")._serializer.dump_payload({"a": "someone-else", "x": 4102444800})
    for changed in (f"{payload}x.{signature}", f"{forged.decode()}.{signature}", "", "...", token[:-1]):
        with pytest.raises(InvalidToken):
            PortalTokens("a-secret").read(changed, NOW)


def test_without_a_secret_key_no_token_is_signed() -> None:
    with pytest.raises(ValueError, match="REGUA_SECRET_KEY"):
        PortalTokens("")


def test_an_email_links_to_the_page_with_a_fresh_token_unless_the_product_has_its_own_portal() -> None:
    settings = Settings(public_url="https://cobranca.example", secret_key="a-secret")
    link = portal_link(settings, "padaria-central", NOW)
    prefix, token = link.rsplit("/", 1)
    assert prefix == "https://cobranca.example/portal"
    assert PortalTokens("a-secret").read(token, NOW).account_id == "padaria-central"
    later = portal_link(settings, "padaria-central", NOW + timedelta(days=1))
    assert later != link
    assert PortalTokens("a-secret").read(later.rsplit("/", 1)[1], NOW + timedelta(days=60, hours=1))

    own = Settings(portal_url="https://app.example/minha-conta/pagamentos", secret_key="a-secret")
    assert portal_link(own, "padaria-central", NOW) == "https://app.example/minha-conta/pagamentos"
