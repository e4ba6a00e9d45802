"""Fixtures for tests against a real database: the API client and account set-up through it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from regua.app import create_app
from regua.assembly import InProcessWorker, build_gateway, build_providers
from regua.mailer import SmtpPostman
from regua.runtime import Runtime
from regua.settings import Settings
from tests.openapi_contract import check_every_response
from webhooks.base import Provider
from workers.actors import Jobs, declare_actors
from workers.broker import build_broker
from workers.context import WorkerContext

AUTH = {"Authorization": "Bearer test-token"}

PADARIA = {
    "name": "Padaria Central Ltda",
    "document": "11.222.333/0001-81",
    "contacts": [
        {"email": "ana@padaria.example", "name": "Ana", "manage_payments": True},
        {"email": "caixa@padaria.example", "name": "Caixa", "manage_payments": False},
    ],
    "trial_ends_at": None,
    "gateway_customer_id": "cus_000005113026",
}


CUSTOMER_IP = "203.0.113.10"
"""The customer's IP the tests' cards come with (TEST-NET-3, a documentation range)."""


def subscription(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "plan": "pro",
        "modules": ["delivery"],
        "monthly_price_cents": 19990,
        "frequency": "monthly",
        "payment_method": "boleto",
        "installments": 1,
        "starts_on": "2026-12-01",
    }
    body.update(changes)
    if body.get("card_token"):
        body.setdefault("remote_ip", CUSTOMER_IP)  # a card comes with the customer's IP (Asaas's remoteIp)
    return body


class Api:
    """The product API as the product calls it, with the bearer token."""

    def __init__(self, client: TestClient) -> None:
        self.client = client

    def put_account(self, account_id: str, **changes: Any) -> dict[str, Any]:
        response = self.client.put(f"/api/accounts/{account_id}", json={**PADARIA, **changes}, headers=AUTH)
        assert response.status_code in (200, 201), response.text
        return dict(response.json())

    def subscribe(self, account_id: str, product: str, **changes: Any) -> dict[str, Any]:
        response = self.client.put(
            f"/api/accounts/{account_id}/subscriptions/{product}", json=subscription(**changes), headers=AUTH
        )
        assert response.status_code in (200, 201), response.text
        return dict(response.json())

    def get(self, path: str) -> Any:
        response = self.client.get(path, headers=AUTH)
        assert response.status_code == 200, response.text
        return response.json()

    def access(self, account_id: str, product: str) -> dict[str, Any]:
        return dict(self.get(f"/api/accounts/{account_id}/access")["products"][product])

    def invoices(self, account_id: str) -> list[dict[str, Any]]:
        return list(self.get(f"/api/accounts/{account_id}/invoices")["invoices"])


@pytest.fixture
def providers(settings: Settings) -> dict[str, Provider]:
    return build_providers(settings)


@pytest.fixture
def jobs(runtime: Runtime, providers: dict[str, Provider]) -> Jobs:
    """Actors on an in-process stub broker, working on the test's runtime."""
    context = WorkerContext(runtime, providers, build_gateway(runtime.settings), postman=lambda: SmtpPostman(runtime))
    return declare_actors(build_broker("", runtime.clock), lambda: context)


@pytest.fixture
def client(runtime: Runtime, providers: dict[str, Provider], jobs: Jobs) -> Iterator[TestClient]:
    """The whole app as `regua serve` runs it on the in-process broker, worker included."""
    app = create_app(runtime, providers, jobs.enqueue_events, [InProcessWorker(jobs.broker)])
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture
def api(client: TestClient) -> Api:
    return Api(client)


@pytest.fixture
def openapi_checked(client: TestClient) -> None:
    """Every answer the client receives is checked against the OpenAPI document as it arrives."""
    check_every_response(client)
