"""The API's reads of one account, invoice or its charges, the partial update, body limits and checkout statuses."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from billing.clock import FrozenClock, parse_instant
from regua.cli import tick_once
from regua.runtime import Runtime
from tests.integration.asaas_fake import FakeAsaas, fake_asaas
from tests.integration.conftest import AUTH, CUSTOMER_IP, PADARIA, Api
from tests.integration.test_api import assert_error, pay

pytestmark = pytest.mark.usefixtures("openapi_checked")

ACCOUNT = "padaria-central"
SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
DAY_9 = parse_instant("2026-12-09T11:00:00-03:00")


@pytest.fixture
def asaas() -> Iterator[FakeAsaas]:
    with fake_asaas() as fake:
        yield fake


def checkout(client: TestClient, **body: Any) -> httpx.Response:
    if body.get("card_token"):
        body.setdefault("remote_ip", CUSTOMER_IP)
    return client.post(f"/api/accounts/{ACCOUNT}/checkout", json={"product": "platform", **body}, headers=AUTH)


# One account


def test_an_account_reads_back_as_it_was_put(api: Api, client: TestClient) -> None:
    put = api.put_account(ACCOUNT)
    assert api.get(f"/api/accounts/{ACCOUNT}") == put
    assert_error(client.get("/api/accounts/nobody", headers=AUTH), 404, "not_found")


def test_patching_an_account_changes_only_the_fields_given(api: Api, client: TestClient) -> None:
    before = api.put_account(ACCOUNT)
    response = client.patch(f"/api/accounts/{ACCOUNT}", json={"name": "Padaria Central S.A."}, headers=AUTH)
    assert response.status_code == 200, response.text
    assert response.json() == {**before, "name": "Padaria Central S.A."}

    cleared = client.patch(
        f"/api/accounts/{ACCOUNT}",
        json={"gateway_customer_id": None, "trial_ends_at": "2026-12-15"},
        headers=AUTH,
    )
    assert cleared.status_code == 200, cleared.text
    assert cleared.json()["gateway_customer_id"] is None
    assert cleared.json()["trial_ends_at"] == "2026-12-15T03:00:00Z"
    assert cleared.json()["contacts"] == before["contacts"]
    assert api.get(f"/api/accounts/{ACCOUNT}") == cleared.json()


@SQLITE_ONLY
def test_a_patch_is_validated_as_a_put_is_and_changes_nothing_when_refused(api: Api, client: TestClient) -> None:
    before = api.put_account(ACCOUNT)
    bad_document = client.patch(f"/api/accounts/{ACCOUNT}", json={"document": "11.222.333/0001-82"}, headers=AUTH)
    assert_error(bad_document, 422, "invalid_input", names="document")
    bad_contact = client.patch(f"/api/accounts/{ACCOUNT}", json={"contacts": [{"email": "nope"}]}, headers=AUTH)
    assert_error(bad_contact, 422, "invalid_input", names="contacts[0].email")
    empty_name = client.patch(f"/api/accounts/{ACCOUNT}", json={"name": ""}, headers=AUTH)
    assert_error(empty_name, 422, "invalid_input", names="name")
    assert api.get(f"/api/accounts/{ACCOUNT}") == before


@SQLITE_ONLY
def test_patching_an_unknown_account_answers_404_and_creates_nothing(client: TestClient) -> None:
    response = client.patch("/api/accounts/nobody", json={"name": "Ninguém"}, headers=AUTH)
    assert_error(response, 404, "not_found")
    assert_error(client.get("/api/accounts/nobody", headers=AUTH), 404, "not_found")


# Invoices and their charges


def test_an_invoice_shows_the_charge_collecting_it_until_one_pays_it(
    api: Api, client: TestClient, runtime: Runtime, asaas: FakeAsaas
) -> None:
    api.put_account(ACCOUNT)
    api.subscribe(ACCOUNT, "platform", payment_method="boleto")
    tick_once(runtime)
    [listed] = api.invoices(ACCOUNT)
    [charge] = api.get(f"/api/accounts/{ACCOUNT}/charges")["charges"]
    assert listed["open_charge_id"] == charge["id"]
    assert api.get(f"/api/invoices/{listed['id']}") == listed
    assert {key: charge[key] for key in ("product", "method", "amount_cents", "installments", "status")} == {
        "product": "platform",
        "method": "boleto",
        "amount_cents": 19990,
        "installments": 1,
        "status": "pending",
    }
    assert charge["invoice_ids"] == [listed["id"]]
    assert charge["created_at"] == "2026-12-01T03:05:00Z"
    assert charge["confirmed_at"] is None
    assert charge["boleto"]["line"].startswith("4619")
    assert charge["pix"] is None

    pay(runtime, [listed["id"]], "gw_1")
    paid = api.get(f"/api/invoices/{listed['id']}")
    assert paid["open_charge_id"] is None
    assert paid["status"] == "paid"
    statuses = {c["id"]: c["status"] for c in api.get(f"/api/accounts/{ACCOUNT}/charges")["charges"]}
    assert statuses[paid["charge_id"]] == "confirmed"
    assert_error(client.get("/api/invoices/inv_nothing", headers=AUTH), 404, "not_found")
    assert_error(client.get("/api/accounts/nobody/charges", headers=AUTH), 404, "not_found")


def test_charges_are_listed_newest_first_with_the_pix_code_the_checkout_answered(
    api: Api, client: TestClient, runtime: Runtime, clock: FrozenClock, asaas: FakeAsaas
) -> None:
    api.put_account(ACCOUNT)
    api.subscribe(ACCOUNT, "platform", payment_method="boleto")
    tick_once(runtime)
    clock.set(DAY_9)
    pix = checkout(client, method="pix")
    assert pix.status_code == 201, pix.text

    newest, day_one = api.get(f"/api/accounts/{ACCOUNT}/charges")["charges"]
    assert newest["id"] == pix.json()["charge_id"]
    assert newest["pix"] == pix.json()["pix"]
    assert newest["boleto"] is None
    assert (newest["status"], day_one["status"]) == ("pending", "canceled")
    [invoice] = api.invoices(ACCOUNT)
    assert invoice["open_charge_id"] == newest["id"]
    assert pix.json()["invoices"][0]["open_charge_id"] == newest["id"]


def test_a_card_checkout_answers_201_when_it_opens_the_charge_and_200_when_it_reuses_it(
    api: Api, client: TestClient, runtime: Runtime, clock: FrozenClock, asaas: FakeAsaas
) -> None:
    """Even while the gateway has not decided: the card's state is in the body, not in the HTTP status."""
    api.put_account(ACCOUNT)
    api.subscribe(ACCOUNT, "platform", payment_method="boleto")
    tick_once(runtime)
    clock.set(DAY_9)

    def under_analysis(request: httpx.Request) -> httpx.Response:
        created = asaas._create(request).json()
        asaas.payments[created["id"]]["status"] = "AWAITING_RISK_ANALYSIS"
        return httpx.Response(200, json=asaas.payments[created["id"]])

    asaas.create.side_effect = under_analysis
    created_before = asaas.create.call_count  # the day-1 boleto
    first = checkout(client, method="card", card_token="tok_ok")
    assert first.status_code == 201, first.text
    assert (first.json()["status"], first.json()["card"]["status"]) == ("pending", "pending")
    again = checkout(client, method="card", card_token="tok_ok")
    assert again.status_code == 200, again.text
    assert again.json()["charge_id"] == first.json()["charge_id"]
    assert asaas.create.call_count == created_before + 1


