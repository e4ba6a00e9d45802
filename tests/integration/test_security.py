"""Security as tests: credentials on every route, production secrets, body limits, constant-time comparisons."""

from __future__ import annotations

import base64
import hmac
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.routing import BaseRoute, Mount, Route
from starlette.testclient import TestClient

from billing.clock import FrozenClock
from regua.app import create_app
from regua.assembly import build_providers
from regua.runtime import Runtime, build_runtime
from regua.settings import DEV_SECRET_KEY, Settings
from tests.conftest import ASAAS_TOKEN, PIX_SECRET
from tests.integration.webhook_helpers import fixture, standard_body, standard_headers, stored_events

OPS_TOKEN = "ops-test-token"
API_TOKEN = "test-token"
PROVIDERS = ("standard", "asaas", "pix")
OPEN = {"/healthz", "/readyz", "/openapi.json", "/docs"}
"""Routes anyone may call: liveness and readiness for probes, and the API's own document (it holds no
data). The webhooks authenticate each in their own way (tested per provider)."""


@pytest.fixture
def secured(settings: Settings, clock: FrozenClock) -> Iterator[tuple[TestClient, Runtime]]:
    configured = Settings(**{**settings.__dict__, "ops_token": OPS_TOKEN})
    runtime = build_runtime(configured, clock=clock)
    app = create_app(runtime, build_providers(configured), lambda _ids: None)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client, runtime
    runtime.close()


def endpoints(routes: list[BaseRoute], prefix: str = "") -> Iterator[tuple[str, str]]:
    """Every (method, path) the app serves, its path parameters filled in."""
    for route in routes:
        if isinstance(route, Mount):
            yield from endpoints(list(route.routes), prefix + route.path)
        elif isinstance(route, Route):
            template = prefix + route.path
            fills = PROVIDERS if "{provider}" in template else ("x1",)
            for fill in fills:
                path = template
                for name in route.param_convertors:
                    path = path.replace(f"{{{name}}}", fill)
                for method in sorted((route.methods or {"GET"}) - {"HEAD"}):
                    yield method, path


def app_endpoints(client: TestClient) -> list[tuple[str, str]]:
    found = list(endpoints(list(client.app.routes)))  # type: ignore[attr-defined]
    assert ("GET", "/readyz") in found
    assert any(path.startswith("/api/") for _, path in found)
    return found


def test_every_route_but_healthz_and_the_webhooks_refuses_without_its_credentials(
    secured: tuple[TestClient, Runtime],
) -> None:
    client, _ = secured
    checked = []
    for method, path in app_endpoints(client):
        if path in OPEN or path.startswith(("/webhooks/", "/portal/assets/")):
            continue
        if path.startswith("/portal/"):  # the signed token in the path is the credential: `x1` is none
            response = client.request(method, path, headers={"content-type": "application/json"})
            assert response.status_code in (401, 403, 404), (method, path, response.status_code)
            checked.append(path)
            continue
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic b3BzOndyb25n"}):
            response = client.request(method, path, headers={**headers, "content-type": "application/json"})
            assert response.status_code == 401, (method, path, headers, response.text)
            assert response.json()["error"]["code"] == "unauthorized"
        checked.append(path)
    assert len(checked) >= 9


def test_healthz_is_open_and_metrics_open_with_the_ops_token(secured: tuple[TestClient, Runtime]) -> None:
    client, _ = secured
    assert client.get("/healthz").status_code == 200
    basic = "Basic " + base64.b64encode(f"ops:{OPS_TOKEN}".encode()).decode()
    for authorization in (basic, f"Bearer {OPS_TOKEN}"):
        assert client.get("/metrics", headers={"Authorization": authorization}).status_code == 200
    wrong = "Basic " + base64.b64encode(b"ops:guess").decode()
    assert client.get("/metrics", headers={"Authorization": wrong}).status_code == 401


def credentials_for(path: str) -> tuple[str, dict[str, str]]:
    if path.startswith("/webhooks/pix"):
        return f"{path}?hmac={PIX_SECRET}", {}
    if path.startswith("/webhooks/"):
        return path, {"asaas-access-token": ASAAS_TOKEN}
    if path.startswith(("/ops", "/metrics")):
        return path, {"Authorization": f"Bearer {OPS_TOKEN}"}
    return path, {"Authorization": f"Bearer {API_TOKEN}"}


@pytest.mark.parametrize("streamed", [False, True], ids=["content-length", "streamed"])
def test_every_route_that_takes_a_body_refuses_one_over_the_limit(
    secured: tuple[TestClient, Runtime], streamed: bool
) -> None:
    client, runtime = secured
    limit = runtime.settings.max_body_bytes
    checked = []
    for method, path in app_endpoints(client):
        if method not in ("POST", "PUT", "PATCH"):
            continue
        url, headers = credentials_for(path)
        big = b'{"a": "' + b"x" * limit * 32 + b'"}'

        def chunks(body: bytes = big) -> Iterator[bytes]:
            for start in range(0, len(body), 16_384):
                yield body[start : start + 16_384]

        content: Any = chunks() if streamed else big
        response = client.request(method, url, content=content, headers={**headers, "content-type": "application/json"})
        refused_before_reading = response.status_code == 404 or (
            path.startswith("/portal/") and response.status_code in (401, 403)
        )
        if refused_before_reading:
            continue  # nothing of the body was read: `x1` names no invoice, or is no portal token
        assert response.status_code == 413, (method, path, response.status_code, response.text[:200])
        checked.append(path)
    assert len(checked) >= 5
    assert stored_events(runtime) == 0


