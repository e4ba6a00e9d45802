"""A card plan in installments loses one installment: only that installment's money goes back.

The quarter (December to February, R$ 599,70) is paid by a card plan: its confirmations come through the
Asaas intake and the job, as the gateway sends them. A chargeback of one installment takes back that
installment's amount, the plan keeps the months the money left still covers (in order, whole months
only) and the rest is owed at once; a refund of one installment is a partial refund. The books are
checked whole after every step, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import respx
from sqlalchemy.orm import Session
from starlette.testclient import TestClient

from billing.clock import FrozenClock, parse_instant
from billing.models import InstallmentChargeback, Payment, Refund
from billing.refunds import refunds_by_hand
from billing.settlement import open_charge
from regua.cli import tick_once
from regua.runtime import Runtime
from tests.integration.conftest import Api
from tests.integration.test_books import api_answers, assert_books_clean, post_asaas, refund_item
from tests.integration.test_webhook_settlement import (  # noqa: F401  (fixtures)
    asaas_api,
    asaas_payment,
    deliver_standard,
    rows,
    settle_jobs,
)
from tests.integration.webhook_helpers import asaas_delivery, asaas_headers, event_rows
from workers.actors import Jobs

ACCOUNT = "padaria-central"
MONTH = 19990
QUARTER = 3 * MONTH
TODAY = "2026-12-01"
"""The clock's day (it starts at 00:05 of 1 December in São Paulo)."""


@pytest.fixture
def quarter(api: Api, runtime: Runtime) -> str:
    """The platform's quarter, December to February, issued and not paid yet."""
    api.put_account(ACCOUNT)
    api.subscribe(
        ACCOUNT, "platform", frequency="quarterly", payment_method="card", card_token="tok_ok", installments=3
    )
    tick_once(runtime)
    [invoice] = api.invoices(ACCOUNT)
    assert (invoice["period_start"], invoice["period_end"], invoice["total_cents"]) == (
        "2026-12-01",
        "2027-02-28",
        QUARTER,
    )
    return str(invoice["id"])


class Plan:
    """A card plan paying the quarter, one Asaas payment per installment."""

    def __init__(
        self,
        client: TestClient,
        runtime: Runtime,
        jobs: Jobs,
        router: respx.MockRouter,
        quarter: str,
        parts: int,
        *,
        also: tuple[str, ...] = (),
    ) -> None:
        self.client, self.runtime, self.jobs, self.router = client, runtime, jobs, router
        now = runtime.clock.now()

        def open_plan(session: Session) -> tuple[str, int]:
            charge = open_charge(session, [quarter, *also], "card", now, installments=parts)
            return charge.id, charge.amount_cents

        self.charge_id, total = runtime.transaction(open_plan)
        share, rest = divmod(total, parts)
        self.cents = {number: share + (rest if number == 1 else 0) for number in range(1, parts + 1)}
        self.payments: dict[int, dict[str, Any]] = {}

    def confirm_every_installment(self) -> None:
        for number, cents in self.cents.items():
            payment = asaas_payment(f"pay_i{number}", self.charge_id, "CONFIRMED", cents / 100)
            payment.update(billingType="CREDIT_CARD", installment="ins_1", installmentNumber=number)
            self.payments[number] = payment
            api_answers(self.router, payment)
            post_asaas(
                self.client, "PAYMENT_CONFIRMED", f"evt_i{number}", f"pay_i{number}", self.charge_id, cents / 100
            )
            settle_jobs(self.jobs, self.runtime)

    def charge_back(self, number: int, event_id: str | None = None) -> str:
        """The installment disputed at Asaas: the event through the intake and the job; its stored outcome."""
        disputed = {**self.payments[number], "status": "CHARGEBACK_REQUESTED"}
        api_answers(self.router, disputed)
        event_id = event_id or f"evt_cb{number}"
        value = self.cents[number] / 100
        post_asaas(self.client, "PAYMENT_CHARGEBACK_REQUESTED", event_id, f"pay_i{number}", self.charge_id, value)
        settle_jobs(self.jobs, self.runtime)
        [event] = [event for event in event_rows(self.runtime) if event.dedupe_key == event_id]
        return str(event.outcome)

    def dispute_won(self, number: int, event_id: str | None = None) -> str:
        """Asaas says the merchant won the installment's dispute (the money is on its way back)."""
        won = {**self.payments[number], "status": "AWAITING_CHARGEBACK_REVERSAL"}
        api_answers(self.router, won)
        event_id = event_id or f"evt_won{number}"
        value = self.cents[number] / 100
        body = json.loads(
            asaas_delivery(
                "PAYMENT_CHARGEBACK_REQUESTED",
                event_id=event_id,
                payment_id=f"pay_i{number}",
                reference=self.charge_id,
                value=value,
            )
        )
        body["event"] = "PAYMENT_AWAITING_CHARGEBACK_REVERSAL"
        response = self.client.post("/webhooks/asaas", content=json.dumps(body).encode(), headers=asaas_headers())
        assert response.status_code == 200, response.text
        settle_jobs(self.jobs, self.runtime)
        [event] = [event for event in event_rows(self.runtime) if event.dedupe_key == event_id]
        return str(event.outcome)

    def refund_at_gateway(self, number: int) -> None:
        """The installment refunded whole at the gateway: Asaas says REFUNDED and lists no refund."""
        refunded = {**self.payments[number], "status": "REFUNDED"}
        api_answers(self.router, refunded)
        value = self.cents[number] / 100
        post_asaas(self.client, "PAYMENT_REFUNDED", f"evt_r{number}", f"pay_i{number}", self.charge_id, value)
        settle_jobs(self.jobs, self.runtime)


