"""Card charges carry the customer's IP (Asaas's remoteIp): taken with the card, kept with it, sent with each charge."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import selectinload
from starlette.testclient import TestClient

from billing.charging import make_card_charge, plan_auto_debits
from billing.clock import FrozenClock, parse_instant
from billing.invoicing import issue_due_invoices
from billing.journal import Notification
from billing.models import Charge, Invoice, Subscription
from regua.gateway.asaas import AsaasGateway
from regua.mailer import SmtpPostman
from regua.portal.tokens import PortalTokens
from regua.runtime import Runtime
from regua.sandbox.simulator import create_simulator_app
from tests.integration.asaas_fake import BASE, FakeAsaas, fake_asaas, refused
from tests.integration.conftest import AUTH, Api, subscription
from webhooks.base import Provider
from workers.context import WorkerContext
from workers.tick import tick

pytestmark = pytest.mark.usefixtures("openapi_checked")

ACCOUNT = "padaria-central"
DAY_1 = parse_instant("2026-12-01T00:05:00-03:00")
DAY_3 = parse_instant("2026-12-03T00:05:00-03:00")
DAY_5 = parse_instant("2026-12-05T00:05:00-03:00")
IP = "203.0.113.7"
OTHER_IP = "198.51.100.4"
SQLITE = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
"""Validation and the client's request: the database changes nothing, so the embedded default only."""


@pytest.fixture
def asaas() -> Iterator[FakeAsaas]:
    with fake_asaas() as fake:
        yield fake


@pytest.fixture
def gateway() -> Iterator[AsaasGateway]:
    with AsaasGateway(BASE, "asaas-test-key", sleep=lambda _seconds: None) as client:
        yield client


@pytest.fixture
def context(runtime: Runtime, providers: dict[str, Provider], gateway: AsaasGateway) -> WorkerContext:
    return WorkerContext(runtime, providers, gateway, postman=lambda: SmtpPostman(runtime))


def put_card(client: TestClient, card_token: str | None, remote_ip: Any = None, **changes: Any) -> httpx.Response:
    """PUT a card auto-debit subscription with exactly the card and IP given (no IP when None)."""
    body = subscription(payment_method="card_auto_debit", **changes)
    body["card_token"] = card_token
    if remote_ip is not None:
        body["remote_ip"] = remote_ip
    return client.put(f"/api/accounts/{ACCOUNT}/subscriptions/platform", json=body, headers=AUTH)


def checkout(client: TestClient, **body: Any) -> httpx.Response:
    return client.post(f"/api/accounts/{ACCOUNT}/checkout", json={"product": "platform", **body}, headers=AUTH)


def refused_field(response: httpx.Response) -> str:
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_input"
    return str(error["message"]).split(":", 1)[0]


def saved_card(runtime: Runtime) -> tuple[str | None, str | None]:
    found = runtime.read(lambda session: session.execute(select(Subscription.card_token, Subscription.remote_ip)).one())
    return found.card_token, found.remote_ip


def issue_and_plan(runtime: Runtime, now: Any = DAY_1) -> list[str]:
    runtime.transaction(lambda session: issue_due_invoices(session, now, runtime.calendar))
    return runtime.transaction(lambda session: plan_auto_debits(session, now, runtime.calendar, runtime.policy))


def charges(runtime: Runtime) -> list[Charge]:
    query = select(Charge).options(selectinload(Charge.attempts)).order_by(Charge.created_at)
    return runtime.read(lambda session: list(session.scalars(query)))


# -- taking the IP with the card


@SQLITE
def test_a_new_card_without_the_customers_ip_is_refused_naming_remote_ip(
    client: TestClient, api: Api, runtime: Runtime
) -> None:
    api.put_account(ACCOUNT)
    assert refused_field(put_card(client, "tok_ok")) == "remote_ip"
    assert runtime.read(lambda session: list(session.scalars(select(Subscription)))) == []


@SQLITE
@pytest.mark.parametrize(
    "remote_ip",
    ["not-an-ip", "999.1.2.3", "203.0.113", "203.0.113.7:443", "fe80::1%eth0", "", " ", 203, ["203.0.113.7"]],
)
def test_anything_but_an_ipv4_or_ipv6_address_is_refused_naming_remote_ip(
    client: TestClient, api: Api, remote_ip: Any
) -> None:
    api.put_account(ACCOUNT)
    assert refused_field(put_card(client, "tok_ok", remote_ip)) == "remote_ip"


