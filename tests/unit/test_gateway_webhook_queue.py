"""Asaas's webhook queue as the ops overview reads it: the client at the HTTP seam (respx), then the cached watch."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import respx

from billing.ports import GatewayRejected, GatewayUnavailable
from regua.gateway.asaas import AsaasGateway
from regua.ops.gateway_queue import GatewayDeliveryWatch, WebhookQueue, judge

BASE = "https://asaas.test"


def config(**changes: Any) -> dict[str, Any]:
    """One webhook configuration as `GET /v3/webhooks` lists it (Asaas's WebhookConfigGetResponseDTO)."""
    found: dict[str, Any] = {
        "id": "a0c8f2de-0c7e-4b43-9c3b-1f7f3b3e2a10",
        "name": "regua",
        "url": "https://regua.example/webhooks/asaas",
        "email": "financeiro@regua.example",
        "enabled": True,
        "interrupted": False,
        "apiVersion": 3,
        "hasAuthToken": True,
        "sendType": "SEQUENTIALLY",
        "penalizedRequestsCount": 0,
        "events": ["PAYMENT_RECEIVED", "PAYMENT_CONFIRMED"],
    }
    return found | changes


def listing(*configs: dict[str, Any]) -> dict[str, Any]:
    return {"object": "list", "hasMore": False, "totalCount": len(configs), "limit": 100, "offset": 0, "data": configs}


def queue(**changes: Any) -> WebhookQueue:
    fields: dict[str, Any] = {"name": "regua", "url": "https://r.example", "enabled": True, "interrupted": False}
    return WebhookQueue(**(fields | {"penalized": 0} | changes))


def test_the_client_reads_an_interrupted_queue_and_its_failures_from_get_webhooks() -> None:
    with respx.mock(base_url=BASE, assert_all_called=True) as asaas:
        route = asaas.get("/v3/webhooks").respond(
            200, json=listing(config(interrupted=True, penalizedRequestsCount=15), config(name="erp", url="https://e"))
        )
        with AsaasGateway(BASE, "key-1") as gateway:
            queues = gateway.webhook_queues(timeout=1.5)

    assert queues == [
        WebhookQueue("regua", "https://regua.example/webhooks/asaas", True, True, 15),
        WebhookQueue("erp", "https://e", True, False, 0),
    ]
    request = route.calls.last.request
    assert request.headers["access_token"] == "key-1"
    assert request.extensions["timeout"]["read"] == 1.5


def test_the_client_asks_once_and_says_unavailable_when_asaas_does_not_answer() -> None:
    with respx.mock(base_url=BASE) as asaas:
        route = asaas.get("/v3/webhooks").mock(side_effect=httpx.ReadTimeout("slow"))
        with AsaasGateway(BASE, "key-1", sleep=lambda _s: None) as gateway, pytest.raises(GatewayUnavailable):
            gateway.webhook_queues(timeout=0.5)
    assert route.call_count == 1


def test_the_client_names_asaas_s_refusal_of_a_bad_key() -> None:
    with respx.mock(base_url=BASE) as asaas:
        asaas.get("/v3/webhooks").respond(401, json={"errors": [{"code": "invalid_access_token", "description": "x"}]})
        with AsaasGateway(BASE, "wrong") as gateway, pytest.raises(GatewayRejected, match="HTTP 401"):
            gateway.webhook_queues(timeout=0.5)


def test_an_interrupted_queue_is_stopped_and_a_penalized_one_still_delivers() -> None:
    assert judge([queue(interrupted=True, penalized=15)]).stopped
    assert judge([queue(penalized=4)]).state == "delivering"
    assert judge([queue(enabled=False)]).stopped
    assert judge([queue(enabled=False, name="old"), queue()]).state == "delivering"
    assert judge([]).reason == "no webhook is configured at the gateway"


class Reader:
    def __init__(self) -> None:
        self.answers: list[list[WebhookQueue] | Exception] = []
        self.asked: list[float] = []

    def webhook_queues(self, timeout: float) -> list[WebhookQueue]:
        self.asked.append(timeout)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def test_the_watch_asks_again_only_after_its_cache_and_a_failure_is_unknown_not_an_error() -> None:
    reader, seconds = Reader(), [100.0]
    watch = GatewayDeliveryWatch(reader, timeout_s=2.0, cache_s=15.0, monotonic=lambda: seconds[0])
    reader.answers = [[queue(interrupted=True)], RuntimeError("respx: no route"), [queue()]]

    assert watch.status().stopped
    seconds[0] += 14.9
    assert watch.status().stopped
    assert reader.asked == [2.0]

    seconds[0] += 0.2
    unknown = watch.status()
    assert (unknown.state, unknown.reason) == ("unknown", "the gateway did not say (RuntimeError)")

    seconds[0] += 15.0
    assert watch.status().state == "delivering"
    assert reader.asked == [2.0, 2.0, 2.0]
