"""The front door: every row of the bad-input table answers as specified and stores nothing."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import text
from starlette.testclient import TestClient

from billing.clock import FrozenClock
from regua.app import create_app
from regua.assembly import build_providers
from regua.runtime import Runtime, build_runtime
from regua.settings import Settings
from tests.integration.webhook_helpers import (
    asaas_delivery,
    asaas_headers,
    event_rows,
    fixture,
    pix_url,
    standard_body,
    standard_headers,
    stored_events,
)
from webhooks import intake

ASAAS = {"event_id": "evt_1", "payment_id": "pay_1", "reference": "chg_unknown", "value": 199.9}


def post_standard(client: TestClient, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, object]]:
    response = client.post("/webhooks/standard", content=body, headers=headers)
    return response.status_code, response.json()


def test_a_signed_standard_delivery_is_accepted_once_then_answered_duplicate(
    client: TestClient, runtime: Runtime, clock: FrozenClock
) -> None:
    body = standard_body("payment.confirmed", "chg_unknown")
    headers = standard_headers(body, "msg_1", clock.now())
    first = client.post("/webhooks/standard", content=body, headers=headers)
    second = client.post("/webhooks/standard", content=body, headers=headers)
    [row] = event_rows(runtime)
    assert (first.status_code, first.json()) == (200, {"status": "accepted", "event_ids": [row.id]})
    assert (second.status_code, second.json()) == (200, {"status": "duplicate"})
    assert stored_events(runtime) == 1


@pytest.mark.parametrize(
    "tamper",
    ["no_signature", "wrong_secret", "body_changed", "too_old", "too_new", "garbage_signature", "bad_timestamp"],
)
def test_a_standard_delivery_that_does_not_verify_is_401_and_stores_nothing(
    client: TestClient, runtime: Runtime, clock: FrozenClock, tamper: str
) -> None:
    body = standard_body("payment.confirmed", "chg_x")
    at = clock.now()
    headers = standard_headers(body, "msg_bad", at)
    if tamper == "no_signature":
        del headers["webhook-signature"]
    elif tamper == "wrong_secret":
        headers = standard_headers(body, "msg_bad", at, secret="whsec_" + "A" * 43)
    elif tamper == "body_changed":
        body = body.replace(b"19990", b"19991")
    elif tamper == "too_old":
        headers = standard_headers(body, "msg_bad", at - timedelta(minutes=5, seconds=2))
    elif tamper == "too_new":
        headers = standard_headers(body, "msg_bad", at + timedelta(minutes=5, seconds=2))
    elif tamper == "garbage_signature":
        headers["webhook-signature"] = "v1,not-base64!!"
    else:
        headers["webhook-timestamp"] = "yesterday"
    status, answer = post_standard(client, body, headers)
    assert status == 401
    assert answer["error"]["code"] == "unauthorized"  # type: ignore[index]
    assert stored_events(runtime) == 0


def test_a_rotated_secret_still_verifies_while_both_are_configured(
    runtime: Runtime, settings: Settings, clock: FrozenClock
) -> None:
    new_secret = "whsec_" + "B" * 43
    rotated = Settings(
        **{**settings.__dict__, "standard_webhook_secrets": (new_secret, *settings.standard_webhook_secrets)}
    )
    app_runtime = build_runtime(rotated, clock=clock)
    app = create_app(app_runtime, build_providers(rotated), lambda _ids: None)
    body = standard_body("payment.pending", "chg_x")
    with TestClient(app) as client:
        for index, secret in enumerate((new_secret, settings.standard_webhook_secrets[0])):
            response = client.post(
                "/webhooks/standard", content=body, headers=standard_headers(body, f"msg_{index}", clock.now(), secret)
            )
            assert response.status_code == 200, response.text
    assert stored_events(runtime) == 2


def test_within_tolerance_the_signature_is_accepted(client: TestClient, clock: FrozenClock) -> None:
    body = standard_body("payment.pending", "chg_x")
    headers = standard_headers(body, "msg_ok", clock.now() - timedelta(minutes=4, seconds=50))
    assert client.post("/webhooks/standard", content=body, headers=headers).status_code == 200


@pytest.mark.parametrize(
    ("headers", "url"),
    [
        ({"content-type": "application/json"}, "/webhooks/asaas"),
        (asaas_headers("wrong-token"), "/webhooks/asaas"),
        (asaas_headers(""), "/webhooks/asaas"),
    ],
)
def test_an_asaas_delivery_without_the_right_token_is_401(
    client: TestClient, runtime: Runtime, headers: dict[str, str], url: str
) -> None:
    response = client.post(url, content=asaas_delivery("PAYMENT_RECEIVED", **ASAAS), headers=headers)
    assert response.status_code == 401
    assert stored_events(runtime) == 0


@pytest.mark.parametrize(
    "url", ["/webhooks/pix", "/webhooks/pix?hmac=wrong", "/webhooks/pix/pix?hmac=", "/webhooks/pix/pix"]
)
def test_a_pix_delivery_without_the_right_hmac_is_401(client: TestClient, runtime: Runtime, url: str) -> None:
    body = json.dumps(fixture("pix/single.json")).encode()
    response = client.post(url, content=body, headers={"content-type": "application/json"})
    assert response.status_code == 401
    assert stored_events(runtime) == 0


def test_a_body_over_the_limit_is_413_with_content_length(client: TestClient, runtime: Runtime) -> None:
    body = b'{"pix": [' + b" " * 262_144 + b"]}"
    response = client.post(pix_url(), content=body, headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "too_large"
    assert stored_events(runtime) == 0


def test_a_body_over_the_limit_streamed_without_content_length_is_413(client: TestClient, runtime: Runtime) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"pix": ['
        for _ in range(300):
            yield b" " * 1024
        yield b"]}"

    response = client.post(pix_url(), content=chunks(), headers={"content-type": "application/json"})
    assert response.request.headers.get("content-length") is None
    assert response.status_code == 413
    assert stored_events(runtime) == 0


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", ""])
def test_a_body_that_is_not_json_by_content_type_is_415(
    client: TestClient, runtime: Runtime, content_type: str
) -> None:
    headers = {**asaas_headers(), "content-type": content_type}
    response = client.post("/webhooks/asaas", content=asaas_delivery("PAYMENT_RECEIVED", **ASAAS), headers=headers)
    assert response.status_code == 415
    assert stored_events(runtime) == 0


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda _body: "{not json", "body"),
        (lambda body: {**body, "id": 7}, "id"),
        (lambda body: {**body, "event": 7}, "event"),
        (lambda body: {**body, "payment": "pay_1"}, "payment.id"),
        (lambda body: {**body, "payment": {**body["payment"], "id": None}}, "payment.id"),
        (lambda body: {**body, "payment": {**body["payment"], "value": "cem reais"}}, "payment.value"),
        (lambda body: {**body, "payment": {**body["payment"], "value": 10.001}}, "payment.value"),
        (lambda body: {**body, "payment": {**body["payment"], "value": 1e30}}, "payment.value"),
        (lambda body: {**body, "payment": {**body["payment"], "value": 10**30}}, "payment.value"),
        (lambda body: {**body, "payment": {**body["payment"], "value": "Infinity"}}, "payment.value"),
        (lambda body: {**body, "payment": {**body["payment"], "externalReference": 42}}, "payment.externalReference"),
    ],
)
def test_an_asaas_delivery_with_a_bad_field_is_400_naming_it(
    client: TestClient, runtime: Runtime, mutate: object, field: str
) -> None:
    body = json.loads(asaas_delivery("PAYMENT_RECEIVED", **ASAAS))
    changed = mutate(body)  # type: ignore[operator]
    raw = changed.encode() if isinstance(changed, str) else json.dumps(changed).encode()
    response = client.post("/webhooks/asaas", content=raw, headers=asaas_headers())
    assert response.status_code == 400
    assert response.json()["error"]["message"].startswith(f"{field}:")
    assert stored_events(runtime) == 0


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"charge_id": None}, "data.charge_id"),
        ({"amount_cents": "199.90"}, "data.amount_cents"),
        ({"amount_cents": 199.9}, "data.amount_cents"),
        ({"amount_cents": True}, "data.amount_cents"),
        ({"method": "cheque"}, "data.method"),
        ({"occurred_at": "ontem"}, "data.occurred_at"),
        ({"payment_id": 12}, "data.payment_id"),
    ],
)
def test_a_standard_delivery_with_a_bad_field_is_400_naming_it(
    client: TestClient, runtime: Runtime, clock: FrozenClock, data: dict[str, object], field: str
) -> None:
    data = dict(data)
    charge = data.pop("charge_id", "chg_x")
    body = standard_body("payment.confirmed", charge, **data)  # type: ignore[arg-type]
    status, answer = post_standard(client, body, standard_headers(body, "msg_field", clock.now()))
    assert status == 400
    assert answer["error"]["message"].startswith(f"{field}:")  # type: ignore[index]
    assert stored_events(runtime) == 0


def test_a_refund_without_its_refund_id_is_400(client: TestClient, runtime: Runtime, clock: FrozenClock) -> None:
    body = standard_body("payment.refunded", "chg_x")
    status, answer = post_standard(client, body, standard_headers(body, "msg_refund", clock.now()))
    assert status == 400
    assert answer["error"]["message"].startswith("data.refund_id:")  # type: ignore[index]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"pix": []}, "pix"),
        ({"pix": "E123"}, "pix"),
        ({"pix": [{"txid": "abc", "valor": "1.00", "horario": "2020-09-09T20:15:00Z"}]}, "pix[0].endToEndId"),
        ({"pix": [{"endToEndId": "E1", "valor": 110.0, "horario": "2020-09-09T20:15:00Z"}]}, "pix[0].valor"),
        ({"pix": [{"endToEndId": "E1", "valor": "110.00"}]}, "pix[0].horario"),
        (
            {"pix": [{"endToEndId": "E1", "valor": "1.00", "horario": "2020-09-09T20:15:00Z", "devolucoes": [{}]}]},
            "pix[0].devolucoes[0].id",
        ),
    ],
)
def test_a_pix_batch_with_a_bad_item_is_400_naming_it_and_stores_none_of_the_batch(
    client: TestClient, runtime: Runtime, body: dict[str, object], field: str
) -> None:
    response = client.post(pix_url(), content=json.dumps(body).encode(), headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert response.json()["error"]["message"].startswith(f"{field}:")
    assert stored_events(runtime) == 0


def test_an_unknown_provider_is_404(client: TestClient, runtime: Runtime) -> None:
    response = client.post("/webhooks/stripe", content=b"{}", headers={"content-type": "application/json"})
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "unknown_provider"
    assert stored_events(runtime) == 0


def test_an_unknown_event_type_is_200_and_stored_as_ignored(
    client: TestClient, runtime: Runtime, clock: FrozenClock
) -> None:
    body = json.dumps({"type": "customer.created", "data": {}}).encode()
    status, answer = post_standard(client, body, standard_headers(body, "msg_unknown", clock.now()))
    asaas = client.post(
        "/webhooks/asaas",
        content=asaas_delivery("PAYMENT_CREATED", **{**ASAAS, "event_id": "evt_created"}),
        headers=asaas_headers(),
    )
    ids = {row.provider: row.id for row in event_rows(runtime)}
    assert (status, answer) == (200, {"status": "accepted", "event_ids": [ids["standard"]]})
    assert (asaas.status_code, asaas.json()) == (200, {"status": "accepted", "event_ids": [ids["asaas"]]})
    assert sorted((row.provider, row.event_type, row.status) for row in event_rows(runtime)) == [
        ("asaas", "PAYMENT_CREATED", "ignored"),
        ("standard", "customer.created", "ignored"),
    ]


def test_a_pix_batch_stores_each_item_once_by_end_to_end_id(client: TestClient, runtime: Runtime) -> None:
    body = json.dumps(fixture("pix/batch.json")).encode()
    first = client.post(pix_url("/webhooks/pix/pix"), content=body, headers={"content-type": "application/json"})
    again = client.post(pix_url(), content=body, headers={"content-type": "application/json"})
    rows = event_rows(runtime)
    assert first.json()["status"] == "accepted"
    assert sorted(first.json()["event_ids"]) == sorted(row.id for row in rows)  # one per item and devolução
    assert again.json() == {"status": "duplicate"}
    payments = sorted(row.dedupe_key for row in rows if row.event_type == "pix.received")
    assert payments == sorted(item["endToEndId"] for item in fixture("pix/batch.json")["pix"])
    # the refunds still in processing are kept, not acted on: the final status arrives as a new delivery
    assert {row.status for row in rows if row.event_type == "pix.refunded"} == {"ignored"}


def test_when_the_database_is_unreachable_the_answer_is_503_so_the_gateway_retries(
    settings: Settings, clock: FrozenClock
) -> None:
    down = Settings(**{**settings.__dict__, "database_url": "postgresql://postgres@127.0.0.1:1/regua"})
    runtime = build_runtime(down, clock=clock)
    app = create_app(runtime, build_providers(down), lambda _ids: None)
    with TestClient(app) as client:
        response = client.post(
            "/webhooks/asaas", content=asaas_delivery("PAYMENT_RECEIVED", **ASAAS), headers=asaas_headers()
        )
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "unavailable"
    assert "Traceback" not in response.text


def test_when_the_broker_is_down_the_event_is_stored_answered_and_later_requeued_by_tick(
    runtime: Runtime, settings: Settings, clock: FrozenClock
) -> None:
    from regua.cli import tick_once

    def broker_down(ids: list[str]) -> None:
        raise ConnectionError("redis is down")

    app = create_app(runtime, build_providers(settings), broker_down)
    body = standard_body("payment.confirmed", "chg_nobody_knows")
    with TestClient(app) as client:
        status, answer = post_standard(client, body, standard_headers(body, "msg_down", clock.now()))
    [row] = event_rows(runtime)
    assert (status, answer) == (200, {"status": "accepted", "event_ids": [row.id]})
    assert row.status == "received"
    assert tick_once(runtime).counts["webhooks_requeued"] == 0  # not yet 5 minutes
    clock.set(clock.now() + timedelta(minutes=5))
    assert tick_once(runtime).counts["webhooks_requeued"] == 1
    [row] = event_rows(runtime)
    assert row.status == "unmatched"


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_connection_the_database_dropped_while_idle_costs_the_gateway_no_retry(
    runtime: Runtime, settings: Settings, clock: FrozenClock
) -> None:
    queued: list[str] = []
    app = create_app(runtime, build_providers(settings), queued.extend)
    with TestClient(app) as client:

        def deliver(name: str) -> tuple[int, str]:
            body = standard_body("payment.confirmed", f"chg_{name}")
            status, answer = post_standard(client, body, standard_headers(body, f"msg_{name}", clock.now()))
            return status, str(answer["status"])

        # the intake's writers take turns: after two deliveries each holds its own open connection
        assert [deliver("before_1"), deliver("before_2")] == [(200, "accepted")] * 2
        with runtime.engine.connect() as connection:  # a restart, a failover, an ops person's query
            killed = connection.execute(
                text(
                    "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            ).scalar_one()
        assert killed >= 2
        runtime.engine.dispose()
        assert [deliver("after_1"), deliver("after_2")] == [(200, "accepted")] * 2
    assert len(event_rows(runtime)) == 4


def test_a_delivery_after_a_quiet_spell_is_queued_at_once_and_a_burst_in_one_round_a_window_later(
    runtime: Runtime, settings: Settings, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    window = 2.0
    monkeypatch.setattr(intake, "COALESCE", window)
    rounds: list[tuple[float, list[str]]] = []
    arrived = threading.Condition()

    def enqueue(ids: list[str]) -> None:
        with arrived:
            rounds.append((time.monotonic(), ids))
            arrived.notify_all()

    def queued(count: int, within: float) -> bool:
        with arrived:
            return arrived.wait_for(lambda: sum(len(ids) for _, ids in rounds) >= count, timeout=within)

    app = create_app(runtime, build_providers(settings), enqueue)
    with TestClient(app) as client:

        def deliver(name: str) -> None:
            body = standard_body("payment.confirmed", f"chg_{name}")
            assert post_standard(client, body, standard_headers(body, f"msg_{name}", clock.now()))[0] == 200

        answered = time.monotonic()
        deliver("alone")
        assert queued(1, within=window * 0.75), "the first delivery waited out the window"
        assert rounds[0][0] - answered < window * 0.75
        deliver("burst_1")
        deliver("burst_2")
        assert queued(3, within=window * 3)
    assert [len(ids) for _, ids in rounds] == [1, 2]
    assert rounds[1][0] - rounds[0][0] >= window * 0.99
