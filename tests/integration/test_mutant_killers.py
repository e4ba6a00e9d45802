"""Rules that only a rarer path shows (a second month open, a corruption of one kind), each through the real
entry points: the API, the webhook intake and its job, the tick, `regua check`.

Each expected value is read from the rule, not from billing: these are the tests that kill the mutants
of tests/mutation that the rest of the fast suite let live.
"""

from __future__ import annotations

from datetime import timedelta

from starlette.testclient import TestClient

from billing.clock import FrozenClock, parse_instant
from regua.cli import tick_once
from regua.runtime import Runtime
from tests.integration.conftest import Api, subscription
from tests.integration.test_webhook_settlement import (  # noqa: F401  (fixtures)
    blocked_invoice,
    charge_for,
    deliver_standard,
    settle_jobs,
)
from workers.actors import Jobs

ACCOUNT = "padaria-central"
PRICE = subscription()["monthly_price_cents"]
JANUARY_1 = parse_instant("2027-01-01T00:05:00-03:00")


def statuses(api: Api) -> dict[str, str]:
    """Each invoice's status by the first day of its period."""
    return {invoice["period_start"]: invoice["status"] for invoice in api.invoices(ACCOUNT)}


def test_a_second_payment_for_a_paid_month_is_owed_back_even_when_the_next_month_is_open(
    client: TestClient,
    api: Api,
    runtime: Runtime,
    clock: FrozenClock,
    jobs: Jobs,
    blocked_invoice: str,  # noqa: F811
) -> None:
    """Rule 3.5: a second confirmed payment for a paid invoice is a duplicate, refunded; it pays no other month."""
    boleto = charge_for(runtime, [blocked_invoice], "boleto")
    pix = charge_for(runtime, [blocked_invoice], "pix")
    clock.set(JANUARY_1)
    tick_once(runtime)
    assert statuses(api) == {"2026-12-01": "open", "2027-01-01": "open"}

    deliver_standard(client, clock, "payment.confirmed", pix, "msg_pix", payment_id="gw_pix")
    settle_jobs(jobs, runtime)
    clock.set(clock.now() + timedelta(minutes=1))
    deliver_standard(client, clock, "payment.confirmed", boleto, "msg_boleto", payment_id="gw_boleto", method="boleto")
    settle_jobs(jobs, runtime)

    assert statuses(api) == {"2026-12-01": "paid", "2027-01-01": "open"}
    history = api.get(f"/api/accounts/{ACCOUNT}/payments")
    assert sorted((p["amount_cents"], p["status"]) for p in history["payments"]) == [
        (PRICE, "confirmed"),
        (PRICE, "duplicate"),
    ]
    assert [(r["amount_cents"], r["reason"]) for r in history["refunds"]] == [(PRICE, "duplicate")]