# Body limits


@SQLITE_ONLY
def test_an_api_body_over_the_limit_answers_413_announced_or_streamed(
    api: Api, client: TestClient, runtime: Runtime
) -> None:
    api.put_account(ACCOUNT)
    limit = runtime.settings.max_body_bytes
    padding = "x" * limit
    headers = {**AUTH, "Content-Type": "application/json"}
    body = f'{{"name": "{padding}"}}'.encode()

    announced = client.patch(f"/api/accounts/{ACCOUNT}", content=body, headers=headers)
    assert_error(announced, 413, "too_large")

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(body), 8192):
            yield body[start : start + 8192]

    streamed = client.put(f"/api/accounts/{ACCOUNT}", content=chunks(), headers=headers)
    assert "content-length" not in streamed.request.headers
    assert_error(streamed, 413, "too_large")
    assert api.get(f"/api/accounts/{ACCOUNT}")["name"] == PADARIA["name"]


@SQLITE_ONLY
def test_an_api_body_just_under_the_limit_is_read(api: Api, client: TestClient, runtime: Runtime) -> None:
    """The limit refuses what is over it, not what is near it: a body at the limit is validated as usual."""
    api.put_account(ACCOUNT)
    filler = " " * (runtime.settings.max_body_bytes - 40)
    body = f'{{"name": "Padaria Nova"{filler}}}'.encode()
    assert len(body) <= runtime.settings.max_body_bytes
    response = client.patch(
        f"/api/accounts/{ACCOUNT}", content=body, headers={**AUTH, "Content-Type": "application/json"}
    )
    assert response.status_code == 200, response.text
    assert response.json()["name"] == "Padaria Nova"
