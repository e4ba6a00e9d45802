"""Configuration from the environment: safe defaults for dev, refusals in production naming the variable."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from billing.clock import FrozenClock, SystemClock
from billing.policy import Policy
from regua.settings import DEV_SECRET_KEY, ConfigError, Settings

PRODUCTION_SERVE = {
    "REGUA_ENV": "production",
    "REGUA_DATABASE_URL": "postgresql://regua@db:5432/regua",
    "REGUA_API_TOKEN": "api-token",
    "REGUA_OPS_TOKEN": "ops-token",
    "REGUA_ASAAS_WEBHOOK_TOKEN": "asaas-token",
    "REGUA_ASAAS_API_KEY": "asaas-key",
    "REGUA_ASAAS_API_URL": "https://api.asaas.com",
    "REGUA_STANDARD_WEBHOOK_SECRETS": "whsec_one",
    "REGUA_BROKER_URL": "redis://redis:6379/0",
    "REGUA_SECRET_KEY": "a-long-random-production-key",
}


def from_env(**variables: str) -> Settings:
    return Settings.from_env(variables, env_file=None)


def without(*names: str) -> dict[str, str]:
    return {name: value for name, value in PRODUCTION_SERVE.items() if name not in names}


def test_an_empty_environment_gives_the_documented_defaults() -> None:
    settings = from_env()

    assert settings.env == "dev"
    assert settings.database_url == "sqlite:///regua.db"
    assert settings.broker_url == ""
    assert settings.smtp_url == "smtp://127.0.0.1:1025"
    assert settings.mail_from == "Financeiro <financeiro@localhost>"
    assert settings.portal_url == ""
    assert settings.public_url == "http://127.0.0.1:8000"
    assert settings.secret_key == DEV_SECRET_KEY
    assert settings.log_format == "text"
    assert settings.timezone == "America/Sao_Paulo"
    assert settings.now is None
    assert settings.api_token == ""
    assert settings.ops_token == ""
    assert settings.standard_webhook_secrets == ()
    assert settings.asaas_webhook_token == ""
    assert settings.asaas_api_key == ""
    assert settings.pix_webhook_secret == ""
    assert settings.max_body_bytes == 262144
    assert settings.tick_seconds == 300
    assert settings.policy == Policy(retry_days=(3, 5), verification_hours=72)
    assert not settings.production


def test_the_default_calendar_is_sao_paulo_and_the_default_clock_is_the_system_clock() -> None:
    settings = from_env()

    assert settings.calendar.zone == ZoneInfo("America/Sao_Paulo")
    assert isinstance(settings.clock(), SystemClock)


def test_the_environment_is_read_only_from_the_mapping_given() -> None:
    settings = from_env(
        REGUA_DATABASE_URL="postgresql://regua@db:5432/regua",
        REGUA_BROKER_URL="redis://redis:6379/0",
        REGUA_STANDARD_WEBHOOK_SECRETS="whsec_old  whsec_new",
        REGUA_ASAAS_API_URL="http://127.0.0.1:9000/",
        REGUA_MAX_BODY_BYTES="1024",
        REGUA_TICK_SECONDS="60",
        REGUA_RETRY_DAYS="4",
        REGUA_VERIFICATION_HOURS="48",
    )

    assert settings.database_url == "postgresql://regua@db:5432/regua"
    assert settings.broker_url == "redis://redis:6379/0"
    assert settings.standard_webhook_secrets == ("whsec_old", "whsec_new")
    assert settings.asaas_api_url == "http://127.0.0.1:9000"
    assert settings.max_body_bytes == 1024
    assert settings.tick_seconds == 60
    assert settings.policy.retry_days == (4,)
    assert settings.policy.verification_hours == 48


@pytest.mark.parametrize("env", ["dev", "test", "production"])
def test_the_three_environments_are_accepted(env: str) -> None:
    assert from_env(REGUA_ENV=env).env == env
    assert from_env(REGUA_ENV=env).production == (env == "production")


def test_an_unknown_environment_is_refused_by_name() -> None:
    with pytest.raises(ConfigError, match="REGUA_ENV"):
        from_env(REGUA_ENV="staging")


@pytest.mark.parametrize("env", ["dev", "test"])
def test_regua_now_freezes_the_clock_outside_production(env: str) -> None:
    settings = from_env(REGUA_ENV=env, REGUA_NOW="2026-12-01T00:05:00-03:00")

    assert settings.now == datetime(2026, 12, 1, 3, 5, tzinfo=UTC)
    clock = settings.clock()
    assert isinstance(clock, FrozenClock)
    assert clock.now() == datetime(2026, 12, 1, 3, 5, tzinfo=UTC)


def test_regua_now_is_refused_in_production() -> None:
    with pytest.raises(ConfigError, match="REGUA_NOW") as refused:
        from_env(**PRODUCTION_SERVE, REGUA_NOW="2026-12-01T00:05:00-03:00")

    assert "production" in str(refused.value)


@pytest.mark.parametrize("text", ["2026-12-01T00:05:00", "yesterday"])
def test_a_regua_now_that_is_not_an_instant_with_offset_is_refused_by_name(text: str) -> None:
    with pytest.raises(ConfigError, match="REGUA_NOW"):
        from_env(REGUA_NOW=text)


@pytest.mark.parametrize("zone", ["America/Sao_Pablo", "Mars/Olympus_Mons", "../etc/passwd"])
def test_an_unknown_time_zone_is_refused_naming_the_variable_and_the_zone(zone: str) -> None:
    with pytest.raises(ConfigError, match="REGUA_TIMEZONE") as refused:
        from_env(REGUA_TIMEZONE=zone)

    assert repr(zone) in str(refused.value)


def test_another_time_zone_gives_another_calendar() -> None:
    settings = from_env(REGUA_TIMEZONE="America/Manaus")

    assert settings.timezone == "America/Manaus"
    assert settings.calendar.zone == ZoneInfo("America/Manaus")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("REGUA_MAX_BODY_BYTES", "big"),
        ("REGUA_MAX_BODY_BYTES", "0"),
        ("REGUA_TICK_SECONDS", "-5"),
        ("REGUA_VERIFICATION_HOURS", "1.5"),
        ("REGUA_RETRY_DAYS", "3;5"),
        ("REGUA_RETRY_DAYS", "1"),
        ("REGUA_RETRY_DAYS", "3,7"),
    ],
)
def test_a_bad_number_is_refused_naming_its_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({name: value}, env_file=None)


def test_a_complete_production_configuration_may_serve_and_work() -> None:
    settings = Settings.from_env(PRODUCTION_SERVE, env_file=None)

    settings.require("serve")
    settings.require("worker")


@pytest.mark.parametrize(
    ("missing", "named"),
    [
        (
            ("REGUA_API_TOKEN", "REGUA_OPS_TOKEN", "REGUA_ASAAS_WEBHOOK_TOKEN", "REGUA_ASAAS_API_KEY"),
            "REGUA_API_TOKEN",
        ),
        (("REGUA_API_TOKEN",), "REGUA_API_TOKEN"),
        (("REGUA_OPS_TOKEN", "REGUA_ASAAS_API_KEY"), "REGUA_OPS_TOKEN"),
        (("REGUA_ASAAS_WEBHOOK_TOKEN",), "REGUA_ASAAS_WEBHOOK_TOKEN"),
        (("REGUA_ASAAS_API_KEY",), "REGUA_ASAAS_API_KEY"),
        (("REGUA_STANDARD_WEBHOOK_SECRETS",), "REGUA_STANDARD_WEBHOOK_SECRETS"),
        (("REGUA_DATABASE_URL",), "REGUA_DATABASE_URL"),
    ],
    ids=lambda value: value if isinstance(value, str) else "+".join(value),
)
def test_serve_in_production_names_the_first_missing_variable(missing: tuple[str, ...], named: str) -> None:
    settings = Settings.from_env(without(*missing), env_file=None)

    with pytest.raises(ConfigError, match=named) as refused:
        settings.require("serve")

    assert "REGUA_ENV=production" in str(refused.value) or "PostgreSQL" in str(refused.value)


def test_serve_in_production_names_the_api_token_first_when_nothing_is_set() -> None:
    settings = from_env(REGUA_ENV="production")

    with pytest.raises(ConfigError, match=r"^REGUA_API_TOKEN is required"):
        settings.require("serve")


def test_a_pix_secret_is_enough_instead_of_standard_webhook_secrets() -> None:
    environ = without("REGUA_STANDARD_WEBHOOK_SECRETS") | {"REGUA_PIX_WEBHOOK_SECRET": "pix-secret"}

    Settings.from_env(environ, env_file=None).require("serve")


@pytest.mark.parametrize(
    ("missing", "named"),
    [
        (("REGUA_ASAAS_API_KEY", "REGUA_BROKER_URL"), "REGUA_ASAAS_API_KEY"),
        (("REGUA_BROKER_URL",), "REGUA_BROKER_URL"),
        (("REGUA_DATABASE_URL",), "REGUA_DATABASE_URL"),
    ],
    ids=lambda value: value if isinstance(value, str) else "+".join(value),
)
def test_a_worker_in_production_names_the_first_missing_variable(missing: tuple[str, ...], named: str) -> None:
    settings = Settings.from_env(without(*missing), env_file=None)

    with pytest.raises(ConfigError, match=named):
        settings.require("worker")


@pytest.mark.parametrize("env", ["dev", "test"])
@pytest.mark.parametrize("command", ["serve", "worker"])
def test_outside_production_nothing_is_required(env: str, command: str) -> None:
    from_env(REGUA_ENV=env).require(command)


def test_production_refuses_to_serve_without_its_own_secret_key() -> None:
    settings = Settings.from_env(without("REGUA_SECRET_KEY"), env_file=None)
    with pytest.raises(ConfigError, match="REGUA_SECRET_KEY"):
        settings.require("serve")


def test_an_unknown_log_format_is_refused_naming_the_variable() -> None:
    with pytest.raises(ConfigError, match="REGUA_LOG_FORMAT"):
        from_env(REGUA_LOG_FORMAT="xml")
