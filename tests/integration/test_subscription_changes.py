"""Subscriptions that change (rule 3.10), through the product API: the catalog, upgrades now, downgrades later,
cancellation and reactivation. Expected amounts are computed here from the rule's words, not by billing."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select
from starlette.testclient import TestClient

from billing.check import check_books
from billing.clock import FrozenClock, parse_instant
from billing.journal import Notification
from billing.models import Block
from regua.cli import tick_once
from regua.runtime import Runtime
from tests.integration.conftest import AUTH, Api


def put(client: TestClient, path: str, body: dict[str, Any], expect: int = 200) -> dict[str, Any]:
    response = client.put(path, json=body, headers=AUTH)
    assert response.status_code == expect, response.text
    return dict(response.json())


def half_up(numerator: int, denominator: int) -> int:
    """The rule's rounding, written here: to the nearest centavo, halves up."""
    quotient, remainder = divmod(numerator, denominator)
    return quotient + (1 if 2 * remainder >= denominator else 0)


@pytest.fixture
def catalog(client: TestClient) -> None:
    put(client, "/api/plans/basic", {"product": "platform", "name": "Básico", "monthly_price_cents": 9990}, 201)
    put(client, "/api/plans/pro", {"product": "platform", "name": "Pro", "monthly_price_cents": 19990}, 201)
    put(client, "/api/modules/delivery", {"product": "platform", "name": "Delivery", "monthly_price_cents": 3000}, 201)
    put(client, "/api/modules/fiscal", {"product": "platform", "name": "Fiscal", "monthly_price_cents": 4500}, 201)


def at(clock: FrozenClock, runtime: Runtime, instant: str) -> None:
    clock.set(parse_instant(instant))
    tick_once(runtime)


def books_clean(runtime: Runtime) -> None:
    report = runtime.read(lambda session: check_books(session, runtime.clock.now()))
    assert report.clean, [violation.line() for violation in report.violations]


def subscribe(api: Api, **changes: Any) -> dict[str, Any]:
    body = {"monthly_price_cents": None, **changes}
    return api.subscribe("padaria-central", "platform", **body)


def test_the_catalog_lists_plans_and_modules_and_prices_a_subscription_that_names_them(
    api: Api, client: TestClient, catalog: None, runtime: Runtime
) -> None:
    listed = api.get("/api/catalog")["products"]["platform"]
    assert [plan["id"] for plan in listed["plans"]] == ["basic", "pro"]
    assert {module["id"]: module["monthly_price_cents"] for module in listed["modules"]} == {
        "delivery": 3000,
        "fiscal": 4500,
    }
    api.put_account("padaria-central")
    answer = subscribe(api, plan="pro", modules=["delivery", "fiscal"])
    assert (answer["monthly_price_cents"], answer["price_source"]) == (19990 + 3000 + 4500, "catalog")
    assert answer["change"]["effect"] == "created"
    negotiated = api.subscribe("padaria-central", "platform", plan="pro", modules=[], monthly_price_cents=15000)
    assert (negotiated["monthly_price_cents"], negotiated["price_source"]) == (15000, "negotiated")


def test_a_catalog_price_change_reaches_the_next_invoice_and_never_one_already_issued(
    api: Api, client: TestClient, catalog: None, runtime: Runtime, clock: FrozenClock
) -> None:
    api.put_account("padaria-central")
    subscribe(api, plan="pro", modules=["delivery"])
    at(clock, runtime, "2026-12-01T00:05:00-03:00")
    put(client, "/api/plans/pro", {"product": "platform", "name": "Pro", "monthly_price_cents": 24990})
    at(clock, runtime, "2027-01-01T00:05:00-03:00")
    totals = {invoice["period_start"]: invoice["total_cents"] for invoice in api.invoices("padaria-central")}
    assert totals == {"2026-12-01": 19990 + 3000, "2027-01-01": 24990 + 3000}
    books_clean(runtime)


