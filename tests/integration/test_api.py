"""The product API (SPEC 4.2) against a real database: shapes, validation, errors and authentication."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy.orm import Session
from starlette.testclient import TestClient

from billing.clock import FrozenClock, parse_instant
from billing.settlement import ConfirmedPayment, open_charge, settle_charge
from regua.app import create_app
from regua.assembly import build_providers
from regua.cli import tick_once
from regua.runtime import Runtime, build_runtime
from regua.settings import Settings
from tests.integration.conftest import AUTH, PADARIA, Api, subscription
from tests.openapi_contract import check_every_response

pytestmark = pytest.mark.usefixtures("openapi_checked")

ACCOUNT = "padaria-central"
# Checks made before any query cannot depend on the backend: one run, on SQLite, is enough.
SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
INVOICE_FIELDS = {
    "id",
    "account_id",
    "product",
    "period_start",
    "period_end",
    "due_date",
    "subtotal_cents",
    "discount_cents",
    "total_cents",
    "status",
    "paid_at",
    "charge_id",
}


def assert_error(response: Any, status: int, code: str, names: str | None = None) -> None:
    """The one error shape of SPEC 4: exactly {"error": {"code", "message"}}, naming the field."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str)
    assert "Traceback" not in response.text
    if names is not None:
        assert names in body["error"]["message"]


def pay(runtime: Runtime, invoice_ids: list[str], gateway_payment_id: str) -> None:
    now = runtime.clock.now()

    def work(session: Session) -> None:
        charge = open_charge(session, invoice_ids, "pix", now)
        payment = ConfirmedPayment("asaas", gateway_payment_id, charge.amount_cents, "pix", now)
        settle_charge(session, charge.id, payment, now)

    runtime.transaction(work)


# Accounts


def test_putting_an_account_creates_it_then_updates_it_and_replaces_its_contacts(client: TestClient) -> None:
    created = client.put(f"/api/accounts/{ACCOUNT}", json=PADARIA, headers=AUTH)
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["id"] == ACCOUNT
    assert body["name"] == "Padaria Central Ltda"
    assert body["document"] == "11222333000181"
    assert [c["email"] for c in body["contacts"]] == ["ana@padaria.example", "caixa@padaria.example"]

    changed = {
        **PADARIA,
        "name": "Padaria Central S.A.",
        "contacts": [{"email": "bruno@padaria.example", "name": "Bruno", "manage_payments": True}],
    }
    updated = client.put(f"/api/accounts/{ACCOUNT}", json=changed, headers=AUTH)
    assert updated.status_code == 200, updated.text
    assert updated.json()["name"] == "Padaria Central S.A."
    assert updated.json()["contacts"] == [{"email": "bruno@padaria.example", "name": "Bruno", "manage_payments": True}]

    again = client.put(f"/api/accounts/{ACCOUNT}", json=changed, headers=AUTH)
    assert again.status_code == 200
    assert again.json()["contacts"] == updated.json()["contacts"]


@SQLITE_ONLY
@pytest.mark.parametrize(
    ("body", "field"),
    [
        pytest.param({**PADARIA, "document": "11.222.333/0001-82"}, "document", id="bad-document"),
        pytest.param(
            {**PADARIA, "contacts": [{"email": "ana-at-padaria.example", "manage_payments": True}]},
            "contacts[0].email",
            id="bad-email",
        ),
        pytest.param({k: v for k, v in PADARIA.items() if k != "name"}, "name", id="missing-name"),
    ],
)
def test_an_invalid_account_is_refused_with_422_naming_the_field(
    client: TestClient, body: dict[str, Any], field: str
) -> None:
    response = client.put(f"/api/accounts/{ACCOUNT}", json=body, headers=AUTH)
    assert_error(response, 422, "invalid_input", names=field)


@SQLITE_ONLY
def test_an_account_id_with_bad_characters_is_refused_with_422_naming_the_id(client: TestClient) -> None:
    response = client.put("/api/accounts/padaria.central", json=PADARIA, headers=AUTH)
    assert_error(response, 422, "invalid_input", names="id")


