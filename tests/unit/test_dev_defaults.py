"""What `regua dev` and every command beside it assume when nothing is configured."""

from __future__ import annotations

from regua.sandbox.dev import DEV_ASAAS_API_KEY, simulated_gateway, smtp_address, with_dev_defaults
from regua.settings import ASAAS_SANDBOX_URL, Settings


def test_in_dev_without_an_asaas_key_the_gateway_is_the_simulator_at_the_public_url() -> None:
    settings = with_dev_defaults(Settings(env="dev", public_url="http://127.0.0.1:8123"))

    assert settings.asaas_api_url == "http://127.0.0.1:8123/gateway-sim"
    assert settings.asaas_api_key == DEV_ASAAS_API_KEY
    assert simulated_gateway(settings)
    assert settings.asaas_webhook_token
    assert settings.pix_webhook_secret
    assert settings.standard_webhook_secrets[0].startswith("whsec_")


def test_an_asaas_key_means_the_real_asaas_and_set_secrets_are_kept() -> None:
    given = Settings(env="dev", asaas_api_key="$aact_key", asaas_webhook_token="mine")

    settings = with_dev_defaults(given)

    assert (settings.asaas_api_url, settings.asaas_api_key) == (ASAAS_SANDBOX_URL, "$aact_key")
    assert settings.asaas_webhook_token == "mine"
    assert not simulated_gateway(settings)


def test_outside_dev_nothing_is_assumed() -> None:
    for env in ("test", "production"):
        settings = Settings(env=env)
        assert with_dev_defaults(settings) == settings


def test_the_sink_listens_where_regua_sends_its_mail() -> None:
    assert smtp_address("smtp://127.0.0.1:1025") == ("127.0.0.1", 1025)
    assert smtp_address("smtp://user:pass@localhost:2525?starttls=true") == ("localhost", 2525)