def invoices(api: Api) -> list[tuple[str, str, int, str]]:
    """(period start, period end, total, status), oldest first."""
    listed = sorted(api.invoices(ACCOUNT), key=lambda invoice: invoice["period_start"])
    return [(i["period_start"], i["period_end"], i["total_cents"], i["status"]) for i in listed]


def the_plan(runtime: Runtime) -> Payment:
    [payment] = rows(runtime, Payment)
    return payment  # type: ignore[no-any-return]


def test_a_chargeback_of_the_third_installment_takes_back_its_month_alone_and_leaves_it_owed_at_once(
    client: TestClient,
    api: Api,
    runtime: Runtime,
    clock: FrozenClock,
    jobs: Jobs,
    quarter: str,
    asaas_api: respx.MockRouter,  # noqa: F811
) -> None:
    plan = Plan(client, runtime, jobs, asaas_api, quarter, 3)
    plan.confirm_every_installment()
    assert (the_plan(runtime).amount_cents, invoices(api)) == (QUARTER, [("2026-12-01", "2027-02-28", QUARTER, "paid")])

    assert plan.charge_back(3) == "chargeback"

    assert invoices(api) == [
        ("2026-12-01", "2027-01-31", 2 * MONTH, "paid"),
        ("2027-02-01", "2027-02-28", MONTH, "open"),
    ]
    february = next(i for i in api.invoices(ACCOUNT) if i["status"] == "open")
    assert february["due_date"] == TODAY
    assert (the_plan(runtime).status, the_plan(runtime).chargeback_cents) == ("confirmed", MONTH)
    assert rows(runtime, Refund) == []
    access = api.access(ACCOUNT, "platform")
    assert access["state"] != "blocked"
    assert parse_instant(access["block_at"]) == parse_instant("2026-12-07T00:00:00-03:00")
    assert_books_clean(runtime)

    # The same dispute told again changes nothing.
    assert plan.charge_back(3, "evt_cb3_again") == "already_recorded"
    assert len(rows(runtime, InstallmentChargeback)) == 1
    assert the_plan(runtime).chargeback_cents == MONTH

    # February unpaid past the usual tolerance blocks the platform (rule 3.4).
    clock.set(parse_instant("2026-12-07T00:00:01-03:00"))
    tick_once(runtime)
    assert api.access(ACCOUNT, "platform")["state"] == "blocked"
    assert_books_clean(runtime)