# Subscriptions


@SQLITE_ONLY
@pytest.mark.parametrize(
    ("changes", "field"),
    [
        pytest.param({"frequency": "weekly"}, "frequency", id="unknown-frequency"),
        pytest.param(
            {"frequency": "quarterly", "payment_method": "card_auto_debit", "card_token": "tok_ok"},
            "payment_method",
            id="auto-debit-quarterly",
        ),
        pytest.param({"payment_method": "card_auto_debit"}, "card_token", id="auto-debit-without-card"),
        pytest.param(
            {"frequency": "annual", "payment_method": "card", "card_token": "tok_ok", "installments": 13},
            "installments",
            id="installments-13",
        ),
        pytest.param(
            {"frequency": "quarterly", "payment_method": "boleto", "installments": 3},
            "installments",
            id="installments-on-boleto",
        ),
        pytest.param({"monthly_price_cents": -100}, "monthly_price_cents", id="negative-price"),
    ],
)
def test_an_invalid_subscription_is_refused_with_422_naming_the_field(
    api: Api, client: TestClient, changes: dict[str, Any], field: str
) -> None:
    api.put_account(ACCOUNT)
    response = client.put(f"/api/accounts/{ACCOUNT}/subscriptions/platform", json=subscription(**changes), headers=AUTH)
    assert_error(response, 422, "invalid_input", names=field)


@SQLITE_ONLY
def test_an_unknown_product_is_refused_with_422_naming_the_product(api: Api, client: TestClient) -> None:
    api.put_account(ACCOUNT)
    response = client.put(f"/api/accounts/{ACCOUNT}/subscriptions/hosting", json=subscription(), headers=AUTH)
    assert_error(response, 422, "invalid_input", names="product")


def test_putting_a_subscription_creates_it_then_changes_it(api: Api, client: TestClient) -> None:
    api.put_account(ACCOUNT)
    path = f"/api/accounts/{ACCOUNT}/subscriptions/platform"
    created = client.put(path, json=subscription(), headers=AUTH)
    assert created.status_code == 201, created.text
    assert created.json()["monthly_price_cents"] == 19990
    changed = client.put(path, json=subscription(monthly_price_cents=9990), headers=AUTH)
    assert changed.status_code == 200, changed.text
    assert changed.json()["monthly_price_cents"] == 9990
    assert changed.json()["id"] == created.json()["id"]


# Unknown ids


@pytest.mark.parametrize("what", ["access", "invoices", "payments", "timeline"])
def test_reading_an_unknown_account_answers_404(client: TestClient, what: str) -> None:
    response = client.get(f"/api/accounts/nobody/{what}", headers=AUTH)
    assert_error(response, 404, "not_found")


def test_subscribing_an_unknown_account_answers_404(client: TestClient) -> None:
    response = client.put("/api/accounts/nobody/subscriptions/platform", json=subscription(), headers=AUTH)
    assert_error(response, 404, "not_found")


def test_a_receipt_for_an_unknown_invoice_answers_404(client: TestClient) -> None:
    response = client.post("/api/invoices/inv_nothing/receipts", headers=AUTH)
    assert_error(response, 404, "not_found")


@SQLITE_ONLY
def test_an_unknown_path_answers_404_in_the_error_shape(client: TestClient) -> None:
    assert_error(client.get("/api/nothing-here", headers=AUTH), 404, "not_found")


# Authentication and bodies


@SQLITE_ONLY
@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="no-token"),
        pytest.param({"Authorization": "Bearer wrong-token"}, id="wrong-token"),
        pytest.param({"Authorization": "Basic dGVzdC10b2tlbg=="}, id="wrong-scheme"),
    ],
)
def test_the_api_answers_401_without_the_right_bearer_token(client: TestClient, headers: dict[str, str]) -> None:
    response = client.get(f"/api/accounts/{ACCOUNT}/access", headers=headers)
    assert_error(response, 401, "unauthorized")
    assert response.headers["www-authenticate"] == "Bearer"
    write = client.put(f"/api/accounts/{ACCOUNT}", json=PADARIA, headers=headers)
    assert_error(write, 401, "unauthorized")


