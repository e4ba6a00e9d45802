"""The real service wired for a model-based test: the app in process, the Asaas simulator as gateway, one clock.

Nothing runs behind the test's back: webhooks are stored by the intake and processed when the test
says so, the simulator's webhooks are kept until the test delivers them, and ticks run inline.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from standardwebhooks.webhooks import Webhook
from starlette.testclient import TestClient

from billing.clock import FrozenClock
from billing.journal import WebhookEvent
from billing.models import EventStatus, pix_txid
from billing.tick import TickReport
from regua.app import create_app
from regua.assembly import GatewayPaymentSource
from regua.gateway.asaas import AsaasGateway, encode_json
from regua.mailer import SmtpPostman
from regua.runtime import Runtime, build_runtime
from regua.sandbox.simulator import AsaasSimulator, WebhookDispatcher, create_simulator_app
from regua.settings import Settings
from tests.conftest import ASAAS_API_URL, ASAAS_TOKEN, PIX_SECRET, STANDARD_SECRET
from webhooks.asaas import AsaasProvider
from webhooks.base import Provider
from webhooks.pix import PixProvider
from webhooks.standard import StandardProvider
from workers.context import WorkerContext
from workers.processing import process_event
from workers.tick import tick

API_KEY = "asaas-test-key"
AUTH = {"Authorization": "Bearer test-token"}


class HeldWebhooks(WebhookDispatcher):
    """The simulator's webhooks, kept in order until the test delivers them."""

    def __init__(self) -> None:
        super().__init__("", ASAAS_TOKEN)
        self.held: list[dict[str, object]] = []

    def send(self, event: dict[str, object]) -> None:
        super().send(event)
        self.held.append(event)


def test_settings(database_url: str) -> Settings:
    return Settings(
        env="test",
        database_url=database_url,
        api_token="test-token",
        standard_webhook_secrets=(STANDARD_SECRET,),
        asaas_webhook_token=ASAAS_TOKEN,
        asaas_api_url=ASAAS_API_URL,
        asaas_api_key=API_KEY,
        pix_webhook_secret=PIX_SECRET,
        smtp_url="smtp://127.0.0.1:1",  # closed: emails are recorded, their delivery is another test's
    )


class World:
    """One fresh service on `database_url`, at `start`."""

    def __init__(self, database_url: str, start: datetime) -> None:
        self.clock = FrozenClock(start)
        self.runtime: Runtime = build_runtime(test_settings(database_url), clock=self.clock)
        sim_app = create_simulator_app(
            "", ASAAS_TOKEN, clock=self.clock, api_key=API_KEY, timeout_delay_s=0, refund_delay_s=0
        )
        self.sim: AsaasSimulator = sim_app.state.simulator
        self.webhooks = HeldWebhooks()
        self.sim.dispatcher = self.webhooks
        self.sim_client = TestClient(sim_app, base_url=ASAAS_API_URL)
        self.gateway = AsaasGateway(ASAAS_API_URL, API_KEY, client=self.sim_client, max_attempts=1)
        self.providers: dict[str, Provider] = {
            "standard": StandardProvider((STANDARD_SECRET,)),
            "asaas": AsaasProvider(ASAAS_TOKEN, GatewayPaymentSource(self.gateway)),
            "pix": PixProvider(PIX_SECRET),
        }
        runtime = self.runtime
        self.context = WorkerContext(runtime, self.providers, self.gateway, postman=lambda: SmtpPostman(runtime))
        app = create_app(runtime, self.providers, lambda _ids: None, gateway=self.gateway)
        self.client = TestClient(app)
        self.client.__enter__()
        self.sequence = 0

    def close(self) -> None:
        self.client.__exit__(None, None, None)
        self.sim_client.close()

    def next_id(self, prefix: str) -> str:
        self.sequence += 1
        return f"{prefix}{self.sequence:06d}"

    # -- time

    def tick(self, at: datetime) -> TickReport:
        self.clock.set(at)
        return tick(self.context, None)

    # -- the product API

    def call(self, method: str, path: str, body: Any = None, expect: tuple[int, ...] = (200, 201)) -> Any:
        response = self.client.request(method, path, json=body, headers=AUTH)
        assert response.status_code in expect, f"{method} {path}: {response.status_code} {response.text}"
        return response.json()

    # -- webhooks, as each provider sends them

    def post_standard(self, event_type: str, data: dict[str, Any], message_id: str | None = None) -> str:
        message_id = message_id or self.next_id("msg_")
        body = json.dumps({"type": event_type, "data": data})
        at = self.clock.now()
        headers = {
            "content-type": "application/json",
            "webhook-id": message_id,
            "webhook-timestamp": str(int(at.timestamp())),
            "webhook-signature": Webhook(STANDARD_SECRET).sign(message_id, at, body),
        }
        self._accepted(self.client.post("/webhooks/standard", content=body, headers=headers))
        return message_id

    def post_pix(self, items: list[dict[str, Any]]) -> None:
        body = json.dumps({"pix": items})
        response = self.client.post(
            f"/webhooks/pix?hmac={PIX_SECRET}", content=body, headers={"content-type": "application/json"}
        )
        self._accepted(response)

    def post_asaas(self, event: dict[str, object]) -> None:
        headers = {"content-type": "application/json", "asaas-access-token": ASAAS_TOKEN}
        self._accepted(self.client.post("/webhooks/asaas", content=encode_json(event), headers=headers))

    def _accepted(self, response: Any) -> None:
        assert response.status_code == 200, response.text
        assert response.json()["status"] in ("accepted", "duplicate"), response.text

    def process_stored(self, order: Callable[[list[str]], list[str]] = lambda ids: ids) -> list[str]:
        """Run the job on every stored event not yet processed, in the order `order` gives."""
        waiting = self.runtime.read(
            lambda session: list(
                session.scalars(
                    select(WebhookEvent.id)
                    .where(WebhookEvent.status.in_((EventStatus.RECEIVED, EventStatus.FAILED)))
                    .order_by(WebhookEvent.received_at, WebhookEvent.id)
                )
            )
        )
        return [process_event(self.runtime, self.providers, event_id) for event_id in order(waiting)]


def pix_item(charge_id: str, end_to_end: str, amount_cents: int, at: datetime) -> dict[str, Any]:
    return {
        "endToEndId": end_to_end,
        "txid": pix_txid(charge_id),
        "valor": f"{amount_cents // 100}.{amount_cents % 100:02d}",
        "horario": at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
    }