@pytest.mark.parametrize(
    ("method", "discount_percent"), [("boleto", 0), ("card_auto_debit", 5)], ids=["boleto", "auto-debit"]
)
def test_an_upgrade_mid_month_invoices_the_difference_for_the_days_left_at_once(
    api: Api, catalog: None, runtime: Runtime, clock: FrozenClock, method: str, discount_percent: int
) -> None:
    card = {"card_token": "tok_ok"} if method == "card_auto_debit" else {}
    api.put_account("padaria-central")
    subscribe(api, plan="basic", modules=[], payment_method=method, **card)
    at(clock, runtime, "2026-12-01T00:05:00-03:00")
    clock.set(parse_instant("2026-12-16T10:00:00-03:00"))
    answer = subscribe(api, plan="pro", modules=["delivery"], payment_method=method, **card)
    difference = (19990 + 3000) - 9990
    subtotal = half_up(difference * 16, 31)  # 16 of December's 31 days are left, the 16th included
    discount = half_up(subtotal * discount_percent, 100)
    assert answer["change"] == {
        "effect": "now",
        "effective_on": "2026-12-16",
        "proration_invoice_id": answer["change"]["proration_invoice_id"],
        "proration_cents": subtotal - discount,
    }
    assert answer["monthly_price_cents"] == 19990 + 3000
    [proration] = [i for i in api.invoices("padaria-central") if i["kind"] == "proration"]
    assert (proration["period_start"], proration["period_end"], proration["due_date"]) == (
        "2026-12-16",
        "2026-12-31",
        "2026-12-16",
    )
    assert (proration["subtotal_cents"], proration["discount_cents"], proration["total_cents"]) == (
        subtotal,
        discount,
        subtotal - discount,
    )
    books_clean(runtime)


def test_a_downgrade_waits_for_the_next_period_and_is_not_a_payment(
    api: Api, catalog: None, runtime: Runtime, clock: FrozenClock
) -> None:
    api.put_account("padaria-central")
    subscribe(api, plan="pro", modules=["delivery", "fiscal"])
    at(clock, runtime, "2026-12-01T00:05:00-03:00")
    clock.set(parse_instant("2026-12-20T09:00:00-03:00"))
    answer = subscribe(api, plan="basic", modules=[])
    assert answer["change"]["effect"] == "next_period"
    assert answer["pending_change"]["effective_on"] == "2027-01-01"
    assert answer["monthly_price_cents"] == 19990 + 3000 + 4500  # December's terms still
    assert [invoice["kind"] for invoice in api.invoices("padaria-central")] == ["period"]
    at(clock, runtime, "2027-01-01T00:05:00-03:00")
    totals = {invoice["period_start"]: invoice["total_cents"] for invoice in api.invoices("padaria-central")}
    assert totals == {"2026-12-01": 19990 + 3000 + 4500, "2027-01-01": 9990}
    assert api.get("/api/accounts/padaria-central/payments")["payments"] == []
    books_clean(runtime)


def test_a_prepaid_period_is_never_cut_short_and_an_upgrade_in_it_pays_for_the_days_left(
    api: Api, catalog: None, runtime: Runtime, clock: FrozenClock
) -> None:
    api.put_account("padaria-central")
    subscribe(api, plan="basic", modules=[], frequency="quarterly")
    at(clock, runtime, "2026-12-01T00:05:00-03:00")
    clock.set(parse_instant("2027-01-10T12:00:00-03:00"))
    monthly = subscribe(api, plan="basic", modules=[], frequency="monthly")
    assert (monthly["change"]["effect"], monthly["pending_change"]["effective_on"]) == ("next_period", "2027-03-01")
    upgraded = subscribe(api, plan="pro", modules=[], frequency="quarterly")
    days_in_quarter = 31 + 31 + 28
    days_left = (31 - 10 + 1) + 28  # 10 to 31 January, and February
    assert upgraded["change"]["proration_cents"] == half_up((19990 - 9990) * 3 * days_left, days_in_quarter)
    assert upgraded["pending_change"] is None  # choosing the quarterly again drops the waiting monthly
    books_clean(runtime)