@SQLITE
def test_an_ip_without_a_card_is_refused_naming_remote_ip(client: TestClient, api: Api) -> None:
    api.put_account(ACCOUNT)
    body = subscription(payment_method="boleto", remote_ip=IP)
    response = client.put(f"/api/accounts/{ACCOUNT}/subscriptions/platform", json=body, headers=AUTH)
    assert refused_field(response) == "remote_ip"


@SQLITE
@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("203.0.113.7", "203.0.113.7"),
        ("::ffff:203.0.113.7", "203.0.113.7"),
        ("2001:DB8:0:0:0:0:0:1", "2001:db8::1"),
        (" 198.51.100.4 ", "198.51.100.4"),
    ],
)
def test_the_ip_is_kept_with_the_card_in_one_spelling(
    client: TestClient, api: Api, runtime: Runtime, given: str, kept: str
) -> None:
    api.put_account(ACCOUNT)
    response = put_card(client, "tok_ok", given)
    assert response.status_code == 201, response.text
    assert response.json()["remote_ip"] == kept
    assert saved_card(runtime) == ("tok_ok", kept)


@SQLITE
def test_the_same_card_sent_again_without_an_ip_keeps_its_own_and_a_new_card_needs_one(
    client: TestClient, api: Api, runtime: Runtime
) -> None:
    api.put_account(ACCOUNT)
    assert put_card(client, "tok_a", IP).status_code == 201

    # The product's back office changes the plan, re-sending the card it has, with no customer at hand.
    again = put_card(client, "tok_a", monthly_price_cents=29990)
    assert again.status_code == 200, again.text
    assert (again.json()["monthly_price_cents"], again.json()["remote_ip"]) == (29990, IP)

    assert refused_field(put_card(client, "tok_b")) == "remote_ip"
    assert saved_card(runtime) == ("tok_a", IP)

    assert put_card(client, "tok_b", OTHER_IP).json()["remote_ip"] == OTHER_IP
    assert saved_card(runtime) == ("tok_b", OTHER_IP)

    boleto = api.subscribe(ACCOUNT, "platform", payment_method="boleto")
    assert (boleto["has_card_token"], boleto["remote_ip"]) == (False, None)
    assert saved_card(runtime) == (None, None)


@SQLITE
@pytest.mark.parametrize(
    ("body", "field"),
    [
        pytest.param({"method": "card", "card_token": "tok_ok"}, "remote_ip", id="card-without-ip"),
        pytest.param({"method": "card", "card_token": "tok_ok", "remote_ip": "10.0.0"}, "remote_ip", id="bad-ip"),
        pytest.param({"method": "pix", "remote_ip": IP}, "remote_ip", id="pix-with-ip"),
        pytest.param({"method": "pix", "card_token": "tok_ok", "remote_ip": IP}, "card_token", id="pix-with-card"),
    ],
)
def test_a_checkout_takes_the_ip_only_with_a_card_and_a_card_token_only_with_it(
    client: TestClient, api: Api, asaas: FakeAsaas, body: dict[str, Any], field: str
) -> None:
    api.put_account(ACCOUNT)
    assert refused_field(checkout(client, **body)) == field
    assert asaas.create.call_count == 0


# -- sending it with every card charge


@SQLITE
def test_day_one_and_its_retry_send_the_ip_kept_with_the_card(
    runtime: Runtime, api: Api, gateway: AsaasGateway, asaas: FakeAsaas
) -> None:
    api.put_account(ACCOUNT)
    api.subscribe(ACCOUNT, "platform", payment_method="card_auto_debit", card_token="tok_ok", remote_ip=IP)
    [day_one] = issue_and_plan(runtime)
    asaas.next_create.append(refused("Transação não autorizada: saldo insuficiente."))
    assert make_card_charge(runtime, gateway, day_one).outcome == "declined"

    [retry] = issue_and_plan(runtime, DAY_3)
    assert make_card_charge(runtime, gateway, retry).outcome == "settled"

    assert [(sent["creditCardToken"], sent["remoteIp"]) for sent in asaas.sent()] == [("tok_ok", IP), ("tok_ok", IP)]