@SQLITE_ONLY
def test_a_body_that_is_not_json_answers_415(client: TestClient) -> None:
    response = client.put(
        f"/api/accounts/{ACCOUNT}",
        content=b"name=Padaria",
        headers={**AUTH, "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert_error(response, 415, "unsupported_media_type")


@SQLITE_ONLY
def test_invalid_json_answers_400(client: TestClient) -> None:
    response = client.put(
        f"/api/accounts/{ACCOUNT}",
        content=b'{"name": "Padaria",',
        headers={**AUTH, "Content-Type": "application/json"},
    )
    assert_error(response, 400, "invalid_json")


# Reading


def test_invoices_are_listed_newest_first_with_the_appendix_fields(
    api: Api, runtime: Runtime, clock: FrozenClock
) -> None:
    api.put_account(ACCOUNT)
    api.subscribe(ACCOUNT, "platform", payment_method="card_auto_debit", card_token="tok_ok")
    tick_once(runtime)
    clock.set(parse_instant("2027-01-01T00:05:00-03:00"))
    tick_once(runtime)

    january, december = api.invoices(ACCOUNT)
    assert set(december) >= INVOICE_FIELDS
    assert january["period_start"] == "2027-01-01"
    assert {key: december[key] for key in INVOICE_FIELDS - {"id"}} == {
        "account_id": ACCOUNT,
        "product": "platform",
        "period_start": "2026-12-01",
        "period_end": "2026-12-31",
        "due_date": "2026-12-01",
        "subtotal_cents": 19990,
        "discount_cents": 1000,
        "total_cents": 18990,
        "status": "open",
        "paid_at": None,
        "charge_id": None,
    }
    assert december["id"].startswith("inv_")


def test_payments_of_an_account_without_any_are_two_empty_lists(api: Api) -> None:
    api.put_account(ACCOUNT)
    assert api.get(f"/api/accounts/{ACCOUNT}/payments") == {"payments": [], "refunds": []}


def test_a_paid_invoice_shows_in_payments_with_the_appendix_fields(
    api: Api, runtime: Runtime, clock: FrozenClock
) -> None:
    api.put_account(ACCOUNT)
    api.subscribe(ACCOUNT, "platform")
    tick_once(runtime)
    [invoice] = api.invoices(ACCOUNT)
    pay(runtime, [invoice["id"]], "gw_1")

    history = api.get(f"/api/accounts/{ACCOUNT}/payments")
    [payment] = history["payments"]
    assert history["refunds"] == []
    assert payment["id"].startswith("pay_")
    assert payment["invoice_ids"] == [invoice["id"]]
    assert payment["amount_cents"] == 19990
    assert payment["method"] == "pix"
    assert payment["status"] == "confirmed"
    assert payment["paid_at"] == "2026-12-01T03:05:00Z"
    assert payment["gateway"] == "asaas"
    [paid] = api.invoices(ACCOUNT)
    assert paid["status"] == "paid"
    assert paid["paid_at"] == "2026-12-01T03:05:00Z"
    assert paid["charge_id"] is not None


def test_access_has_the_appendix_shape_with_block_at_in_local_time(
    api: Api, runtime: Runtime, clock: FrozenClock
) -> None:
    api.put_account(ACCOUNT)
    api.subscribe(ACCOUNT, "platform")
    tick_once(runtime)
    [invoice] = api.invoices(ACCOUNT)
    clock.set(parse_instant("2026-12-05T09:00:00-03:00"))

    assert api.get(f"/api/accounts/{ACCOUNT}/access") == {
        "account_id": ACCOUNT,
        "products": {
            "platform": {
                "state": "grace",
                "alert": "block",
                "block_at": "2026-12-07T00:00:00-03:00",
                "blocked_since": None,
                "open_invoices": [invoice["id"]],
                "owed_now": [invoice["id"]],  # beyond the appendix: what the page and the mails ask for now
            }
        },
    }


def test_the_timeline_lists_the_next_invoice_the_emails_to_billing_contacts_and_the_block(
    api: Api, runtime: Runtime
) -> None:
    api.put_account(ACCOUNT)
    api.subscribe(ACCOUNT, "platform")
    tick_once(runtime)
    [invoice] = api.invoices(ACCOUNT)

    timeline = api.get(f"/api/accounts/{ACCOUNT}/timeline")
    upcoming = timeline["upcoming"]
    [next_invoice] = [event for event in upcoming if event["type"] == "invoice"]
    assert next_invoice["at"] == "2027-01-01T00:00:00-03:00"
    assert next_invoice["product"] == "platform"
    assert next_invoice["period_start"] == "2027-01-01"
    assert next_invoice["total_cents"] == 19990

    emails = [event for event in upcoming if event["type"] == "email"]
    assert [(event["kind"], event["at"]) for event in emails] == [
        ("payment_reminder", "2026-12-03T00:00:00-03:00"),
        ("block_warning", "2026-12-05T00:00:00-03:00"),
        ("account_blocked", "2026-12-07T00:00:00-03:00"),
    ]
    for event in emails:
        assert event["recipients"] == ["ana@padaria.example"]
        assert event["invoice_id"] == invoice["id"]

    [block] = [event for event in upcoming if event["type"] == "block"]
    assert block["at"] == "2026-12-07T00:00:00-03:00"
    assert block["product"] == "platform"
    assert [event["type"] for event in timeline["past"]] == ["invoice_issued"]


def test_an_account_without_billing_contacts_has_emails_with_no_recipients(api: Api, runtime: Runtime) -> None:
    api.put_account(ACCOUNT, contacts=[{"email": "caixa@padaria.example", "manage_payments": False}])
    api.subscribe(ACCOUNT, "platform")
    tick_once(runtime)
    upcoming = api.get(f"/api/accounts/{ACCOUNT}/timeline")["upcoming"]
    emails = [event for event in upcoming if event["type"] == "email"]
    assert emails
    assert all(event["recipients"] == [] for event in emails)


# Receipts


def test_a_receipt_puts_the_invoice_in_verification_and_a_paid_invoice_answers_409(
    api: Api, client: TestClient, runtime: Runtime
) -> None:
    api.put_account(ACCOUNT)
    api.subscribe(ACCOUNT, "platform")
    api.subscribe(ACCOUNT, "mentorship")
    tick_once(runtime)
    invoices = {invoice["product"]: invoice for invoice in api.invoices(ACCOUNT)}

    response = client.post(f"/api/invoices/{invoices['platform']['id']}/receipts", headers=AUTH)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "verifying"
    assert response.json()["verifying_until"] == "2026-12-04T03:05:00Z"
    assert api.access(ACCOUNT, "platform")["state"] == "verifying"

    pay(runtime, [invoices["mentorship"]["id"]], "gw_1")
    refused = client.post(f"/api/invoices/{invoices['mentorship']['id']}/receipts", headers=AUTH)
    assert_error(refused, 409, "conflict")
    assert api.access(ACCOUNT, "mentorship")["state"] == "active"


# Faults


@pytest.fixture
def unreachable_runtime(clock: FrozenClock) -> Iterator[Runtime]:
    settings = Settings(env="test", database_url="postgresql://postgres@127.0.0.1:1/x", api_token="test-token")
    runtime = build_runtime(settings, clock=clock)
    yield runtime
    runtime.close()


def test_an_unreachable_database_answers_503_in_json_without_a_stack_trace(
    unreachable_runtime: Runtime,
) -> None:
    providers = build_providers(unreachable_runtime.settings)
    app = create_app(unreachable_runtime, providers, lambda _event_ids: None)
    with TestClient(app, raise_server_exceptions=False) as client:
        check_every_response(client)
        response = client.get(f"/api/accounts/{ACCOUNT}/access", headers=AUTH)
        assert_error(response, 503, "unavailable")
        assert "127.0.0.1" not in response.text
        assert "psycopg" not in response.text.lower()
        write = client.put(f"/api/accounts/{ACCOUNT}", json=PADARIA, headers=AUTH)
        assert_error(write, 503, "unavailable")
