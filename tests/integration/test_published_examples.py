"""Every example the senders publish is accepted as published, stored once and processable."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import respx
from starlette.testclient import TestClient

from regua.runtime import Runtime
from tests.conftest import ASAAS_API_URL
from tests.integration.test_webhook_settlement import settle_jobs
from tests.integration.webhook_helpers import FIXTURES, asaas_headers, event_rows, fixture, pix_url
from workers.actors import Jobs

PIX_EXAMPLES = [
    "batch.json",
    "callback_spec_example.json",
    "devolucao_devolvido.json",
    "devolucao_nao_realizado.json",
    "pix_response_long_end_to_end.json",
    "pix_response_saque.json",
    "single.json",
    "single_with_chave.json",
]
ASAAS_EXAMPLES = [
    "asaas/PAYMENT_CHARGEBACK_REQUESTED.json",
    "asaas/PAYMENT_CONFIRMED.json",
    "asaas/PAYMENT_CREATED.json",
    "asaas/PAYMENT_CREDIT_CARD_CAPTURE_REFUSED.json",
    "asaas/PAYMENT_DELETED.json",
    "asaas/PAYMENT_OVERDUE.json",
    "asaas/PAYMENT_PARTIALLY_REFUNDED.json",
    "asaas/PAYMENT_RECEIVED.json",
    "asaas/PAYMENT_RECEIVED_PIX.json",
    "asaas/PAYMENT_REFUNDED.json",
    "asaas/PAYMENT_REPROVED_BY_RISK_ANALYSIS.json",
    "asaas_api/webhook_payment_received.json",
]


def test_every_recorded_delivery_is_in_the_lists_above() -> None:
    """A recorded example added to the fixtures is a case to play: these lists name every one."""
    assert sorted(path.name for path in (FIXTURES / "pix").glob("*.json")) == PIX_EXAMPLES
    recorded = [f"asaas/{path.name}" for path in (FIXTURES / "asaas").glob("PAYMENT_*.json")]
    assert sorted(recorded) == [name for name in ASAAS_EXAMPLES if name.startswith("asaas/")]


JSON = {"content-type": "application/json"}


def expected_keys(batch: dict[str, list[dict[str, object]]]) -> list[str]:
    """What the batch must leave stored: each payment by endToEndId, each devolução by id and status."""
    keys = []
    for item in batch["pix"]:
        keys.append(str(item["endToEndId"]))
        refunds = item.get("devolucoes") or []
        for refund in [refunds] if isinstance(refunds, dict) else refunds:  # type: ignore[list-item]
            keys.append(f"devolucao:{refund['id']}:{refund['status']}")  # type: ignore[index]
    return sorted(keys)


@pytest.mark.parametrize("name", PIX_EXAMPLES)
def test_every_banco_central_example_is_accepted_and_processed(
    client: TestClient, runtime: Runtime, jobs: Jobs, name: str
) -> None:
    batch = fixture(f"pix/{name}")
    response = client.post(pix_url("/webhooks/pix/pix"), content=json.dumps(batch).encode(), headers=JSON)
    assert (response.status_code, response.json()["status"]) == (200, "accepted")
    settle_jobs(jobs, runtime)
    rows = event_rows(runtime)
    assert sorted(row.dedupe_key for row in rows) == expected_keys(batch)
    # none of the examples' txids is a charge of ours: parked for ops, not failed
    assert {row.status for row in rows} <= {"unmatched", "ignored"}


def test_the_callback_example_with_devolucoes_as_one_object_keeps_the_valid_payment_beside_it(
    client: TestClient, runtime: Runtime, jobs: Jobs
) -> None:
    batch = fixture("pix/callback_spec_example.json")
    assert isinstance(batch["pix"][0]["devolucoes"], dict)  # the spec's own example, as published
    response = client.post(pix_url(), content=json.dumps(batch).encode(), headers=JSON)
    assert response.status_code == 200, response.text
    settle_jobs(jobs, runtime)
    by_key = {row.dedupe_key: row for row in event_rows(runtime)}
    assert {key for key, row in by_key.items() if row.event_type == "pix.received"} == {
        "E12345678202009091221kkkkkkkkkkk",
        "E87654321202009091221dfghi123456",
    }
    refund = by_key["devolucao:123ABC:EM_PROCESSAMENTO"]
    assert refund.status == "ignored"  # still in processing: its final status comes as a new delivery
    assert json.loads(refund.body)["devolucoes"] == [batch["pix"][0]["devolucoes"]]


@pytest.mark.parametrize(
    ("devolucoes", "field"),
    [
        ("123ABC", "pix[0].devolucoes"),
        (7, "pix[0].devolucoes"),
        ({"id": "123ABC", "valor": "10.00"}, "pix[0].devolucoes[0].status"),
        ([{"id": "1", "status": "DEVOLVIDO", "valor": "1.00", "horario": "ontem"}], "pix[0].devolucoes[0].horario"),
        (
            [{"id": "1", "status": "DEVOLVIDO", "valor": "1.00", "horario": {"liquidacao": "ontem"}}],
            "pix[0].devolucoes[0].horario.liquidacao",
        ),
    ],
)
def test_devolucoes_that_are_truly_unusable_are_still_refused_naming_the_field(
    client: TestClient, runtime: Runtime, devolucoes: object, field: str
) -> None:
    item = {**fixture("pix/single.json")["pix"][0], "devolucoes": devolucoes}
    response = client.post(pix_url(), content=json.dumps({"pix": [item]}).encode(), headers=JSON)
    assert response.status_code == 400
    assert response.json()["error"]["message"].startswith(f"{field}:")
    assert event_rows(runtime) == []


@pytest.fixture
def asaas_api() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=ASAAS_API_URL, assert_all_called=False) as router:
        yield router


@pytest.mark.parametrize("name", ASAAS_EXAMPLES)
def test_every_asaas_example_is_accepted_as_published_and_processed(
    client: TestClient, runtime: Runtime, jobs: Jobs, asaas_api: respx.MockRouter, name: str
) -> None:
    raw = (Path(FIXTURES) / name).read_bytes()
    delivery = json.loads(raw)
    # the API tells the same story as the webhook, as Asaas's own example payment
    asaas_api.get(f"/v3/payments/{delivery['payment']['id']}").mock(
        return_value=httpx.Response(200, json=delivery["payment"])
    )
    response = client.post("/webhooks/asaas", content=raw, headers=asaas_headers())
    assert (response.status_code, response.json()["status"]) == (200, "accepted")
    settle_jobs(jobs, runtime)
    [row] = event_rows(runtime)
    assert (row.dedupe_key, row.event_type) == (delivery["id"], delivery["event"])
    # the example's externalReference ("056984") is no charge of ours: never a failure, at worst parked
    assert row.status in ("processed", "unmatched", "ignored"), row.outcome
