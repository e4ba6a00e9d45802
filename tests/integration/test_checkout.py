"""POST /api/accounts/{id}/checkout against Asaas's API served by respx: what is charged, reuse, cancel, errors."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from starlette.testclient import TestClient

from billing.charging import plan_auto_debits, take_lease
from billing.checkout import CheckoutRequest, checkout
from billing.clock import FrozenClock, parse_instant
from billing.models import Charge
from billing.ports import GatewayUnavailable
from regua.cli import tick_once
from regua.gateway.asaas import AsaasGateway
from regua.runtime import Runtime
from tests.integration.asaas_fake import BASE, FakeAsaas, fake_asaas, refused
from tests.integration.conftest import AUTH, CUSTOMER_IP, Api

pytestmark = pytest.mark.usefixtures("openapi_checked")

ACCOUNT = "padaria-central"
DAY_9 = parse_instant("2026-12-09T11:00:00-03:00")
JAN_3 = parse_instant("2027-01-03T10:00:00-03:00")
SQLITE = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytest.fixture
def asaas() -> Iterator[FakeAsaas]:
    with fake_asaas() as fake:
        yield fake


def post(client: TestClient, body: dict[str, Any], account: str = ACCOUNT) -> httpx.Response:
    if body.get("card_token"):
        body = {"remote_ip": CUSTOMER_IP, **body}
    return client.post(f"/api/accounts/{account}/checkout", json=body, headers=AUTH)


@pytest.fixture
def blocked(api: Api, runtime: Runtime, clock: FrozenClock, asaas: FakeAsaas) -> str:
    """A boleto platform customer who did not pay December's boleto (issued on day 1): blocked, now on day 9.

    The gateway calls made so far (the day-1 boleto) are forgotten, so tests count their own.
    """
    api.put_account(ACCOUNT)
    api.subscribe(ACCOUNT, "platform", payment_method="boleto")
    tick_once(runtime)
    clock.set(DAY_9)
    tick_once(runtime)
    [invoice] = api.invoices(ACCOUNT)
    [day_one] = charge_rows(runtime)
    assert (day_one.method, day_one.status, day_one.boleto_line[:4]) == ("boleto", "pending", "4619")
    asaas.router.reset()
    return str(invoice["id"])


def charge_rows(runtime: Runtime) -> list[Charge]:
    return runtime.read(lambda session: list(session.scalars(select(Charge).order_by(Charge.created_at))))


def test_a_pix_checkout_answers_the_amount_the_invoice_and_the_copy_paste_code(
    client: TestClient, runtime: Runtime, asaas: FakeAsaas, blocked: str
) -> None:
    response = post(client, {"product": "platform", "method": "pix"})
    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == {"charge_id", "amount_cents", "method", "status", "invoices", "pix", "boleto", "card"}
    assert (body["amount_cents"], body["method"], body["status"]) == (19990, "pix", "pending")
    assert [invoice["id"] for invoice in body["invoices"]] == [blocked]
    assert body["pix"]["code"].startswith("00020101PIX")
    assert body["pix"]["qr_image"]
    assert body["boleto"] is None
    assert body["card"] is None
    [sent] = asaas.sent()
    assert (sent["billingType"], sent["externalReference"], sent["customer"]) == (
        "PIX",
        body["charge_id"],
        "cus_000005113026",
    )
    [charge] = [charge for charge in charge_rows(runtime) if charge.id == body["charge_id"]]
    assert charge.pix_code == body["pix"]["code"]
    assert charge.pix_qr == body["pix"]["qr_image"]
    assert charge.gateway_payment_id is not None
    assert charge.lease_until is None
    assert asaas.delete.call_count == 1  # the day-1 boleto, canceled at the gateway first


def test_a_checkout_by_the_subscriptions_own_method_answers_the_day_one_charge(
    client: TestClient, runtime: Runtime, asaas: FakeAsaas, blocked: str
) -> None:
    [day_one] = charge_rows(runtime)
    response = post(client, {"product": "platform", "method": "boleto"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["charge_id"], body["boleto"]["line"]) == (day_one.id, day_one.boleto_line)
    assert asaas.create.call_count == 0


def test_the_same_checkout_again_answers_the_pending_charge_and_its_code(
    client: TestClient, asaas: FakeAsaas, blocked: str
) -> None:
    first = post(client, {"product": "platform", "method": "pix"}).json()
    again = post(client, {"product": "platform", "method": "pix"})
    assert again.status_code == 200
    assert again.json() == first
    assert asaas.create.call_count == 1


def test_another_method_cancels_the_pending_charge_at_the_gateway_then_creates_its_own(
    client: TestClient, runtime: Runtime, asaas: FakeAsaas, blocked: str
) -> None:
    pix = post(client, {"product": "platform", "method": "pix"}).json()
    response = post(client, {"product": "platform", "method": "boleto"})
    assert response.status_code == 201, response.text
    boleto = response.json()
    assert boleto["charge_id"] != pix["charge_id"]
    assert boleto["boleto"]["line"].startswith("4619")
    assert boleto["boleto"]["url"]
    assert boleto["pix"] is None
    assert asaas.delete.call_count == 2  # the day-1 boleto, then the PIX
    [pix_payment] = [p for p in asaas.payments.values() if p["externalReference"] == pix["charge_id"]]
    assert pix_payment["deleted"] is True
    statuses = {charge.id: charge.status for charge in charge_rows(runtime)[1:]}
    assert statuses == {pix["charge_id"]: "canceled", boleto["charge_id"]: "pending"}
    [line] = [charge.boleto_line for charge in charge_rows(runtime) if charge.id == boleto["charge_id"]]
    assert line == boleto["boleto"]["line"]


def test_a_card_checkout_charges_now_and_lifts_the_block(
    client: TestClient, api: Api, asaas: FakeAsaas, blocked: str
) -> None:
    response = post(client, {"product": "platform", "method": "card", "card_token": "tok_ok"})
    assert response.status_code == 201, response.text
    body = response.json()
    assert (body["status"], body["card"]["status"], body["card"]["decline"]) == ("confirmed", "confirmed", None)
    assert body["invoices"][0]["status"] == "paid"
    assert asaas.sent()[0]["creditCardToken"] == "tok_ok"
    assert api.access(ACCOUNT, "platform")["state"] == "active"


def test_a_declined_card_checkout_answers_the_decline(client: TestClient, asaas: FakeAsaas, blocked: str) -> None:
    asaas.next_create.append(refused("Transação não autorizada: saldo insuficiente."))
    response = post(client, {"product": "platform", "method": "card", "card_token": "tok_soft_decline"})
    assert response.status_code == 201
    body = response.json()
    assert body["status"] == "failed"
    assert body["card"]["decline"] == {
        "hard": False,
        "reason": "insufficient_funds",
        "message": "Transação não autorizada: saldo insuficiente.",
    }


@SQLITE
def test_a_blocked_platform_pays_the_blocking_month_and_the_current_one_follows_its_cycle(
    client: TestClient, runtime: Runtime, clock: FrozenClock, asaas: FakeAsaas, blocked: str
) -> None:
    clock.set(JAN_3)
    tick_once(runtime)
    body = post(client, {"product": "platform", "method": "pix"}).json()
    assert [invoice["id"] for invoice in body["invoices"]] == [blocked]


@SQLITE
def test_a_blocked_mentorship_pays_every_open_month_in_one_charge(
    client: TestClient, api: Api, runtime: Runtime, clock: FrozenClock, asaas: FakeAsaas
) -> None:
    api.put_account(ACCOUNT)
    api.subscribe(ACCOUNT, "mentorship", payment_method="pix", monthly_price_cents=50000)
    tick_once(runtime)
    clock.set(JAN_3)
    tick_once(runtime)
    body = post(client, {"product": "mentorship", "method": "pix"}).json()
    assert body["amount_cents"] == 100000
    assert [invoice["period_start"] for invoice in body["invoices"]] == ["2026-12-01", "2027-01-01"]


@SQLITE
def test_a_card_checkout_takes_over_a_queued_auto_debit_instead_of_charging_twice(
    client: TestClient, api: Api, runtime: Runtime, asaas: FakeAsaas
) -> None:
    api.put_account(ACCOUNT)
    api.subscribe(ACCOUNT, "platform", payment_method="card_auto_debit", card_token="tok_old")
    from billing.invoicing import issue_due_invoices

    now = runtime.clock.now()
    runtime.transaction(lambda session: issue_due_invoices(session, now, runtime.calendar))
    [queued] = runtime.transaction(lambda session: plan_auto_debits(session, now, runtime.calendar, runtime.policy))
    response = post(client, {"product": "platform", "method": "card", "card_token": "tok_new"})
    assert response.status_code == 200, response.text
    assert response.json()["charge_id"] == queued
    assert response.json()["status"] == "confirmed"
    assert [sent["creditCardToken"] for sent in asaas.sent()] == ["tok_new"]
    assert len(charge_rows(runtime)) == 1


@SQLITE
def test_a_checkout_while_a_card_is_being_charged_is_a_conflict(
    client: TestClient, api: Api, runtime: Runtime, asaas: FakeAsaas
) -> None:
    api.put_account(ACCOUNT)
    api.subscribe(ACCOUNT, "platform", payment_method="card_auto_debit", card_token="tok_ok")
    from billing.invoicing import issue_due_invoices

    now = runtime.clock.now()
    runtime.transaction(lambda session: issue_due_invoices(session, now, runtime.calendar))
    [queued] = runtime.transaction(lambda session: plan_auto_debits(session, now, runtime.calendar, runtime.policy))
    runtime.transaction(lambda session: take_lease(session, session.get(Charge, queued), now))
    response = post(client, {"product": "platform", "method": "pix"})
    assert response.status_code == 409
    assert "in progress" in response.json()["error"]["message"]
    assert asaas.create.call_count == 0


@SQLITE
def test_a_prepaid_quarter_can_be_split_in_installments_by_card(
    client: TestClient, api: Api, runtime: Runtime, asaas: FakeAsaas
) -> None:
    api.put_account(ACCOUNT)
    api.subscribe(ACCOUNT, "platform", payment_method="card", frequency="quarterly", card_token="tok_ok")
    tick_once(runtime)
    response = post(client, {"product": "platform", "method": "card", "card_token": "tok_ok", "installments": 3})
    assert response.status_code == 201, response.text
    assert response.json()["card"]["installments"] == 3
    [sent] = asaas.sent()
    assert (sent["installmentCount"], sent["totalValue"]) == (3, 599.7)


@SQLITE
@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"method": "pix"}, "product"),
        ({"product": "hosting", "method": "pix"}, "product"),
        ({"product": "platform", "method": "cash"}, "method"),
        ({"product": "platform"}, "method"),
        ({"product": "platform", "method": "pix", "card_token": "tok_ok"}, "card_token"),
        ({"product": "platform", "method": "pix", "installments": 2}, "installments"),
        ({"product": "platform", "method": "card", "card_token": "tok_ok", "installments": 13}, "installments"),
        ({"product": "platform", "method": "card", "card_token": "tok_ok", "installments": 2}, "installments"),
    ],
)
def test_bad_input_is_422_naming_the_field(
    client: TestClient, asaas: FakeAsaas, blocked: str, body: dict[str, Any], field: str
) -> None:
    response = post(client, body)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["message"].startswith(f"{field}:")
    assert asaas.create.call_count == 0


@SQLITE
def test_an_unknown_account_is_404(client: TestClient, asaas: FakeAsaas) -> None:
    response = post(client, {"product": "platform", "method": "pix"}, account="nobody")
    assert response.status_code == 404


@SQLITE
def test_nothing_owed_is_409(client: TestClient, api: Api, asaas: FakeAsaas) -> None:
    api.put_account(ACCOUNT)
    response = post(client, {"product": "mentorship", "method": "pix"})
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "conflict"


@SQLITE
def test_an_account_without_a_gateway_customer_gets_one_at_the_gateway_before_its_charge(
    client: TestClient, api: Api, asaas: FakeAsaas, blocked: str
) -> None:
    api.put_account(ACCOUNT, gateway_customer_id=None)
    response = post(client, {"product": "platform", "method": "pix"})
    assert response.status_code == 201, response.text
    [customer] = asaas.customers.values()
    assert customer["externalReference"] == ACCOUNT
    assert asaas.sent()[-1]["customer"] == customer["id"]


@SQLITE
def test_a_gateway_outage_is_503_and_the_next_checkout_completes_the_same_charge(
    runtime: Runtime, asaas: FakeAsaas, blocked: str
) -> None:
    gateway = AsaasGateway(BASE, "asaas-test-key", sleep=lambda _seconds: None)
    request = CheckoutRequest("platform", "pix", None, 1)
    asaas.next_create.extend([httpx.Response(503)] * 3)
    with pytest.raises(GatewayUnavailable):
        checkout(runtime, gateway, ACCOUNT, request)
    result = checkout(runtime, gateway, ACCOUNT, request)
    assert not result.created
    assert result.charge.pix_code is not None
    assert [charge.status for charge in charge_rows(runtime)] == ["canceled", "pending"]  # the day-1 boleto, the PIX
    assert len(asaas.by_reference(result.charge.id)) == 1


@SQLITE
def test_the_api_answers_503_when_the_gateway_is_down(client: TestClient, asaas: FakeAsaas, blocked: str) -> None:
    asaas.next_create.extend([httpx.Response(200, text="<html>upstream down</html>")] * 3)
    response = post(client, {"product": "platform", "method": "pix"})
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "gateway_unavailable"


@SQLITE
def test_a_card_without_a_saved_token_is_paid_on_the_gateways_own_page_and_a_second_visit_gets_it_again(
    client: TestClient, asaas: FakeAsaas, blocked: str
) -> None:
    response = post(client, {"product": "platform", "method": "card"})
    assert response.status_code == 201, response.text
    body = response.json()
    assert (body["method"], body["status"]) == ("card", "pending")
    [sent] = asaas.sent()[-1:]
    assert sent["billingType"] == "CREDIT_CARD"
    assert "creditCardToken" not in sent  # regua never sees card data
    assert "creditCard" not in sent
    page = body["card"]["page_url"]
    assert page == asaas.by_reference(body["charge_id"])[0]["invoiceUrl"]
    again = post(client, {"product": "platform", "method": "card"})
    assert (again.status_code, again.json()["charge_id"], again.json()["card"]["page_url"]) == (
        200,
        body["charge_id"],
        page,
    )