def test_a_chargeback_that_leaves_part_of_a_month_owes_that_part_back_to_the_customer(
    client: TestClient,
    api: Api,
    runtime: Runtime,
    jobs: Jobs,
    quarter: str,
    asaas_api: respx.MockRouter,  # noqa: F811
) -> None:
    plan = Plan(client, runtime, jobs, asaas_api, quarter, 2)  # R$ 299,85 twice
    plan.confirm_every_installment()

    assert plan.charge_back(2) == "chargeback"

    # R$ 299,85 left covers December whole; January and February are owed; R$ 99,95 goes back.
    assert invoices(api) == [
        ("2026-12-01", "2026-12-31", MONTH, "paid"),
        ("2027-01-01", "2027-02-28", 2 * MONTH, "open"),
    ]
    [owed] = rows(runtime, Refund)
    assert (owed.reason, owed.status, owed.amount_cents) == ("overpayment", "owed", QUARTER // 2 - MONTH)
    assert [refund.id for refund in runtime.read(refunds_by_hand)] == [owed.id]  # a card plan: by hand
    assert_books_clean(runtime)


def test_every_installment_charged_back_in_any_order_leaves_every_month_owed_and_the_plan_charged_back(
    client: TestClient,
    api: Api,
    runtime: Runtime,
    jobs: Jobs,
    quarter: str,
    asaas_api: respx.MockRouter,  # noqa: F811
) -> None:
    plan = Plan(client, runtime, jobs, asaas_api, quarter, 3)
    plan.confirm_every_installment()
    expected_paid = {3: ("2026-12-01", "2027-01-31"), 1: ("2026-12-01", "2026-12-31")}
    for number in (3, 1):
        assert plan.charge_back(number) == "chargeback"
        [paid] = [(start, end) for start, end, _, status in invoices(api) if status == "paid"]
        assert paid == expected_paid[number]
        assert the_plan(runtime).status == "confirmed"
        assert_books_clean(runtime)

    assert plan.charge_back(2) == "chargeback"

    assert invoices(api) == [
        ("2026-12-01", "2026-12-31", MONTH, "open"),
        ("2027-01-01", "2027-01-31", MONTH, "open"),
        ("2027-02-01", "2027-02-28", MONTH, "open"),
    ]
    assert (the_plan(runtime).status, the_plan(runtime).chargeback_cents) == ("chargeback", QUARTER)
    assert rows(runtime, Refund) == []
    assert_books_clean(runtime)


def test_a_refunded_installment_gives_back_its_own_amount_and_the_months_stay_paid(
    client: TestClient,
    api: Api,
    runtime: Runtime,
    jobs: Jobs,
    quarter: str,
    asaas_api: respx.MockRouter,  # noqa: F811
) -> None:
    plan = Plan(client, runtime, jobs, asaas_api, quarter, 3)
    plan.confirm_every_installment()

    plan.refund_at_gateway(3)

    [refund] = rows(runtime, Refund)
    assert (refund.reason, refund.status, refund.amount_cents) == ("gateway", "done", MONTH)
    assert the_plan(runtime).status == "confirmed"
    assert invoices(api) == [("2026-12-01", "2027-02-28", QUARTER, "paid")]  # a partial refund (rule 3.5)
    assert_books_clean(runtime)

    # The other two refunded as well: nothing is left on the plan, and the quarter is refunded.
    plan.refund_at_gateway(1)
    plan.refund_at_gateway(2)
    assert sorted(refund.amount_cents for refund in rows(runtime, Refund)) == [MONTH, MONTH, MONTH]
    assert the_plan(runtime).status == "refunded"
    assert invoices(api) == [("2026-12-01", "2027-02-28", QUARTER, "refunded")]
    assert_books_clean(runtime)


def test_a_chargeback_after_a_refunded_installment_keeps_the_months_the_plan_still_holds(
    client: TestClient,
    api: Api,
    runtime: Runtime,
    jobs: Jobs,
    quarter: str,
    asaas_api: respx.MockRouter,  # noqa: F811
) -> None:
    plan = Plan(client, runtime, jobs, asaas_api, quarter, 3)
    plan.confirm_every_installment()
    plan.refund_at_gateway(3)

    assert plan.charge_back(2) == "chargeback"

    assert invoices(api) == [
        ("2026-12-01", "2027-01-31", 2 * MONTH, "paid"),
        ("2027-02-01", "2027-02-28", MONTH, "open"),
    ]
    assert_books_clean(runtime)
    # And the last installment charged back too: the plan holds nothing, every month is owed.
    assert plan.charge_back(1) == "chargeback"
    assert [status for *_, status in invoices(api)] == ["open", "open"]
    assert the_plan(runtime).status == "chargeback"
    assert_books_clean(runtime)


def test_a_partly_listed_refund_of_an_installment_is_recorded_at_its_own_amount(
    client: TestClient,
    api: Api,
    runtime: Runtime,
    jobs: Jobs,
    quarter: str,
    asaas_api: respx.MockRouter,  # noqa: F811
) -> None:
    plan = Plan(client, runtime, jobs, asaas_api, quarter, 3)
    plan.confirm_every_installment()
    partly = {**plan.payments[2], "refunds": [refund_item(50, "2026-12-02 10:00:00")]}
    api_answers(asaas_api, partly)
    post_asaas(client, "PAYMENT_PARTIALLY_REFUNDED", "evt_p2", "pay_i2", plan.charge_id, MONTH / 100)
    settle_jobs(jobs, runtime)

    [refund] = rows(runtime, Refund)
    assert (refund.reason, refund.amount_cents) == ("gateway", 5000)
    assert invoices(api) == [("2026-12-01", "2027-02-28", QUARTER, "paid")]
    assert_books_clean(runtime)


def test_a_plan_over_two_quarters_keeps_its_months_in_order_and_cuts_only_the_latest(
    client: TestClient,
    api: Api,
    runtime: Runtime,
    jobs: Jobs,
    asaas_api: respx.MockRouter,  # noqa: F811
) -> None:
    api.put_account(ACCOUNT)
    api.subscribe(
        ACCOUNT,
        "platform",
        frequency="quarterly",
        payment_method="card",
        card_token="tok_ok",
        installments=4,
        starts_on="2026-09-01",
    )
    tick_once(runtime)
    autumn, summer = (invoice["id"] for invoice in sorted(api.invoices(ACCOUNT), key=lambda i: i["period_start"]))
    plan = Plan(client, runtime, jobs, asaas_api, autumn, 4, also=(summer,))  # R$ 299,85 four times
    plan.confirm_every_installment()
    assert [status for *_, status in invoices(api)] == ["paid", "paid"]

    assert plan.charge_back(4) == "chargeback"

    # R$ 899,55 left: September to December whole, R$ 99,95 of January back; January and February owed.
    assert invoices(api) == [
        ("2026-09-01", "2026-11-30", QUARTER, "paid"),
        ("2026-12-01", "2026-12-31", MONTH, "paid"),
        ("2027-01-01", "2027-02-28", 2 * MONTH, "open"),
    ]
    [owed] = rows(runtime, Refund)
    assert (owed.reason, owed.status, owed.amount_cents) == ("overpayment", "owed", 3 * QUARTER // 2 - 4 * MONTH)
    assert_books_clean(runtime)


def test_an_installment_charged_back_from_a_plan_owed_back_whole_takes_its_amount_off_what_is_owed(
    client: TestClient,
    api: Api,
    runtime: Runtime,
    clock: FrozenClock,
    jobs: Jobs,
    quarter: str,
    asaas_api: respx.MockRouter,  # noqa: F811
) -> None:
    plan = Plan(client, runtime, jobs, asaas_api, quarter, 3)
    pix = runtime.transaction(lambda session: open_charge(session, [quarter], "pix", clock.now()).id)
    deliver_standard(client, clock, "payment.confirmed", pix, "msg_pix", payment_id="gw_pix", amount_cents=QUARTER)
    settle_jobs(jobs, runtime)
    plan.confirm_every_installment()  # the quarter was paid already: the plan is a duplicate, owed back whole
    [owed] = rows(runtime, Refund)
    assert (owed.reason, owed.status, owed.amount_cents) == ("duplicate", "owed", QUARTER)

    assert plan.charge_back(2) == "chargeback"

    [owed] = rows(runtime, Refund)
    assert (owed.status, owed.amount_cents) == ("owed", QUARTER - MONTH)  # the card company gave R$ 199,90 back
    duplicate = next(payment for payment in rows(runtime, Payment) if payment.gateway_payment_id == "pay_i1")
    assert (duplicate.status, duplicate.chargeback_cents) == ("chargeback", MONTH)
    assert invoices(api) == [("2026-12-01", "2027-02-28", QUARTER, "paid")]
    assert_books_clean(runtime)


def test_a_dispute_won_over_one_installment_gives_the_plan_its_months_back(
    client: TestClient,
    api: Api,
    runtime: Runtime,
    jobs: Jobs,
    quarter: str,
    asaas_api: respx.MockRouter,  # noqa: F811
) -> None:
    plan = Plan(client, runtime, jobs, asaas_api, quarter, 2)
    plan.confirm_every_installment()
    plan.charge_back(2)
    assert [status for *_, status in invoices(api)] == ["paid", "open"]

    assert plan.dispute_won(2) == "chargeback_reversed"

    assert invoices(api) == [
        ("2026-12-01", "2026-12-31", MONTH, "paid"),
        ("2027-01-01", "2027-02-28", 2 * MONTH, "paid"),
    ]
    assert (the_plan(runtime).status, the_plan(runtime).chargeback_cents) == ("confirmed", 0)
    assert [refund.status for refund in rows(runtime, Refund)] == ["canceled"]  # the part of January it owed
    assert api.access(ACCOUNT, "platform")["state"] == "active"
    assert_books_clean(runtime)
    assert plan.dispute_won(2, "evt_won2_again") == "already_recorded"
    assert the_plan(runtime).chargeback_cents == 0


def test_a_dispute_won_after_the_month_was_paid_again_owes_the_installment_back(
    client: TestClient,
    api: Api,
    runtime: Runtime,
    clock: FrozenClock,
    jobs: Jobs,
    quarter: str,
    asaas_api: respx.MockRouter,  # noqa: F811
) -> None:
    plan = Plan(client, runtime, jobs, asaas_api, quarter, 3)
    plan.confirm_every_installment()
    plan.charge_back(3)
    february = next(i["id"] for i in api.invoices(ACCOUNT) if i["status"] == "open")
    pix = runtime.transaction(lambda session: open_charge(session, [february], "pix", clock.now()).id)
    deliver_standard(client, clock, "payment.confirmed", pix, "msg_feb", payment_id="gw_feb", amount_cents=MONTH)
    settle_jobs(jobs, runtime)

    assert plan.dispute_won(3) == "chargeback_reversed"

    assert [status for *_, status in invoices(api)] == ["paid", "paid"]
    [owed] = rows(runtime, Refund)
    assert (owed.reason, owed.status, owed.amount_cents, owed.payment_id) == (
        "overpayment",
        "owed",
        MONTH,
        the_plan_id(runtime),
    )
    assert_books_clean(runtime)


def the_plan_id(runtime: Runtime) -> str:
    return str(next(payment.id for payment in rows(runtime, Payment) if payment.gateway_payment_id == "pay_i1"))
