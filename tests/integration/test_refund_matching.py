"""A gateway refund matched to what it refunds: what regua owes back of the payment first, the rest from its months.

Each case goes through the intake (a signed Standard Webhooks delivery) and the job, on SQLite and
PostgreSQL, and the books are checked whole after it.
"""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from billing.clock import FrozenClock
from billing.models import Payment, Refund
from regua.runtime import Runtime
from tests.integration.conftest import Api
from tests.integration.test_books import assert_books_clean
from tests.integration.test_webhook_settlement import (  # noqa: F401  (fixtures)
    blocked_invoice,
    charge_for,
    deliver_standard,
    rows,
    settle_jobs,
)
from workers.actors import Jobs

ACCOUNT = "padaria-central"
MONTH = 19990
PAID = 20990
"""R$ 209,90 on a charge of R$ 199,90: R$ 10,00 owed back as an overpayment."""


@pytest.fixture
def overpaid(client: TestClient, runtime: Runtime, clock: FrozenClock, jobs: Jobs, blocked_invoice: str) -> str:  # noqa: F811
    """December paid by a Standard payment of R$ 209,90: the month is paid and R$ 10,00 is owed back."""
    charge_id = charge_for(runtime, [blocked_invoice], "pix")
    deliver_standard(client, clock, "payment.confirmed", charge_id, "msg_paid", payment_id="gw_over", amount_cents=PAID)
    settle_jobs(jobs, runtime)
    [owed] = rows(runtime, Refund)
    assert (owed.reason, owed.status, owed.amount_cents) == ("overpayment", "owed", PAID - MONTH)
    return charge_id


def refund_at_gateway(
    client: TestClient, runtime: Runtime, clock: FrozenClock, jobs: Jobs, charge_id: str, refund_id: str, cents: int
) -> None:
    deliver_standard(
        client,
        clock,
        "payment.refunded",
        charge_id,
        f"msg_{refund_id}"[:64],
        payment_id="gw_over",
        amount_cents=cents,
        refund_id=refund_id,
    )
    settle_jobs(jobs, runtime)


def refunds_by_reason(runtime: Runtime) -> list[tuple[str, str, int]]:
    return sorted((refund.reason, refund.status, refund.amount_cents) for refund in rows(runtime, Refund))


def test_a_gateway_refund_beyond_the_overpayment_owed_makes_it_and_gives_the_rest_back_from_the_month(
    client: TestClient, api: Api, runtime: Runtime, clock: FrozenClock, jobs: Jobs, overpaid: str
) -> None:
    refund_at_gateway(client, runtime, clock, jobs, overpaid, "rf_50", 5000)

    # The owed one is made by this refund (recorded under the gateway's id), the rest is the gateway's own.
    assert refunds_by_reason(runtime) == [("gateway", "done", 4000), ("overpayment", "done", 1000)]
    made = {refund.reason: refund.gateway_refund_id for refund in rows(runtime, Refund)}
    assert made == {"overpayment": "rf_50", "gateway": "rf_50:beyond_owed"}
    [payment] = rows(runtime, Payment)
    assert payment.status == "confirmed"
    assert [invoice["status"] for invoice in api.invoices(ACCOUNT)] == ["paid"]  # a partial refund (rule 3.5)
    assert api.access(ACCOUNT, "platform")["state"] == "active"
    history = api.get(f"/api/accounts/{ACCOUNT}/payments")
    assert sorted(refund["amount_cents"] for refund in history["refunds"]) == [1000, 4000]
    assert_books_clean(runtime)

    # Delivered again (a relay's retry with a new message id): recorded once.
    refund_at_gateway(client, runtime, clock, jobs, overpaid, "rf_50", 5000)
    assert len(rows(runtime, Refund)) == 2
    assert_books_clean(runtime)


def test_a_gateway_refund_of_everything_paid_makes_the_overpayment_and_refunds_the_month(
    client: TestClient, api: Api, runtime: Runtime, clock: FrozenClock, jobs: Jobs, overpaid: str
) -> None:
    refund_at_gateway(client, runtime, clock, jobs, overpaid, "rf_all", PAID)

    assert refunds_by_reason(runtime) == [("gateway", "done", MONTH), ("overpayment", "done", PAID - MONTH)]
    [payment] = rows(runtime, Payment)
    assert payment.status == "refunded"
    assert [invoice["status"] for invoice in api.invoices(ACCOUNT)] == ["refunded"]
    assert_books_clean(runtime)


def test_a_gateway_refund_of_exactly_the_overpayment_owed_is_that_refund_made(
    client: TestClient, api: Api, runtime: Runtime, clock: FrozenClock, jobs: Jobs, overpaid: str
) -> None:
    refund_at_gateway(client, runtime, clock, jobs, overpaid, "rf_10", PAID - MONTH)

    [refund] = rows(runtime, Refund)
    assert (refund.reason, refund.status, refund.gateway_refund_id) == ("overpayment", "done", "rf_10")
    assert [invoice["status"] for invoice in api.invoices(ACCOUNT)] == ["paid"]
    assert_books_clean(runtime)


def test_a_gateway_refund_smaller_than_the_overpayment_owed_leaves_the_rest_of_it_owed(
    client: TestClient, api: Api, runtime: Runtime, clock: FrozenClock, jobs: Jobs, overpaid: str
) -> None:
    refund_at_gateway(client, runtime, clock, jobs, overpaid, "rf_4", 400)

    assert refunds_by_reason(runtime) == [("overpayment", "done", 400), ("overpayment", "owed", 600)]
    assert [invoice["status"] for invoice in api.invoices(ACCOUNT)] == ["paid"]
    assert_books_clean(runtime)


def test_the_part_beyond_what_was_owed_keeps_a_gateway_id_of_its_own_within_a_hundred_characters(
    client: TestClient, runtime: Runtime, clock: FrozenClock, jobs: Jobs, overpaid: str
) -> None:
    longest = "r" * 100
    refund_at_gateway(client, runtime, clock, jobs, overpaid, longest, 5000)

    ids = {refund.reason: refund.gateway_refund_id or "" for refund in rows(runtime, Refund)}
    assert ids["overpayment"] == longest
    assert len(ids["gateway"]) <= 100
    assert ids["gateway"].endswith(":beyond_owed")
    assert_books_clean(runtime)
