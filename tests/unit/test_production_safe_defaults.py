"""Defaults that are safe in production: the gateway's URL is named there, and a bad email is told in words."""

from __future__ import annotations

import pytest

from billing.accounts import AccountInput
from billing.calendar import BillingCalendar
from billing.errors import InvalidInput
from regua.settings import ConfigError, Settings

PRODUCTION = {
    "REGUA_ENV": "production",
    "REGUA_DATABASE_URL": "postgresql://regua@db:5432/regua",
    "REGUA_API_TOKEN": "api-token",
    "REGUA_OPS_TOKEN": "ops-token",
    "REGUA_ASAAS_WEBHOOK_TOKEN": "asaas-token",
    "REGUA_ASAAS_API_KEY": "asaas-key",
    "REGUA_PIX_WEBHOOK_SECRET": "pix-secret",
    "REGUA_BROKER_URL": "redis://redis:6379/0",
    "REGUA_SECRET_KEY": "a-long-random-production-key",
}


def test_the_asaas_api_url_defaults_to_asaas_s_sandbox() -> None:
    assert Settings.from_env({}, env_file=None).asaas_api_url == "https://api-sandbox.asaas.com"


@pytest.mark.parametrize("command", ["serve", "worker"])
def test_production_refuses_to_start_on_the_default_sandbox_url_naming_the_variable(command: str) -> None:
    settings = Settings.from_env(PRODUCTION, env_file=None)

    with pytest.raises(ConfigError, match=r"^REGUA_ASAAS_API_URL is required when REGUA_ENV=production") as refused:
        settings.require(command)

    assert "https://api.asaas.com" in str(refused.value)


@pytest.mark.parametrize("url", ["https://api.asaas.com", "https://api-sandbox.asaas.com"])
def test_production_starts_once_the_url_is_set_even_to_the_sandbox_on_purpose(url: str) -> None:
    settings = Settings.from_env(PRODUCTION | {"REGUA_ASAAS_API_URL": url}, env_file=None)

    settings.require("serve")
    settings.require("worker")
    assert settings.asaas_api_url == url


def test_an_empty_asaas_api_url_is_not_naming_one() -> None:
    settings = Settings.from_env(PRODUCTION | {"REGUA_ASAAS_API_URL": "  "}, env_file=None)
    with pytest.raises(ConfigError, match="REGUA_ASAAS_API_URL"):
        settings.require("serve")


@pytest.mark.parametrize("env", ["dev", "test"])
def test_outside_production_the_sandbox_default_needs_nothing(env: str) -> None:
    Settings.from_env({"REGUA_ENV": env}, env_file=None).require("serve")


@pytest.mark.parametrize("email", ["ana", "ana@padaria", "ana @padaria.example", "<ana@padaria.example>"])
def test_a_bad_email_address_is_refused_in_plain_words_not_a_regular_expression(email: str) -> None:
    payload = {
        "name": "Padaria Central Ltda",
        "document": "11.222.333/0001-81",
        "contacts": [{"email": email, "name": "Ana", "manage_payments": True}],
    }
    with pytest.raises(InvalidInput) as refused:
        AccountInput.parse(payload, BillingCalendar.named("America/Sao_Paulo"))

    assert str(refused.value) == "contacts[0].email: must be an email address such as ana@empresa.com.br"
    assert not any(sign in str(refused.value) for sign in ("[^", "\\s", "+@"))
