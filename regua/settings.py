"""Configuration from the environment (and a `.env` file), with safe defaults for `regua dev`."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dotenv import dotenv_values

from billing.calendar import BillingCalendar
from billing.clock import Clock, FrozenClock, SystemClock, parse_instant
from billing.policy import Policy

ENVIRONMENTS = ("dev", "test", "production")
ASAAS_SANDBOX_URL = "https://api-sandbox.asaas.com"
ASAAS_PRODUCTION_URL = "https://api.asaas.com"
DEV_SECRET_KEY = "regua-dev-secret-key-not-for-production"


class ConfigError(Exception):
    """A setting that is missing or wrong; the message names the variable."""


@dataclass(frozen=True)
class Settings:
    env: str = "dev"
    database_url: str = "sqlite:///regua.db"
    broker_url: str = ""
    smtp_url: str = "smtp://127.0.0.1:1025"
    mail_from: str = "Financeiro <financeiro@localhost>"
    portal_url: str = ""
    """Empty: regua's own payment page, /portal/{signed token}."""
    public_url: str = "http://127.0.0.1:8000"
    """Where customers and gateways reach this service (links in emails are built on it)."""
    secret_key: str = DEV_SECRET_KEY
    """Signs the payment page's tokens and the ops forms' CSRF tokens. Outside production a fixed, known
    key; in production from_env leaves it empty unless REGUA_SECRET_KEY is set (and serve refuses)."""
    log_format: str = "text"
    timezone: str = "America/Sao_Paulo"
    now: datetime | None = None
    api_token: str = ""
    ops_token: str = ""
    standard_webhook_secrets: tuple[str, ...] = ()
    asaas_webhook_token: str = ""
    asaas_api_url: str = ASAAS_SANDBOX_URL
    asaas_api_key: str = ""
    pix_webhook_secret: str = ""
    max_body_bytes: int = 262144
    tick_seconds: int = 300
    gateway_max_rps: float = 50.0
    """Requests a second to the gateway, one pace for every process (shared through the broker's Redis)."""
    policy: Policy = field(default_factory=Policy)
    explicit: frozenset[str] = frozenset()
    """The variables (without `REGUA_`) that the environment or `.env` set, not left to their defaults."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, *, env_file: Path | None = Path(".env")) -> Settings:
        """Read REGUA_* variables; a `.env` file fills in what the environment does not say."""
        values: dict[str, str] = {}
        if env_file is not None and env_file.is_file():
            values.update({k: v for k, v in dotenv_values(env_file).items() if v is not None})
        values.update(os.environ if environ is None else environ)

        def get(name: str, default: str = "") -> str:
            return values.get(f"REGUA_{name}", default).strip()

        env = get("ENV", "dev")
        if env not in ENVIRONMENTS:
            raise ConfigError(f"REGUA_ENV must be one of {', '.join(ENVIRONMENTS)}, not {env!r}")
        timezone = get("TIMEZONE", cls.timezone)
        try:
            ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigError(f"REGUA_TIMEZONE is not a known time zone: {timezone!r}") from None
        now = None
        if get("NOW"):
            if env == "production":
                raise ConfigError("REGUA_NOW freezes the clock: it is refused in production")
            try:
                now = parse_instant(get("NOW"))
            except ValueError as error:
                raise ConfigError(f"REGUA_NOW: {error}") from None
        return cls(
            env=env,
            database_url=get("DATABASE_URL", cls.database_url),
            broker_url=get("BROKER_URL"),
            smtp_url=get("SMTP_URL", cls.smtp_url),
            mail_from=get("MAIL_FROM", cls.mail_from),
            portal_url=get("PORTAL_URL", cls.portal_url),
            public_url=get("PUBLIC_URL", cls.public_url).rstrip("/"),
            secret_key=get("SECRET_KEY") or _dev_secret(env),
            log_format=_choice(get("LOG_FORMAT", "text"), ("text", "json"), "REGUA_LOG_FORMAT"),
            timezone=timezone,
            now=now,
            api_token=get("API_TOKEN"),
            ops_token=get("OPS_TOKEN"),
            standard_webhook_secrets=tuple(get("STANDARD_WEBHOOK_SECRETS").split()),
            asaas_webhook_token=get("ASAAS_WEBHOOK_TOKEN"),
            asaas_api_url=get("ASAAS_API_URL", cls.asaas_api_url).rstrip("/"),
            asaas_api_key=get("ASAAS_API_KEY"),
            pix_webhook_secret=get("PIX_WEBHOOK_SECRET"),
            max_body_bytes=_positive_int(get("MAX_BODY_BYTES", str(cls.max_body_bytes)), "REGUA_MAX_BODY_BYTES"),
            tick_seconds=_positive_int(get("TICK_SECONDS", str(cls.tick_seconds)), "REGUA_TICK_SECONDS"),
            gateway_max_rps=_positive_number(get("GATEWAY_MAX_RPS", "50"), "REGUA_GATEWAY_MAX_RPS"),
            policy=Policy(
                retry_days=_days(get("RETRY_DAYS", "3,5"), "REGUA_RETRY_DAYS"),
                verification_hours=_positive_int(get("VERIFICATION_HOURS", "72"), "REGUA_VERIFICATION_HOURS"),
            ),
            explicit=frozenset(
                name.removeprefix("REGUA_")
                for name, value in values.items()
                if name.startswith("REGUA_") and value.strip()
            ),
        )

    @property
    def production(self) -> bool:
        return self.env == "production"

    @property
    def calendar(self) -> BillingCalendar:
        return BillingCalendar.named(self.timezone)

    def clock(self) -> Clock:
        return FrozenClock(self.now) if self.now is not None else SystemClock()

    def require(self, command: str) -> None:
        """In production, `serve` and `worker` refuse to start without the secrets they need."""
        if not self.production:
            return
        needed = {
            "serve": ["API_TOKEN", "OPS_TOKEN", "ASAAS_WEBHOOK_TOKEN", "ASAAS_API_KEY", "SECRET_KEY"],
            "worker": ["ASAAS_API_KEY", "BROKER_URL"],
        }.get(command, [])
        for name in needed:
            if not str(getattr(self, name.lower())).strip():
                raise ConfigError(f"REGUA_{name} is required when REGUA_ENV=production")
        if command == "serve" and self.secret_key == DEV_SECRET_KEY:
            raise ConfigError("REGUA_SECRET_KEY is the development key, which anyone can read; set your own")
        if command == "serve" and not (self.standard_webhook_secrets or self.pix_webhook_secret):
            raise ConfigError(
                "REGUA_STANDARD_WEBHOOK_SECRETS or REGUA_PIX_WEBHOOK_SECRET is required when REGUA_ENV=production"
            )
        if self.database_url.startswith("sqlite") and command in ("serve", "worker"):
            raise ConfigError("REGUA_DATABASE_URL must name PostgreSQL when REGUA_ENV=production")
        if command in ("serve", "worker") and "ASAAS_API_URL" not in self.explicit:
            # The default is Asaas's sandbox (right for dev and tests): production names its gateway itself.
            raise ConfigError(
                f"REGUA_ASAAS_API_URL is required when REGUA_ENV=production: the default is Asaas's sandbox "
                f"({ASAAS_SANDBOX_URL}); set {ASAAS_PRODUCTION_URL} for real payments, or the sandbox's "
                "address to run production mode against it"
            )


def _dev_secret(env: str) -> str:
    """Outside production a fixed, known key; production refuses to start without its own (see require)."""
    return "" if env == "production" else DEV_SECRET_KEY


def _choice(text: str, options: tuple[str, ...], name: str) -> str:
    if text not in options:
        raise ConfigError(f"{name} must be one of {', '.join(options)}, not {text!r}")
    return text


def _positive_int(text: str, name: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, not {text!r}") from None
    if value <= 0:
        raise ConfigError(f"{name} must be positive, not {value}")
    return value


def _positive_number(text: str, name: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"{name} must be a number, not {text!r}") from None
    if not 0 < value < float("inf"):
        raise ConfigError(f"{name} must be positive, not {text}")
    return value


def _days(text: str, name: str) -> tuple[int, ...]:
    try:
        days = tuple(sorted({int(part) for part in text.replace(" ", "").split(",") if part}))
    except ValueError:
        raise ConfigError(f"{name} is a comma-separated list of days, not {text!r}") from None
    if any(day < 2 or day > 6 for day in days):
        raise ConfigError(f"{name}: retry days fall between day 2 and day 6 of the régua")
    return days