def test_a_canceled_subscription_ends_with_its_period_and_nothing_follows_it(
    api: Api, client: TestClient, catalog: None, runtime: Runtime, clock: FrozenClock
) -> None:
    api.put_account("padaria-central")
    subscribe(api, plan="pro", modules=[])
    at(clock, runtime, "2026-12-01T00:05:00-03:00")
    clock.set(parse_instant("2026-12-03T15:00:00-03:00"))
    response = client.delete("/api/accounts/padaria-central/subscriptions/platform", headers=AUTH)
    assert response.status_code == 200, response.text
    assert response.json()["ends_on"] == "2026-12-31"
    again = client.delete("/api/accounts/padaria-central/subscriptions/platform", headers=AUTH)
    assert again.json()["ends_on"] == "2026-12-31"
    assert api.access("padaria-central", "platform")["state"] == "grace"  # December still runs its course
    for day in ("2026-12-07T00:05:00-03:00", "2027-01-01T00:05:00-03:00", "2027-01-08T00:05:00-03:00"):
        at(clock, runtime, day)
    assert [invoice["period_start"] for invoice in api.invoices("padaria-central")] == ["2026-12-01"]
    access = api.access("padaria-central", "platform")
    assert (access["state"], access["open_invoices"]) == ("canceled", [api.invoices("padaria-central")[0]["id"]])
    after_end = parse_instant("2027-01-01T00:00:00-03:00")
    sent_after = runtime.read(
        lambda session: list(session.scalars(select(Notification.kind).where(Notification.created_at >= after_end)))
    )
    assert sent_after == []
    blocks = runtime.read(lambda session: list(session.scalars(select(Block))))
    assert all(block.started_at < after_end for block in blocks)
    books_clean(runtime)


def test_choosing_a_plan_again_reactivates_a_canceled_subscription_from_today(
    api: Api, client: TestClient, catalog: None, runtime: Runtime, clock: FrozenClock
) -> None:
    api.put_account("padaria-central")
    subscribe(api, plan="pro", modules=[])
    at(clock, runtime, "2026-12-01T00:05:00-03:00")
    client.delete("/api/accounts/padaria-central/subscriptions/platform", headers=AUTH)
    at(clock, runtime, "2027-02-10T10:00:00-03:00")
    answer = subscribe(api, plan="basic", modules=[])
    assert (answer["canceled_at"], answer["ends_on"]) == (None, None)
    tick_once(runtime)
    starts = [invoice["period_start"] for invoice in api.invoices("padaria-central")]
    assert sorted(starts) == ["2026-12-01", "2027-02-10"]  # no January: it was not a customer's month
    books_clean(runtime)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"plan": "gold", "modules": []}, "monthly_price_cents"),
        ({"plan": "pro", "modules": ["telepathy"]}, "modules[0]"),
    ],
)
def test_a_plan_or_module_not_in_the_catalog_without_a_price_is_422_naming_it(
    api: Api, client: TestClient, catalog: None, body: dict[str, Any], field: str
) -> None:
    api.put_account("padaria-central")
    payload = {"frequency": "monthly", "payment_method": "boleto", **body}
    response = client.put("/api/accounts/padaria-central/subscriptions/platform", json=payload, headers=AUTH)
    assert response.status_code == 422
    assert response.json()["error"]["message"].startswith(f"{field}:")


def test_canceling_a_subscription_that_does_not_exist_is_404(api: Api, client: TestClient) -> None:
    api.put_account("padaria-central")
    response = client.delete("/api/accounts/padaria-central/subscriptions/mentorship", headers=AUTH)
    assert response.status_code == 404


def test_a_catalog_item_keeps_its_product(client: TestClient, catalog: None) -> None:
    response = client.put(
        "/api/plans/pro", json={"product": "mentorship", "name": "Pro", "monthly_price_cents": 1}, headers=AUTH
    )
    assert response.status_code == 422
    assert response.json()["error"]["message"].startswith("product:")
