"""The ops overview says when the gateway stopped delivering webhooks: the simulator's queue interrupted after
15 failed deliveries, read through Asaas's `GET /v3/webhooks`; a gateway that does not answer is "unknown"."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import date

import httpx
import pytest
from starlette.testclient import TestClient

from billing.ports import CardCharge
from regua.app import create_app
from regua.gateway.asaas import AsaasGateway
from regua.runtime import Runtime
from regua.sandbox.simulator import create_simulator_app
from regua.settings import Settings
from tests.integration.ops_helpers import OPS_TOKEN, basic
from tests.integration.test_charging_simulator import bound_socket, serve
from webhooks.base import Provider
from workers.actors import Jobs

NOBODY_LISTENS = "http://127.0.0.1:1/webhooks/asaas"
STOPPED = "Gateway stopped delivering webhooks"
ASAAS_WEBHOOK_KEYS = {
    "id", "name", "url", "enabled", "interrupted", "apiVersion", "hasAuthToken", "sendType",
    "penalizedRequestsCount", "events",
}  # fmt: skip


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return replace(settings, ops_token=OPS_TOKEN)


@pytest.fixture
def simulator() -> Iterator[str]:
    """The simulated Asaas, posting its webhooks where nothing listens, retrying at once."""
    sock = bound_socket()
    app = create_simulator_app(NOBODY_LISTENS, "whk-token", webhook_retry_delays=(0.01,))
    with serve(app, sock):
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


def webhook_queue(simulator: str) -> dict[str, object]:
    return dict(httpx.get(f"{simulator}/sim/state", timeout=5).json()["webhook_queue"])


def interrupt_the_queue(simulator: str) -> None:
    """A card payment whose PAYMENT_CONFIRMED fails fifteen times in a row: Asaas's "fila pausada"."""
    with AsaasGateway(simulator, "any-key") as gateway:
        gateway.charge_card(CardCharge("chg_1", "cus_1", 18990, date(2026, 12, 1), "tok_ok", "203.0.113.10"))
    deadline = time.monotonic() + 10
    while not webhook_queue(simulator)["interrupted"]:
        assert time.monotonic() < deadline, webhook_queue(simulator)
        time.sleep(0.02)


def overview(runtime: Runtime, providers: dict[str, Provider], jobs: Jobs, gateway: AsaasGateway) -> str:
    app = create_app(runtime, providers, jobs.enqueue_events, gateway=gateway)
    with TestClient(app) as client:
        response = client.get("/ops", headers=basic())
    assert response.status_code == 200, response.text
    return response.text


def test_the_simulator_lists_its_webhook_as_asaas_does_and_marks_it_interrupted_after_fifteen_failures(
    simulator: str,
) -> None:
    headers = {"access_token": "any-key"}
    before = httpx.get(f"{simulator}/v3/webhooks", headers=headers, timeout=5).json()
    interrupt_the_queue(simulator)
    after = httpx.get(f"{simulator}/v3/webhooks", headers=headers, timeout=5).json()

    assert (before["object"], before["totalCount"]) == ("list", 1)
    [config] = after["data"]
    assert set(config) == ASAAS_WEBHOOK_KEYS
    assert before["data"][0] | {"interrupted": False, "penalizedRequestsCount": 0} == before["data"][0]
    assert (config["url"], config["interrupted"], config["penalizedRequestsCount"]) == (NOBODY_LISTENS, True, 15)
    single = httpx.get(f"{simulator}/v3/webhooks/{config['id']}", headers=headers, timeout=5)
    assert single.json() == config
    assert httpx.get(f"{simulator}/v3/webhooks", timeout=5).status_code == 401  # Asaas's access_token still rules


def test_asaas_s_put_with_interrupted_false_starts_the_queue_again(simulator: str) -> None:
    interrupt_the_queue(simulator)
    headers = {"access_token": "any-key"}
    [config] = httpx.get(f"{simulator}/v3/webhooks", headers=headers, timeout=5).json()["data"]

    answer = httpx.put(f"{simulator}/v3/webhooks/{config['id']}", json={"interrupted": False}, headers=headers)

    assert answer.status_code == 200
    assert answer.json()["interrupted"] is False
    assert webhook_queue(simulator)["pending"] == 1  # the held event is tried again from the head


def test_the_overview_says_the_gateway_stopped_delivering_when_its_queue_is_interrupted(
    runtime: Runtime, providers: dict[str, Provider], jobs: Jobs, simulator: str
) -> None:
    with AsaasGateway(simulator, "any-key") as gateway:
        delivering = overview(runtime, providers, jobs, gateway)
        interrupt_the_queue(simulator)
        stopped = overview(runtime, providers, jobs, gateway)

    assert STOPPED not in delivering
    assert 'Gateway webhooks: <span class="ok">delivering</span>' in delivering
    assert STOPPED in stopped
    assert 'id="gateway-delivery" role="alert"' in stopped
    assert "the queue of regua is interrupted after failed deliveries" in stopped.lower()


def test_the_overview_says_unknown_and_still_renders_when_the_gateway_does_not_answer(
    runtime: Runtime, providers: dict[str, Provider], jobs: Jobs
) -> None:
    with AsaasGateway("http://127.0.0.1:1", "any-key") as gateway:
        started = time.monotonic()
        page = overview(runtime, providers, jobs, gateway)

    assert time.monotonic() - started < 10
    assert 'Gateway webhooks: <span class="warn">unknown</span> (the gateway did not say' in page
    assert STOPPED not in page
    assert "Webhook events, last 24 hours" in page