@SQLITE
def test_a_new_card_is_charged_with_the_ip_it_came_with(
    runtime: Runtime, api: Api, gateway: AsaasGateway, asaas: FakeAsaas
) -> None:
    api.put_account(ACCOUNT)
    api.subscribe(ACCOUNT, "platform", payment_method="card_auto_debit", card_token="tok_old", remote_ip=IP)
    [day_one] = issue_and_plan(runtime)
    asaas.next_create.append(refused("Transação não autorizada: cartão roubado."))
    make_card_charge(runtime, gateway, day_one)

    api.subscribe(ACCOUNT, "platform", payment_method="card_auto_debit", card_token="tok_new", remote_ip=OTHER_IP)
    [new_card] = issue_and_plan(runtime, DAY_3)
    assert make_card_charge(runtime, gateway, new_card).outcome == "settled"

    assert [sent["remoteIp"] for sent in asaas.sent()] == [IP, OTHER_IP]


@SQLITE
def test_a_card_checkout_sends_the_ip_of_its_own_request_not_the_saved_cards(
    client: TestClient, api: Api, runtime: Runtime, asaas: FakeAsaas
) -> None:
    api.put_account(ACCOUNT)
    api.subscribe(ACCOUNT, "platform", payment_method="card_auto_debit", card_token="tok_saved", remote_ip=IP)
    runtime.transaction(lambda session: issue_due_invoices(session, DAY_1, runtime.calendar))

    response = checkout(client, method="card", card_token="tok_typed", remote_ip=OTHER_IP)

    assert response.status_code == 201, response.text
    assert response.json()["status"] == "confirmed"
    [sent] = asaas.sent()
    assert (sent["creditCardToken"], sent["remoteIp"]) == ("tok_typed", OTHER_IP)
    assert saved_card(runtime) == ("tok_saved", IP)


# -- cards saved before regua kept the IP


def forget_ip(runtime: Runtime) -> None:
    """As migration 0007 leaves a card saved before it: no IP."""
    runtime.transaction(lambda session: session.execute(update(Subscription).values(remote_ip=None)))


def test_an_auto_debit_on_a_card_without_an_ip_is_declined_hard_without_asking_the_gateway(
    runtime: Runtime, api: Api, context: WorkerContext, clock: FrozenClock, asaas: FakeAsaas
) -> None:
    api.put_account(ACCOUNT)
    api.subscribe(ACCOUNT, "platform", payment_method="card_auto_debit", card_token="tok_ok", remote_ip=IP)
    forget_ip(runtime)

    report = tick(context, None, DAY_1)

    assert (report.counts["charges_started"], report.counts["charges_declined"]) == (1, 1)
    assert asaas.router.calls.call_count == 0
    [charge] = charges(runtime)
    [attempt] = charge.attempts
    assert (charge.status, charge.failure_code) == ("failed", "remote_ip_missing")
    assert (attempt.decline_class, attempt.decline_code) == ("hard", "remote_ip_missing")
    [told] = runtime.read(
        lambda session: list(session.scalars(select(Notification).where(Notification.kind == "payment_failed")))
    )
    assert told.context["failure_reason"] == "remote_ip_missing"
    assert "next_retry_on" not in told.context  # the email asks for another card or PIX or boleto

    for retry_day in (DAY_3, DAY_5):
        clock.set(retry_day)
        assert tick(context, None, retry_day).counts["charges_started"] == 0
    assert asaas.router.calls.call_count == 0
    assert runtime.read(lambda session: session.scalars(select(Invoice.status)).one()) == "open"


@SQLITE
def test_a_new_card_with_its_ip_after_a_missing_ip_decline_is_charged_at_the_next_pass(
    runtime: Runtime, api: Api, context: WorkerContext, clock: FrozenClock, asaas: FakeAsaas
) -> None:
    api.put_account(ACCOUNT)
    api.subscribe(ACCOUNT, "platform", payment_method="card_auto_debit", card_token="tok_ok", remote_ip=IP)
    forget_ip(runtime)
    tick(context, None, DAY_1)

    api.subscribe(ACCOUNT, "platform", payment_method="card_auto_debit", card_token="tok_new", remote_ip=OTHER_IP)
    later = DAY_1 + timedelta(hours=10)
    clock.set(later)

    assert tick(context, None, later).counts["charges_settled"] == 1
    [sent] = asaas.sent()
    assert (sent["creditCardToken"], sent["remoteIp"]) == ("tok_new", OTHER_IP)


# -- end to end through the simulator


