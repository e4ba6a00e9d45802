"""`regua check` on books that rule 3.10 changed: what the rule allows is not named as broken."""

from __future__ import annotations

from starlette.testclient import TestClient

from billing.clock import FrozenClock, parse_instant
from regua.runtime import Runtime
from tests.integration.conftest import AUTH, Api
from tests.integration.test_subscription_changes import at, books_clean


def test_two_upgrades_on_different_days_of_one_month_each_invoice_their_difference(
    api: Api, runtime: Runtime, clock: FrozenClock
) -> None:
    api.put_account("padaria-central")
    api.subscribe("padaria-central", "platform", monthly_price_cents=10000)
    at(clock, runtime, "2026-12-01T00:05:00-03:00")
    clock.set(parse_instant("2026-12-10T10:00:00-03:00"))
    api.subscribe("padaria-central", "platform", monthly_price_cents=15000)
    clock.set(parse_instant("2026-12-20T10:00:00-03:00"))
    api.subscribe("padaria-central", "platform", monthly_price_cents=20000)
    kinds = sorted(invoice["kind"] for invoice in api.invoices("padaria-central"))
    assert kinds == ["period", "proration", "proration"]
    books_clean(runtime)


def test_a_return_after_the_end_that_sends_the_original_start_again_is_no_second_invoice_for_a_month(
    api: Api, client: TestClient, runtime: Runtime, clock: FrozenClock
) -> None:
    api.put_account("padaria-central")
    api.subscribe("padaria-central", "platform", starts_on="2026-12-01")
    at(clock, runtime, "2026-12-01T00:05:00-03:00")
    assert client.delete("/api/accounts/padaria-central/subscriptions/platform", headers=AUTH).status_code == 200
    at(clock, runtime, "2027-02-10T10:00:00-03:00")
    api.subscribe("padaria-central", "platform", starts_on="2026-12-01")  # the product sends what it always sent
    at(clock, runtime, "2027-02-10T10:05:00-03:00")
    api.subscribe("padaria-central", "platform", starts_on="2026-12-01", monthly_price_cents=19990)
    starts = sorted(invoice["period_start"] for invoice in api.invoices("padaria-central"))
    assert starts == ["2026-12-01", "2027-02-10"]
    books_clean(runtime)


def test_a_verification_that_outlives_a_canceled_subscriptions_end_is_not_a_block_left_lifted(
    api: Api, client: TestClient, runtime: Runtime, clock: FrozenClock
) -> None:
    api.put_account("padaria-central")
    api.subscribe("padaria-central", "platform", payment_method="boleto")
    at(clock, runtime, "2026-12-01T00:05:00-03:00")
    assert client.delete("/api/accounts/padaria-central/subscriptions/platform", headers=AUTH).status_code == 200
    at(clock, runtime, "2026-12-30T10:00:00-03:00")  # blocked since 07/12
    [december] = api.invoices("padaria-central")
    assert client.post(f"/api/invoices/{december['id']}/receipts", headers=AUTH).status_code == 200
    at(clock, runtime, "2027-01-03T10:00:00-03:00")  # the window ended after the subscription did
    assert api.access("padaria-central", "platform")["state"] == "canceled"
    books_clean(runtime)
