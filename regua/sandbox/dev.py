"""The development sandbox's defaults and parts: known secrets, the simulated gateway, the mail sink.

With `REGUA_ENV=dev` (the default) and no `REGUA_ASAAS_API_KEY`, the gateway is the simulator that
`regua dev` (and `regua serve`) mount at `/gateway-sim` of the app, at `REGUA_PUBLIC_URL`: every
process on the same settings (dev, clock, tick, trigger) then talks to the same simulator.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from urllib.parse import urlsplit

from starlette.routing import BaseRoute, Mount

from billing.clock import Clock
from billing.shared_clock import ReadThroughClock, StoredClock
from regua.sandbox.mail_view import mail_routes
from regua.sandbox.simulator import WebhookDispatcher, create_simulator_app
from regua.sandbox.smtp_sink import MailSink
from regua.settings import Settings

SIMULATOR_PATH = "/gateway-sim"
DEV_STANDARD_SECRET = "whsec_cmVndWEtZGV2LW9ubHktc2VjcmV0LW5vdC1mb3ItcHJvZA=="
DEV_ASAAS_WEBHOOK_TOKEN = "dev-asaas-token"
DEV_PIX_SECRET = "dev-pix-hmac"
DEV_ASAAS_API_KEY = "dev-asaas-key"


def with_dev_defaults(settings: Settings, *, base_url: str | None = None) -> Settings:
    """In dev, known and printed webhook secrets where none are set, and the simulated gateway where
    no Asaas key is set (the real Asaas cannot be used without one). `base_url` is where this server
    listens, when it is not REGUA_PUBLIC_URL."""
    if settings.env != "dev":
        return settings
    settings = replace(
        settings,
        standard_webhook_secrets=settings.standard_webhook_secrets or (DEV_STANDARD_SECRET,),
        asaas_webhook_token=settings.asaas_webhook_token or DEV_ASAAS_WEBHOOK_TOKEN,
        pix_webhook_secret=settings.pix_webhook_secret or DEV_PIX_SECRET,
    )
    if not settings.asaas_api_key:
        base = (base_url or settings.public_url).rstrip("/")
        settings = replace(settings, asaas_api_url=f"{base}{SIMULATOR_PATH}", asaas_api_key=DEV_ASAAS_API_KEY)
    return settings


def simulated_gateway(settings: Settings) -> bool:
    return settings.env == "dev" and settings.asaas_api_key == DEV_ASAAS_API_KEY


def smtp_address(smtp_url: str) -> tuple[str, int]:
    parts = urlsplit(smtp_url)
    return parts.hostname or "127.0.0.1", parts.port or 1025


@dataclass
class Sandbox:
    """What `regua dev` adds to the app: the simulator's routes and webhook sender, and the mail view."""

    routes: list[BaseRoute] = field(default_factory=list)
    dispatcher: WebhookDispatcher | None = None
    sink: MailSink | None = None


def build_sandbox(settings: Settings, clock: Clock, base_url: str, sink: MailSink | None) -> Sandbox:
    """The simulator dates its payments by `clock` (the shared one) and posts its webhooks here."""
    sandbox = Sandbox(sink=sink)
    if simulated_gateway(settings):
        simulator = create_simulator_app(
            f"{base_url}/webhooks/asaas",
            settings.asaas_webhook_token,
            api_key=settings.asaas_api_key,
            # A payment is dated by the clock as it is now, even a moment after another process moved it.
            clock=ReadThroughClock(clock) if isinstance(clock, StoredClock) else clock,
        )
        # A mounted app's lifespan does not run: its webhook sender is started beside the app instead.
        sandbox.dispatcher = simulator.state.simulator.dispatcher
        sandbox.routes.append(Mount(SIMULATOR_PATH, app=simulator))
    if sink is not None:
        sandbox.routes.extend(mail_routes(sink, settings.ops_token))
    return sandbox
