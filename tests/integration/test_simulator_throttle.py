"""The simulated Asaas refusing a share of its API with HTTP 429, and the real client waiting it out."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from typing import cast

import httpx
import pytest
from starlette.testclient import TestClient

from billing.ports import CardCharge
from regua.gateway.asaas import AsaasGateway
from regua.sandbox.simulator import create_simulator_app

KEY = {"access_token": "asaas-test-key"}


@pytest.fixture
def sim() -> Iterator[TestClient]:
    with TestClient(create_simulator_app(""), base_url="http://sim.test") as client:
        yield client


def card(reference: str) -> CardCharge:
    return CardCharge(
        charge_id=reference,
        customer_id="cus_000005113026",
        amount_cents=18990,
        due_date=date(2026, 12, 1),
        card_token="tok_ok",
        remote_ip="203.0.113.10",
    )


def test_a_share_of_three_tenths_refuses_three_requests_in_ten_with_retry_after_and_asaas_error(
    sim: TestClient,
) -> None:
    assert sim.post("/sim/throttle", json={"share": 0.3, "retry_after": 2}).status_code == 200

    answers = [sim.get("/v3/payments", headers=KEY) for _ in range(10)]

    refused = [answer for answer in answers if answer.status_code == 429]
    assert len(refused) == 3
    assert all(answer.status_code == 200 for answer in answers if answer not in refused)
    assert {answer.headers["Retry-After"] for answer in refused} == {"2"}
    assert {answer.headers["RateLimit-Remaining"] for answer in refused} == {"0"}
    assert refused[0].json()["errors"][0]["code"] == "too_many_requests"
    assert sim.get("/sim/throttle").json() == {"share": 0.3, "retry_after": 2, "throttled": 3, "passed": 7}


def test_a_refused_creation_never_reaches_the_ledger_and_the_client_charges_each_card_once(sim: TestClient) -> None:
    sim.post("/sim/throttle", json={"share": 0.5, "retry_after": 0})
    slept: list[float] = []

    http = cast(httpx.Client, sim)  # Starlette's TestClient is an httpx.Client
    with AsaasGateway("http://sim.test", "asaas-test-key", client=http, max_attempts=1, sleep=slept.append) as gateway:
        for number in range(6):
            assert gateway.charge_card(card(f"chg_throttled{number}")).is_paid

    payments = sim.get("/sim/state").json()["payments"]
    assert sorted(p["externalReference"] for p in payments) == [f"chg_throttled{n}" for n in range(6)]
    throttle = sim.get("/sim/throttle").json()
    assert throttle["passed"] == 12  # a look-up by reference and a creation a card, each sent until it passed
    assert throttle["throttled"] >= 6
    assert slept == [0.0] * throttle["throttled"]


def test_share_zero_turns_the_throttle_off_and_nonsense_is_refused(sim: TestClient) -> None:
    sim.post("/sim/throttle", json={"share": 0.9})
    sim.post("/sim/throttle", json={"share": 0})
    assert all(sim.get("/v3/payments", headers=KEY).status_code == 200 for _ in range(5))

    for body in ({"share": 1}, {"share": -0.1}, {"share": "lots"}, {"share": 0.2, "retry_after": 1.5}):
        answer = sim.post("/sim/throttle", json=body)
        assert answer.status_code == 400, body
    assert sim.get("/sim/throttle").json()["share"] == 0


def test_the_simulator_can_start_throttled() -> None:
    app = create_simulator_app("", throttle_share=Decimal("0.5"), throttle_retry_after=3)
    with TestClient(app, base_url="http://sim.test") as sim:
        statuses = [sim.get("/v3/customers", headers=KEY).status_code for _ in range(4)]
    assert statuses == [200, 429, 200, 429]