def test_a_body_under_the_limit_still_reaches_the_api(secured: tuple[TestClient, Runtime]) -> None:
    client, _ = secured
    account = {"name": "Padaria Central Ltda", "document": "11.222.333/0001-81", "contacts": []}
    response = client.put(
        "/api/accounts/padaria-central",
        content=json.dumps(account),
        headers={"Authorization": f"Bearer {API_TOKEN}", "content-type": "application/json"},
    )
    assert response.status_code in (200, 201), response.text


PRODUCTION = {
    "REGUA_ENV": "production",
    "REGUA_DATABASE_URL": "postgresql://postgres@127.0.0.1:1/regua",
    "REGUA_BROKER_URL": "redis://127.0.0.1:1/0",
    "REGUA_API_TOKEN": "a-real-api-token",
    "REGUA_OPS_TOKEN": "a-real-ops-token",
    "REGUA_ASAAS_WEBHOOK_TOKEN": "a-real-asaas-token",
    "REGUA_ASAAS_API_KEY": "a-real-asaas-key",
    "REGUA_ASAAS_API_URL": "https://api.asaas.com",
    "REGUA_PIX_WEBHOOK_SECRET": "a-real-pix-secret",
    "REGUA_SECRET_KEY": "a-real-secret-key-of-enough-length-0123456789",
}


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"REGUA_SECRET_KEY": DEV_SECRET_KEY}, "REGUA_SECRET_KEY"),
        ({"REGUA_SECRET_KEY": ""}, "REGUA_SECRET_KEY"),
        ({"REGUA_API_TOKEN": ""}, "REGUA_API_TOKEN"),
        ({"REGUA_API_TOKEN": "   "}, "REGUA_API_TOKEN"),
        ({"REGUA_OPS_TOKEN": ""}, "REGUA_OPS_TOKEN"),
        ({"REGUA_ASAAS_WEBHOOK_TOKEN": " "}, "REGUA_ASAAS_WEBHOOK_TOKEN"),
    ],
)
def test_production_refuses_to_serve_with_a_development_secret_or_an_empty_token(
    changes: dict[str, str], named: str
) -> None:
    environment = {key: value for key, value in os.environ.items() if not key.startswith("REGUA_")}
    result = subprocess.run(
        [sys.executable, "-m", "regua.cli", "serve", "--port", "1"],
        env={**environment, **PRODUCTION, **changes},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert named in result.stderr


class CompareSpy:
    """hmac.compare_digest, recording what it compared: the secrets must go through it, not `==`."""

    def __init__(self) -> None:
        self.original = hmac.compare_digest
        self.calls: list[tuple[bytes, bytes]] = []

    def __call__(self, given: Any, expected: Any) -> bool:
        self.calls.append((bytes(given), bytes(expected)))
        return self.original(given, expected)

    def compared(self, secret: str) -> bool:
        return any(secret.encode() in pair for pair in self.calls)


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> CompareSpy:
    recorder = CompareSpy()
    monkeypatch.setattr(hmac, "compare_digest", recorder)
    return recorder


def test_every_secret_is_compared_in_constant_time(
    secured: tuple[TestClient, Runtime], spy: CompareSpy, clock: FrozenClock
) -> None:
    client, _ = secured
    json_type = {"content-type": "application/json"}
    client.get("/api/accounts/x1/access", headers={"Authorization": "Bearer guess"})
    assert spy.compared(API_TOKEN)
    client.get("/metrics", headers={"Authorization": "Basic " + base64.b64encode(b"ops:guess").decode()})
    assert spy.compared(OPS_TOKEN)
    pix = json.dumps(fixture("pix/single.json")).encode()
    assert client.post("/webhooks/pix?hmac=guess", content=pix, headers=json_type).status_code == 401
    assert spy.compared(PIX_SECRET)
    asaas = json.dumps(fixture("asaas/PAYMENT_RECEIVED.json")).encode()
    response = client.post("/webhooks/asaas", content=asaas, headers={**json_type, "asaas-access-token": "guess"})
    assert response.status_code == 401
    assert spy.compared(ASAAS_TOKEN)
    body = standard_body("payment.confirmed", "chg_x")
    headers = standard_headers(body, "msg_1", clock.now(), secret="whsec_" + base64.b64encode(b"g" * 32).decode())
    calls_before = len(spy.calls)
    assert client.post("/webhooks/standard", content=body, headers=headers).status_code == 401
    assert len(spy.calls) > calls_before  # the expected signature is compared to the one given, never with ==
