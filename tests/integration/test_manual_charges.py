"""The PIX or boleto charge of each manual invoice, opened by the tick that issues it (rule 3.3), against Asaas's
API served by respx (and once against the gateway simulator over real HTTP), on a real database."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.orm import selectinload
from starlette.testclient import TestClient

from billing.charging import (
    cancel_at_gateway,
    claim_manual_charge,
    issue_manual_charge,
    manual_charge_key,
    plan_manual_charges,
    send_manual_charge,
)
from billing.charging.inserts import insert_charges
from billing.clock import FrozenClock, parse_instant
from billing.invoicing import issue_due_invoices
from billing.models import Charge, Payment
from billing.ports import GatewayUnavailable, ManualCharge
from billing.settlement import ConfirmedPayment, open_charge, settle_charge
from regua.gateway.asaas import AsaasGateway
from regua.mailer import SmtpPostman
from regua.runtime import Runtime
from tests.integration.asaas_fake import BASE, FakeAsaas, fake_asaas
from tests.integration.conftest import AUTH, Api
from tests.integration.test_charging_simulator import World, day, world  # noqa: F401  (the `world` fixture)
from webhooks.base import Provider
from workers.actors import declare_actors
from workers.broker import build_broker
from workers.context import WorkerContext
from workers.tick import tick

ACCOUNT = "padaria-central"
DAY_1 = parse_instant("2026-12-01T00:05:00-03:00")
DAY_9 = parse_instant("2026-12-09T11:00:00-03:00")
SQLITE = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
"""Logic the database does not change: run on the embedded default only, to keep the suite fast."""


@pytest.fixture
def asaas() -> Iterator[FakeAsaas]:
    with fake_asaas() as fake:
        yield fake


@pytest.fixture
def gateway() -> Iterator[AsaasGateway]:
    """The real client, without its backoff sleeps."""
    with AsaasGateway(BASE, "asaas-test-key", sleep=lambda _seconds: None) as client:
        yield client


@pytest.fixture
def context(runtime: Runtime, providers: dict[str, Provider], gateway: AsaasGateway) -> WorkerContext:
    return WorkerContext(runtime, providers, gateway, postman=lambda: SmtpPostman(runtime))


def subscribe(api: Api, method: str = "boleto", account: str = ACCOUNT, **changes: Any) -> None:
    api.put_account(account)
    api.subscribe(account, "platform", payment_method=method, **changes)


def issue(runtime: Runtime, now: Any = DAY_1) -> None:
    runtime.transaction(lambda session: issue_due_invoices(session, now, runtime.calendar))


def plan(runtime: Runtime, now: Any = DAY_1) -> list[str]:
    return runtime.transaction(lambda session: plan_manual_charges(session, now))


def charges(runtime: Runtime) -> list[Charge]:
    query = select(Charge).options(selectinload(Charge.invoice_links)).order_by(Charge.created_at, Charge.id)
    return runtime.read(lambda session: list(session.scalars(query)))


def invoice_id(api: Api, account: str = ACCOUNT) -> str:
    [invoice] = api.invoices(account)
    return str(invoice["id"])


# -- the tick


@pytest.mark.parametrize(("method", "billing_type"), [("boleto", "BOLETO"), ("pix", "PIX")])
def test_the_tick_that_issues_a_manual_invoice_gives_it_one_charge_with_its_codes_once(
    runtime: Runtime, api: Api, context: WorkerContext, asaas: FakeAsaas, method: str, billing_type: str
) -> None:
    subscribe(api, method)
    report = tick(context, None, DAY_1)
    assert (report.counts["manual_charges_started"], report.counts["manual_charges_issued"]) == (1, 1)
    assert report.counts["charges_started"] == 0

    [charge] = charges(runtime)
    assert charge.invoice_ids == [invoice_id(api)]
    assert (charge.idempotency_key, charge.method, charge.amount_cents, charge.status) == (
        manual_charge_key(invoice_id(api)),
        method,
        19990,
        "pending",
    )
    assert charge.source == "manual"
    assert charge.lease_until is None
    if method == "pix":
        assert charge.pix_code.startswith("00020101PIX")
        assert charge.pix_qr
    else:
        assert charge.boleto_line.startswith("4619")
        assert charge.boleto_url
    [sent] = asaas.sent()
    assert (sent["billingType"], sent["externalReference"], sent["dueDate"], sent["value"]) == (
        billing_type,
        charge.id,
        "2026-12-01",
        199.9,
    )
    assert sent["description"] == "Mensalidade 12/2026"
    assert charge.gateway_payment_id == asaas.by_reference(charge.id)[0]["id"]

    again = tick(context, None, DAY_1 + timedelta(minutes=5))
    assert (again.counts["manual_charges_started"], again.counts["manual_charges_requeued"]) == (0, 0)
    assert asaas.create.call_count == 1


@SQLITE
def test_the_tick_with_a_broker_queues_one_job_per_manual_charge_on_the_charges_queue(
    runtime: Runtime, api: Api, context: WorkerContext, asaas: FakeAsaas
) -> None:
    subscribe(api, "pix")
    subscribe(api, "boleto", account="mercado-sul")
    jobs = declare_actors(build_broker(""), lambda: context)
    report = tick(context, jobs, DAY_1)
    assert report.counts["manual_charges_started"] == 2
    queued = [json.loads(message) for message in jobs.broker.queues["charges"].queue]
    assert {message["actor_name"] for message in queued} == {"issue_manual_charge"}
    assert sorted(message["args"][0] for message in queued) == sorted(charge.id for charge in charges(runtime))
    assert asaas.create.call_count == 0

    for message in queued * 2:  # every job runs twice
        jobs.charging.manual.fn(*message["args"])
    assert asaas.create.call_count == 2
    assert all(charge.gateway_payment_id for charge in charges(runtime))


def test_concurrent_passes_open_the_charge_once(runtime: Runtime, api: Api) -> None:
    subscribe(api)
    issue(runtime)
    [created] = plan(runtime)
    assert plan(runtime) == []
    # A pass that read the invoice as uncharged before the first one committed writes the same key: nothing.
    racing = {
        "id": "chg_racing",
        "account_id": ACCOUNT,
        "product": "platform",
        "method": "boleto",
        "amount_cents": 19990,
        "installments": 1,
        "status": "pending",
        "idempotency_key": manual_charge_key(invoice_id(api)),
        "gateway": "asaas",
        "source": "manual",
        "regua_day": None,
        "card_ref": None,
        "created_at": DAY_1,
        "invoice_id": invoice_id(api),
    }
    assert runtime.transaction(lambda session: insert_charges(session, [racing], None)) == []
    assert [charge.id for charge in charges(runtime)] == [created]


@SQLITE
def test_no_charge_for_auto_debit_paid_verifying_or_already_charged_invoices(
    runtime: Runtime, api: Api, client: TestClient
) -> None:
    api.put_account(ACCOUNT)
    api.subscribe(ACCOUNT, "platform", payment_method="card_auto_debit", card_token="tok_ok")
    for account in ("verificando", "pago", "checkout"):
        subscribe(api, "boleto", account=account)
    issue(runtime)
    receipt = client.post(f"/api/invoices/{invoice_id(api, 'verificando')}/receipts", headers=AUTH)
    assert receipt.status_code == 200, receipt.text
    paid = runtime.transaction(lambda session: open_charge(session, [invoice_id(api, "pago")], "pix", DAY_1).id)
    confirmed = ConfirmedPayment("asaas", "pay_paid", 19990, "pix", DAY_1)
    runtime.transaction(lambda session: settle_charge(session, paid, confirmed, DAY_1))
    runtime.transaction(lambda session: open_charge(session, [invoice_id(api, "checkout")], "pix", DAY_1))
    assert plan(runtime) == []
    assert plan(runtime, DAY_9) == []


@SQLITE
def test_a_gateway_outage_leaves_the_charge_without_codes_and_a_pass_an_hour_later_issues_it_once(
    runtime: Runtime, api: Api, context: WorkerContext, asaas: FakeAsaas
) -> None:
    subscribe(api)
    subscribe(api, account="mercado-sul")
    asaas.create.side_effect = httpx.ConnectError("down")  # never sent before: posted without a lookup first
    report = tick(context, None, DAY_1)
    assert report.counts["manual_charges_started"] == 2
    assert (report.counts["manual_charges_error"], report.counts["manual_charges_deferred"]) == (1, 1)
    assert all(c.status == "pending" and c.boleto_line is None for c in charges(runtime))
    assert all(c.lease_until is None for c in charges(runtime))

    asaas.create.side_effect = asaas._create
    early = tick(context, None, DAY_1 + timedelta(minutes=30))
    assert early.counts["manual_charges_requeued"] == 0
    later = tick(context, None, DAY_1 + timedelta(hours=1, minutes=1))
    assert (later.counts["manual_charges_requeued"], later.counts["manual_charges_issued"]) == (2, 2)
    assert all(c.boleto_line for c in charges(runtime))
    assert len(asaas.payments) == 2
    assert tick(context, None, DAY_1 + timedelta(hours=3)).counts["manual_charges_requeued"] == 0


@SQLITE
def test_the_job_raises_on_an_unavailable_gateway_so_dramatiq_retries_it_and_a_lost_answer_is_found_again(
    runtime: Runtime, api: Api, context: WorkerContext, asaas: FakeAsaas
) -> None:
    subscribe(api)
    issue(runtime)
    [charge_id] = plan(runtime)
    jobs = declare_actors(build_broker(""), lambda: context)

    def created_then_lost(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        asaas.add(body["externalReference"], status="PENDING", value=body["value"], kind=body["billingType"])
        raise httpx.ReadTimeout("the answer never came", request=request)

    asaas.create.side_effect = created_then_lost
    asaas.lookup.side_effect = [httpx.ConnectError("down")] * 3  # and after the lost answer it cannot be asked
    with pytest.raises(GatewayUnavailable):
        jobs.charging.manual.fn(charge_id)
    [charge] = charges(runtime)
    assert (charge.status, charge.lease_until is not None, charge.sent_at is not None) == ("pending", False, True)

    asaas.lookup.side_effect = asaas._list
    jobs.charging.manual.fn(charge_id)
    jobs.charging.manual.fn(charge_id)
    assert asaas.create.call_count == 1
    assert len(asaas.by_reference(charge_id)) == 1
    [charge] = charges(runtime)
    assert charge.boleto_line.startswith("4619")


@SQLITE
def test_a_refused_charge_fails_and_is_not_opened_again(
    runtime: Runtime, api: Api, gateway: AsaasGateway, asaas: FakeAsaas
) -> None:
    subscribe(api)
    issue(runtime)
    [charge_id] = plan(runtime)
    asaas.next_create.append(httpx.Response(400, json={"errors": [{"code": "invalid_customer", "description": "x"}]}))
    assert issue_manual_charge(runtime, gateway, charge_id) == "rejected"
    [charge] = charges(runtime)
    assert (charge.status, charge.failure_code) == ("failed", "gateway_rejected")
    assert plan(runtime, DAY_1 + timedelta(hours=2)) == []


@SQLITE
def test_an_account_without_a_gateway_customer_gets_one_and_its_boleto_the_same_pass(
    runtime: Runtime, api: Api, context: WorkerContext, asaas: FakeAsaas
) -> None:
    subscribe(api)
    api.put_account(ACCOUNT, gateway_customer_id=None)
    report = tick(context, None, DAY_1)
    assert report.counts["manual_charges_issued"] == 1
    assert charges(runtime)[0].boleto_line
    [customer] = asaas.customers.values()
    assert asaas.sent()[0]["customer"] == customer["id"]
    assert tick(context, None, DAY_1 + timedelta(hours=1, minutes=1)).counts["manual_charges_issued"] == 0
    assert asaas.create_customer.call_count == 1


@SQLITE
def test_a_charge_canceled_while_its_codes_were_being_created_is_canceled_at_the_gateway(
    runtime: Runtime, api: Api, gateway: AsaasGateway, asaas: FakeAsaas
) -> None:
    subscribe(api)
    issue(runtime)
    [charge_id] = plan(runtime)
    claim = runtime.transaction(lambda session: claim_manual_charge(session, charge_id, DAY_1, runtime.calendar))
    assert isinstance(claim, ManualCharge)
    # Meanwhile the invoice is paid through another charge: this one is canceled in the books.
    other = runtime.transaction(lambda session: open_charge(session, [invoice_id(api)], "pix", DAY_1).id)
    confirmed = ConfirmedPayment("asaas", "pay_other", 19990, "pix", DAY_1)
    runtime.transaction(lambda session: settle_charge(session, other, confirmed, DAY_1))
    assert cancel_at_gateway(runtime, gateway, charge_id) == "not_at_gateway"  # a follow-up ran before it existed

    assert send_manual_charge(runtime, gateway, claim) == "canceled_meanwhile"
    assert cancel_at_gateway(runtime, gateway, charge_id) == "canceled"
    assert asaas.by_reference(charge_id) == []  # deleted at the gateway
    assert asaas.delete.call_count == 1


# -- checkouts


def checkout(client: TestClient, product: str, method: str) -> Any:
    return client.post(f"/api/accounts/{ACCOUNT}/checkout", json={"product": product, "method": method}, headers=AUTH)


@SQLITE
def test_a_checkout_by_the_same_method_answers_the_charge_issued_with_the_invoice(
    runtime: Runtime, api: Api, client: TestClient, context: WorkerContext, asaas: FakeAsaas
) -> None:
    subscribe(api, "pix")
    tick(context, None, DAY_1)
    [issued] = charges(runtime)
    response = checkout(client, "platform", "pix")
    assert response.status_code == 200, response.text
    assert (response.json()["charge_id"], response.json()["pix"]["code"]) == (issued.id, issued.pix_code)
    assert asaas.create.call_count == 1


@SQLITE
def test_a_checkout_completes_a_charge_whose_codes_never_came(
    runtime: Runtime, api: Api, client: TestClient, context: WorkerContext, asaas: FakeAsaas
) -> None:
    subscribe(api, "pix")
    issue(runtime)
    [issued] = plan(runtime)  # its job never ran
    response = checkout(client, "platform", "pix")
    assert response.status_code == 200, response.text
    assert response.json()["charge_id"] == issued
    assert response.json()["pix"]["code"].startswith("00020101PIX")
    assert issue_manual_charge(runtime, context.gateway, issued) == "already_issued"  # type: ignore[arg-type]
    assert asaas.create.call_count == 1


def test_a_mentorship_checkout_cancels_each_months_charge_at_the_gateway_and_opens_one_combined(
    runtime: Runtime, api: Api, client: TestClient, context: WorkerContext, asaas: FakeAsaas, clock: FrozenClock
) -> None:
    api.put_account(ACCOUNT)
    api.subscribe(ACCOUNT, "mentorship", payment_method="boleto", monthly_price_cents=50000, starts_on="2026-11-01")
    tick(context, None, parse_instant("2026-11-01T00:05:00-03:00"))
    tick(context, None, DAY_9)
    clock.set(DAY_9)
    monthly = charges(runtime)
    assert [charge.amount_cents for charge in monthly] == [50000, 50000]
    response = checkout(client, "mentorship", "pix")
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["amount_cents"] == 100000
    assert asaas.delete.call_count == 2
    assert all(asaas.by_reference(charge.id) == [] for charge in monthly)
    statuses = {charge.id: charge.status for charge in charges(runtime)}
    assert statuses == {monthly[0].id: "canceled", monthly[1].id: "canceled", body["charge_id"]: "pending"}

    again = checkout(client, "mentorship", "pix")
    assert (again.status_code, again.json()["charge_id"]) == (200, body["charge_id"])
    assert asaas.create.call_count == 3
    assert tick(context, None, DAY_9 + timedelta(hours=2)).counts["manual_charges_started"] == 0


# -- over real HTTP, against the gateway simulator


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_boleto_issued_on_day_one_is_paid_at_the_simulator_and_settles_the_invoice(world: World) -> None:  # noqa: F811
    world.api.subscribe(ACCOUNT, "platform", payment_method="boleto")
    report = world.tick(day(1))
    assert report.counts["manual_charges_started"] == 1
    world.settle(lambda: bool(world.charges()[0].boleto_line))
    [charge] = world.charges()
    [created] = world.sim_payments()
    assert (created["billingType"], created["externalReference"], created["value"]) == ("BOLETO", charge.id, 199.9)
    assert len(charge.boleto_line) == 47
    assert world.tick(day(1)).counts["manual_charges_started"] == 0

    assert world.sim.post(f"/sim/payments/{created['id']}/pay").status_code == 200
    world.settle(lambda: world.api.invoices(ACCOUNT)[0]["status"] == "paid")
    [payment] = world.rows(Payment)
    assert (payment.amount_cents, payment.method, payment.charge_id) == (19990, "boleto", charge.id)
    assert len(world.sim_payments()) == 1