@SQLITE
def test_a_card_charge_through_the_simulator_carries_the_ip_and_pays_the_month(
    runtime: Runtime, api: Api, clock: FrozenClock
) -> None:
    api.put_account(ACCOUNT)
    api.subscribe(ACCOUNT, "platform", payment_method="card_auto_debit", card_token="tok_ok", remote_ip=IP)
    [charge_id] = issue_and_plan(runtime)
    posted: list[dict[str, Any]] = []

    def record(request: httpx.Request) -> None:
        if request.method == "POST" and request.url.path == "/v3/payments":
            posted.append(json.loads(request.read()))

    with TestClient(create_simulator_app("", clock=clock), base_url="http://sim.test") as sim:
        sim.event_hooks = {"request": [record], "response": []}
        with AsaasGateway("http://sim.test", "asaas-test-key", client=sim) as gateway:
            assert make_card_charge(runtime, gateway, charge_id).outcome == "settled"
        [payment] = sim.get("/sim/state").json()["payments"]

    assert [body["remoteIp"] for body in posted] == [IP]
    assert (payment["externalReference"], payment["status"], payment["value"]) == (charge_id, "CONFIRMED", 189.9)
    assert runtime.read(lambda session: session.scalars(select(Invoice.status)).one()) == "paid"


# -- a card typed on the gateway's own page


def portal_link(runtime: Runtime) -> str:
    return f"/portal/{PortalTokens(runtime.settings.secret_key).issue(ACCOUNT, runtime.clock.now())}"


@SQLITE
def test_the_payment_pages_card_path_creates_the_card_payment_with_the_customers_address(
    client: TestClient, api: Api, runtime: Runtime, asaas: FakeAsaas
) -> None:
    api.put_account(ACCOUNT)
    api.subscribe(ACCOUNT, "platform", payment_method="boleto")
    runtime.transaction(lambda session: issue_due_invoices(session, DAY_1, runtime.calendar))
    customer = TestClient(client.app, client=("::ffff:203.0.113.50", 51000))

    response = customer.post(
        f"{portal_link(runtime)}/pagar", data={"product": "platform", "method": "card"}, follow_redirects=False
    )

    assert response.status_code == 303, response.text
    [card_page] = [sent for sent in asaas.sent() if sent["billingType"] == "CREDIT_CARD"]
    assert card_page["remoteIp"] == "203.0.113.50"
    assert "creditCardToken" not in card_page


@SQLITE
def test_a_card_page_checkout_from_the_api_sends_the_ip_it_is_given(
    client: TestClient, api: Api, runtime: Runtime, asaas: FakeAsaas
) -> None:
    api.put_account(ACCOUNT)
    api.subscribe(ACCOUNT, "platform", payment_method="boleto")
    runtime.transaction(lambda session: issue_due_invoices(session, DAY_1, runtime.calendar))

    with_ip = checkout(client, method="card", remote_ip=IP)
    assert with_ip.status_code == 201, with_ip.text
    assert with_ip.json()["card"]["page_url"]
    [card_page] = [sent for sent in asaas.sent() if sent["billingType"] == "CREDIT_CARD"]
    assert card_page["remoteIp"] == IP


@SQLITE
def test_after_a_missing_ip_decline_the_payment_page_offers_pix_boleto_and_a_card_typed_anew(
    client: TestClient, runtime: Runtime, api: Api, context: WorkerContext, asaas: FakeAsaas
) -> None:
    api.put_account(ACCOUNT)
    api.subscribe(ACCOUNT, "platform", payment_method="card_auto_debit", card_token="tok_ok", remote_ip=IP)
    forget_ip(runtime)
    tick(context, None, DAY_1)

    page = client.get(portal_link(runtime))

    assert page.status_code == 200
    for method in ("pix", "boleto", "card"):
        assert f'name="method" value="{method}"' in page.text
    assert "R$ 189,90" in page.text


@SQLITE
def test_a_card_saved_without_an_ip_given_its_ip_before_day_one_is_charged_as_usual(
    runtime: Runtime, api: Api, context: WorkerContext, asaas: FakeAsaas
) -> None:
    api.put_account(ACCOUNT)
    api.subscribe(ACCOUNT, "platform", payment_method="card_auto_debit", card_token="tok_ok", remote_ip=IP)
    forget_ip(runtime)
    api.subscribe(ACCOUNT, "platform", payment_method="card_auto_debit", card_token="tok_ok", remote_ip=OTHER_IP)

    assert tick(context, None, DAY_1).counts["charges_settled"] == 1
    [sent] = asaas.sent()
    assert (sent["creditCardToken"], sent["remoteIp"]) == ("tok_ok", OTHER_IP)
