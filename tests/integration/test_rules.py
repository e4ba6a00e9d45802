"""The rules of SPEC section 3, played in virtual time on a real database and checked through the API."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.testclient import TestClient

from billing.charging import manual_charge_key
from billing.clock import FrozenClock, parse_instant
from billing.models import Block, Charge
from billing.settlement import ConfirmedPayment, Settlement, open_charge, settle_charge
from regua.cli import tick_once
from regua.runtime import Runtime
from tests.integration.conftest import AUTH, Api

ACCOUNT = "padaria-central"


def move(clock: FrozenClock, local: str) -> None:
    """Set the clock to a wall-clock time in São Paulo: "2026-12-07T00:01"."""
    clock.set(parse_instant(f"{local}:00-03:00"))


def charge(runtime: Runtime, invoice_ids: Sequence[str], method: str = "pix") -> str:
    """A pending charge for these invoices, as a checkout would open it."""
    now = runtime.clock.now()
    return runtime.transaction(lambda session: open_charge(session, invoice_ids, method, now).id)


def issued_charge(runtime: Runtime, invoice_id: str) -> str:
    """The PIX or boleto charge the tick opened when it issued a manual invoice (rule 3.3)."""
    key = manual_charge_key(invoice_id)
    found = runtime.read(lambda session: session.scalar(select(Charge.id).where(Charge.idempotency_key == key)))
    assert found is not None
    return str(found)


def charge_amount(runtime: Runtime, charge_id: str) -> int:
    def work(session: Session) -> int:
        found = session.get(Charge, charge_id)
        assert found is not None
        return found.amount_cents

    return runtime.read(work)


def settle(
    runtime: Runtime,
    charge_id: str,
    gateway_payment_id: str,
    amount_cents: int | None = None,
    method: str = "pix",
) -> Settlement:
    """The gateway confirms that `charge_id` was paid, as a webhook job would record it."""
    now = runtime.clock.now()

    amount = charge_amount(runtime, charge_id) if amount_cents is None else amount_cents

    def work(session: Session) -> Settlement:
        payment = ConfirmedPayment("asaas", gateway_payment_id, amount, method, now)
        return settle_charge(session, charge_id, payment, now)

    return runtime.transaction(work)


def pay(runtime: Runtime, invoice_ids: Sequence[str]) -> Settlement:
    """One charge for these invoices, paid in full at the clock's instant."""
    charge_id = charge(runtime, invoice_ids)
    return settle(runtime, charge_id, f"gw_{charge_id}")


def invoices_of(api: Api, product: str, account_id: str = ACCOUNT) -> list[dict[str, Any]]:
    """The product's invoices, oldest first."""
    return [invoice for invoice in reversed(api.invoices(account_id)) if invoice["product"] == product]


@dataclass(frozen=True)
class BlockRow:
    account_id: str
    product: str
    invoice_ids: list[str]
    lifted: bool
    lift_reason: str | None


def all_blocks(runtime: Runtime) -> list[BlockRow]:
    def work(session: Session) -> list[BlockRow]:
        return [
            BlockRow(b.account_id, b.product, b.invoice_ids, b.lifted_at is not None, b.lift_reason)
            for b in session.scalars(select(Block).order_by(Block.started_at))
        ]

    return runtime.read(work)


def active_blocks(runtime: Runtime, product: str) -> list[BlockRow]:
    return [block for block in all_blocks(runtime) if block.product == product and not block.lifted]


# 3.3 Auto-debit discount


def test_an_auto_debit_invoice_carries_the_five_percent_discount(api: Api, runtime: Runtime) -> None:
    api.put_account(ACCOUNT)
    api.subscribe(ACCOUNT, "platform", payment_method="card_auto_debit", card_token="tok_ok")
    tick_once(runtime)
    [invoice] = api.invoices(ACCOUNT)
    assert (invoice["subtotal_cents"], invoice["discount_cents"], invoice["total_cents"]) == (
        19990,
        1000,
        18990,
    )


@pytest.mark.parametrize("method", ["boleto", "pix"])
def test_a_manual_monthly_invoice_has_no_discount(api: Api, runtime: Runtime, method: str) -> None:
    api.put_account(ACCOUNT)
    api.subscribe(ACCOUNT, "platform", payment_method=method)
    tick_once(runtime)
    [invoice] = api.invoices(ACCOUNT)
    assert (invoice["subtotal_cents"], invoice["discount_cents"], invoice["total_cents"]) == (19990, 0, 19990)


# 3.1, 3.4, 3.5 Platform: tolerance, block, late payment


def test_an_unpaid_platform_boleto_warns_then_blocks_from_00_00_of_day_seven(
    api: Api, runtime: Runtime, clock: FrozenClock
) -> None:
    api.put_account(ACCOUNT)
    api.subscribe(ACCOUNT, "platform")
    tick_once(runtime)

    for day in (1, 2, 3, 4):
        move(clock, f"2026-12-{day:02d}T12:00")
        access = api.access(ACCOUNT, "platform")
        assert (access["state"], access["alert"]) == ("grace", "payment"), day
        assert access["block_at"] == "2026-12-07T00:00:00-03:00"
    for moment in ("2026-12-05T00:00", "2026-12-06T23:59"):
        move(clock, moment)
        access = api.access(ACCOUNT, "platform")
        assert (access["state"], access["alert"]) == ("grace", "block"), moment

    move(clock, "2026-12-07T00:00")
    before_tick = api.access(ACCOUNT, "platform")
    assert (before_tick["state"], before_tick["alert"]) == ("blocked", "block")
    assert before_tick["blocked_since"] == "2026-12-07T00:00:00-03:00"
    assert active_blocks(runtime, "platform") == []

    move(clock, "2026-12-07T00:01")
    assert tick_once(runtime).counts["blocks_applied"] == 1
    [block] = active_blocks(runtime, "platform")
    assert block.account_id == ACCOUNT
    assert block.invoice_ids == [invoice["id"] for invoice in api.invoices(ACCOUNT)]
    assert api.access(ACCOUNT, "platform")["state"] == "blocked"


def test_paying_a_blocked_platform_on_day_nine_lifts_the_block_at_once_and_the_cycle_resumes(
    api: Api, runtime: Runtime, clock: FrozenClock
) -> None:
    api.put_account(ACCOUNT)
    api.subscribe(ACCOUNT, "platform")
    tick_once(runtime)
    move(clock, "2026-12-07T00:01")
    tick_once(runtime)
    [december] = api.invoices(ACCOUNT)

    move(clock, "2026-12-09T14:00")
    settlement = pay(runtime, [december["id"]])
    assert settlement.invoices_paid == [december["id"]]
    assert [block.product for block in settlement.blocks.lifted] == ["platform"]
    assert active_blocks(runtime, "platform") == []
    access = api.access(ACCOUNT, "platform")
    assert access == {
        "state": "active",
        "alert": None,
        "block_at": None,
        "blocked_since": None,
        "open_invoices": [],
        "owed_now": [],
    }
    [lifted] = all_blocks(runtime)
    assert lifted.lift_reason == "paid"

    assert tick_once(runtime).counts["invoices_issued"] == 0
    move(clock, "2026-12-31T23:59")
    assert tick_once(runtime).counts["invoices_issued"] == 0
    move(clock, "2027-01-01T00:01")
    report = tick_once(runtime)
    assert report.counts["invoices_issued"] == 1
    assert report.counts["blocks_applied"] == 0
    january = invoices_of(api, "platform")[-1]
    assert (january["period_start"], january["period_end"], january["due_date"]) == (
        "2027-01-01",
        "2027-01-31",
        "2027-01-01",
    )
    assert api.access(ACCOUNT, "platform")["state"] == "grace"


def test_paying_on_day_six_pays_the_whole_month(api: Api, runtime: Runtime, clock: FrozenClock) -> None:
    api.put_account(ACCOUNT)
    api.subscribe(ACCOUNT, "platform")
    tick_once(runtime)
    [december] = api.invoices(ACCOUNT)
    move(clock, "2026-12-06T23:00")
    pay(runtime, [december["id"]])

    move(clock, "2026-12-07T00:01")
    assert tick_once(runtime).counts["blocks_applied"] == 0
    assert api.access(ACCOUNT, "platform")["state"] == "active"
    move(clock, "2026-12-31T12:00")
    assert tick_once(runtime).counts["invoices_issued"] == 0
    assert api.access(ACCOUNT, "platform")["state"] == "active"
    paid = api.invoices(ACCOUNT)[0]
    assert (paid["period_start"], paid["period_end"], paid["status"]) == ("2026-12-01", "2026-12-31", "paid")
    move(clock, "2027-01-01T00:01")
    assert tick_once(runtime).counts["invoices_issued"] == 1
    assert [invoice["period_start"] for invoice in api.invoices(ACCOUNT)] == ["2027-01-01", "2026-12-01"]


# 3.6 Mentorship: the contract goes on


def _mentorship_blocked_into_january(api: Api, runtime: Runtime, clock: FrozenClock) -> tuple[str, str]:
    """December unpaid, blocked on 7/12, January issued on 1/1 while blocked: (december, january)."""
    api.put_account(ACCOUNT)
    api.subscribe(ACCOUNT, "mentorship", monthly_price_cents=50000)
    tick_once(runtime)
    move(clock, "2026-12-07T00:01")
    assert tick_once(runtime).counts["blocks_applied"] == 1
    assert api.access(ACCOUNT, "mentorship")["state"] == "blocked"
    move(clock, "2027-01-01T00:01")
    report = tick_once(runtime)
    assert report.counts["invoices_issued"] == 1
    assert report.counts["blocks_lifted"] == 0
    december, january = invoices_of(api, "mentorship")
    assert january["period_start"] == "2027-01-01"
    assert january["status"] == "open"
    access = api.access(ACCOUNT, "mentorship")
    assert access["state"] == "blocked"
    assert access["open_invoices"] == [december["id"], january["id"]]
    return december["id"], january["id"]


def test_a_mentorship_paying_only_the_overdue_month_stays_blocked_until_every_invoice_is_paid(
    api: Api, runtime: Runtime, clock: FrozenClock
) -> None:
    december, january = _mentorship_blocked_into_january(api, runtime, clock)

    move(clock, "2027-01-02T10:00")
    first = pay(runtime, [december])
    assert first.invoices_paid == [december]
    assert first.blocks.lifted == []
    access = api.access(ACCOUNT, "mentorship")
    assert access["state"] == "blocked"
    assert access["open_invoices"] == [january]
    assert len(active_blocks(runtime, "mentorship")) == 1
    assert tick_once(runtime).counts["blocks_lifted"] == 0
    assert api.access(ACCOUNT, "mentorship")["state"] == "blocked"

    move(clock, "2027-01-02T10:30")
    second = pay(runtime, [january])
    assert [block.product for block in second.blocks.lifted] == ["mentorship"]
    assert active_blocks(runtime, "mentorship") == []
    assert api.access(ACCOUNT, "mentorship")["state"] == "active"


def test_one_combined_charge_for_both_mentorship_months_lifts_the_block_at_once(
    api: Api, runtime: Runtime, clock: FrozenClock
) -> None:
    december, january = _mentorship_blocked_into_january(api, runtime, clock)

    move(clock, "2027-01-02T10:00")
    charge_id = charge(runtime, [december, january])
    assert charge_amount(runtime, charge_id) == 2 * 50000
    settlement = settle(runtime, charge_id, "gw_combined")
    assert sorted(settlement.invoices_paid) == sorted([december, january])
    assert settlement.refunds_owed == []
    assert [block.product for block in settlement.blocks.lifted] == ["mentorship"]
    assert api.access(ACCOUNT, "mentorship")["state"] == "active"
    assert {invoice["status"] for invoice in invoices_of(api, "mentorship")} == {"paid"}


# 3.4 Blocks are per product


@pytest.mark.parametrize(
    ("unpaid", "paid", "paid_frequency"),
    [
        ("mentorship", "platform", "monthly"),
        ("mentorship", "platform", "quarterly"),
        ("mentorship", "platform", "annual"),
        ("platform", "mentorship", "monthly"),
    ],
)
def test_an_unpaid_product_never_blocks_another_that_is_paid(
    api: Api, runtime: Runtime, clock: FrozenClock, unpaid: str, paid: str, paid_frequency: str
) -> None:
    api.put_account(ACCOUNT)
    api.subscribe(ACCOUNT, unpaid)
    api.subscribe(ACCOUNT, paid, frequency=paid_frequency)
    tick_once(runtime)
    [paid_invoice] = invoices_of(api, paid)
    pay(runtime, [paid_invoice["id"]])

    move(clock, "2026-12-07T00:01")
    report = tick_once(runtime)
    assert report.counts["blocks_applied"] == 1
    assert api.access(ACCOUNT, unpaid)["state"] == "blocked"
    assert api.access(ACCOUNT, paid)["state"] == "active"
    assert active_blocks(runtime, paid) == []
    assert len(active_blocks(runtime, unpaid)) == 1


# 3.2 Prepaid


def test_a_prepaid_quarter_is_one_invoice_for_three_months_and_the_next_comes_after_the_period(
    api: Api, runtime: Runtime, clock: FrozenClock
) -> None:
    api.put_account(ACCOUNT)
    api.subscribe(
        ACCOUNT, "platform", frequency="quarterly", payment_method="card", card_token="tok_ok", installments=3
    )
    assert tick_once(runtime).counts["invoices_issued"] == 1
    [quarter] = api.invoices(ACCOUNT)
    assert (quarter["period_start"], quarter["period_end"], quarter["due_date"]) == (
        "2026-12-01",
        "2027-02-28",
        "2026-12-01",
    )
    assert (quarter["subtotal_cents"], quarter["discount_cents"], quarter["total_cents"]) == (59970, 0, 59970)
    pay(runtime, [quarter["id"]])

    for moment in ("2027-01-01T00:01", "2027-02-01T00:01", "2027-02-28T23:59"):
        move(clock, moment)
        assert tick_once(runtime).counts["invoices_issued"] == 0, moment
        assert api.access(ACCOUNT, "platform")["state"] == "active"
    move(clock, "2027-03-01T00:01")
    assert tick_once(runtime).counts["invoices_issued"] == 1
    following = api.invoices(ACCOUNT)[0]
    assert (following["period_start"], following["period_end"], following["total_cents"]) == (
        "2027-03-01",
        "2027-05-31",
        59970,
    )


# 3.7 Verification


def _blocked_on_day_seven(api: Api, runtime: Runtime, clock: FrozenClock) -> str:
    api.put_account(ACCOUNT)
    api.subscribe(ACCOUNT, "platform")
    tick_once(runtime)
    move(clock, "2026-12-07T00:01")
    assert tick_once(runtime).counts["blocks_applied"] == 1
    [invoice] = api.invoices(ACCOUNT)
    return str(invoice["id"])


def test_a_receipt_lifts_the_block_provisionally_and_72_hours_later_it_blocks_again(
    api: Api, client: TestClient, runtime: Runtime, clock: FrozenClock
) -> None:
    invoice_id = _blocked_on_day_seven(api, runtime, clock)

    move(clock, "2026-12-08T10:00")
    response = client.post(f"/api/invoices/{invoice_id}/receipts", headers=AUTH)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "verifying"
    assert active_blocks(runtime, "platform") == []
    [lifted] = all_blocks(runtime)
    assert lifted.lift_reason == "verifying"
    access = api.access(ACCOUNT, "platform")
    assert (access["state"], access["blocked_since"]) == ("verifying", None)
    assert access["block_at"] == "2026-12-11T10:00:00-03:00"

    move(clock, "2026-12-11T09:59")
    report = tick_once(runtime)
    assert (report.counts["verifications_expired"], report.counts["blocks_applied"]) == (0, 0)
    assert api.access(ACCOUNT, "platform")["state"] == "verifying"

    move(clock, "2026-12-11T10:00")
    report = tick_once(runtime)
    assert (report.counts["verifications_expired"], report.counts["blocks_applied"]) == (1, 1)
    [invoice] = api.invoices(ACCOUNT)
    assert invoice["status"] == "open"
    assert invoice["verifying_until"] is None
    assert api.access(ACCOUNT, "platform")["state"] == "blocked"
    assert len(active_blocks(runtime, "platform")) == 1


def test_access_is_blocked_again_the_moment_a_verification_expires_even_before_the_tick(
    api: Api, client: TestClient, runtime: Runtime, clock: FrozenClock
) -> None:
    invoice_id = _blocked_on_day_seven(api, runtime, clock)
    move(clock, "2026-12-08T10:00")
    assert client.post(f"/api/invoices/{invoice_id}/receipts", headers=AUTH).status_code == 200

    move(clock, "2026-12-11T10:01")
    access = api.access(ACCOUNT, "platform")
    assert access["state"] == "blocked"


def test_paying_during_verification_clears_the_invoice_and_nothing_blocks_later(
    api: Api, client: TestClient, runtime: Runtime, clock: FrozenClock
) -> None:
    invoice_id = _blocked_on_day_seven(api, runtime, clock)
    move(clock, "2026-12-08T10:00")
    assert client.post(f"/api/invoices/{invoice_id}/receipts", headers=AUTH).status_code == 200

    move(clock, "2026-12-09T15:00")
    settlement = pay(runtime, [invoice_id])
    assert settlement.invoices_paid == [invoice_id]
    [invoice] = api.invoices(ACCOUNT)
    assert (invoice["status"], invoice["verifying_until"]) == ("paid", None)
    assert api.access(ACCOUNT, "platform")["state"] == "active"

    move(clock, "2026-12-11T10:01")
    report = tick_once(runtime)
    assert (report.counts["verifications_expired"], report.counts["blocks_applied"]) == (0, 0)
    assert api.access(ACCOUNT, "platform")["state"] == "active"
    assert active_blocks(runtime, "platform") == []


def test_a_receipt_before_the_block_holds_it_off_for_72_hours(
    api: Api, client: TestClient, runtime: Runtime, clock: FrozenClock
) -> None:
    api.put_account(ACCOUNT)
    api.subscribe(ACCOUNT, "platform")
    tick_once(runtime)
    [invoice] = api.invoices(ACCOUNT)
    move(clock, "2026-12-06T20:00")
    assert client.post(f"/api/invoices/{invoice['id']}/receipts", headers=AUTH).status_code == 200

    move(clock, "2026-12-07T00:01")
    assert tick_once(runtime).counts["blocks_applied"] == 0
    assert api.access(ACCOUNT, "platform")["state"] == "verifying"
    move(clock, "2026-12-09T20:00")
    report = tick_once(runtime)
    assert (report.counts["verifications_expired"], report.counts["blocks_applied"]) == (1, 1)
    assert api.access(ACCOUNT, "platform")["state"] == "blocked"


# 3.9 Trial


def test_a_trial_ending_on_the_tenth_bills_the_rest_of_the_month_pro_rata(
    api: Api, runtime: Runtime, clock: FrozenClock
) -> None:
    api.put_account(ACCOUNT, trial_ends_at="2026-12-10")
    api.subscribe(ACCOUNT, "platform")
    report = tick_once(runtime)
    assert (report.counts["invoices_issued"], report.counts["trials_ended"]) == (0, 0)
    assert api.access(ACCOUNT, "platform") == {
        "state": "trial",
        "alert": None,
        "block_at": None,
        "blocked_since": None,
        "open_invoices": [],
        "owed_now": [],
    }
    move(clock, "2026-12-09T23:59")
    assert tick_once(runtime).counts["invoices_issued"] == 0
    assert api.invoices(ACCOUNT) == []
    assert api.access(ACCOUNT, "platform")["state"] == "trial"

    move(clock, "2026-12-10T00:01")
    report = tick_once(runtime)
    assert (report.counts["invoices_issued"], report.counts["trials_ended"]) == (1, 1)
    [invoice] = api.invoices(ACCOUNT)
    assert (invoice["period_start"], invoice["period_end"], invoice["due_date"]) == (
        "2026-12-10",
        "2026-12-31",
        "2026-12-10",
    )
    # 19990 x 22 / 31 = 14186.45..., half-up to 14186
    assert (invoice["subtotal_cents"], invoice["discount_cents"], invoice["total_cents"]) == (14186, 0, 14186)
    access = api.access(ACCOUNT, "platform")
    assert (access["state"], access["alert"]) == ("grace", "payment")
    assert access["block_at"] == "2026-12-16T00:00:00-03:00"

    move(clock, "2026-12-15T23:59")
    assert tick_once(runtime).counts["blocks_applied"] == 0
    assert api.access(ACCOUNT, "platform")["state"] == "grace"
    move(clock, "2026-12-16T00:00")
    assert api.access(ACCOUNT, "platform")["state"] == "blocked"
    move(clock, "2026-12-16T00:01")
    assert tick_once(runtime).counts["blocks_applied"] == 1

    move(clock, "2027-01-01T00:01")
    assert tick_once(runtime).counts["invoices_issued"] == 1
    january = api.invoices(ACCOUNT)[0]
    assert (january["period_start"], january["period_end"], january["total_cents"]) == (
        "2027-01-01",
        "2027-01-31",
        19990,
    )


# 3.5 One month of service is never charged twice


def test_a_second_payment_for_a_paid_invoice_is_a_duplicate_owed_back(
    api: Api, runtime: Runtime, clock: FrozenClock
) -> None:
    api.put_account(ACCOUNT)
    api.subscribe(ACCOUNT, "platform")
    tick_once(runtime)
    [invoice] = api.invoices(ACCOUNT)
    by_pix = charge(runtime, [invoice["id"]], "pix")
    by_boleto = charge(runtime, [invoice["id"]], "boleto")

    move(clock, "2026-12-02T10:00")
    first = settle(runtime, by_pix, "gw_pix_1")
    assert first.invoices_paid == [invoice["id"]]
    assert first.refunds_owed == []
    assert sorted(first.charges_canceled) == sorted([by_boleto, issued_charge(runtime, invoice["id"])])

    move(clock, "2026-12-02T13:00")
    second = settle(runtime, by_boleto, "gw_boleto_1", method="boleto")
    assert second.invoices_paid == []
    assert len(second.refunds_owed) == 1

    history = api.get(f"/api/accounts/{ACCOUNT}/payments")
    statuses = sorted((p["status"], p["amount_cents"], p["invoice_ids"][0]) for p in history["payments"])
    assert statuses == [("confirmed", 19990, invoice["id"]), ("duplicate", 19990, invoice["id"])]
    [refund] = history["refunds"]
    [duplicate] = [p for p in history["payments"] if p["status"] == "duplicate"]
    assert refund["payment_id"] == duplicate["id"]
    assert refund["amount_cents"] == 19990
    assert refund["reason"] == "duplicate"
    assert refund["id"].startswith("ref_")
    [paid] = api.invoices(ACCOUNT)
    assert paid["status"] == "paid"
    assert paid["charge_id"] == by_pix


def test_settling_the_same_gateway_payment_twice_records_one_payment(
    api: Api, runtime: Runtime, clock: FrozenClock
) -> None:
    api.put_account(ACCOUNT)
    api.subscribe(ACCOUNT, "platform")
    tick_once(runtime)
    [invoice] = api.invoices(ACCOUNT)
    charge_id = charge(runtime, [invoice["id"]])
    first = settle(runtime, charge_id, "gw_1")
    again = settle(runtime, charge_id, "gw_1")
    assert again.already_recorded
    assert again.payment_id == first.payment_id
    assert again.invoices_paid == []
    assert again.refunds_owed == []
    assert api.get(f"/api/accounts/{ACCOUNT}/payments") == {
        "payments": [
            {
                "id": first.payment_id,
                "invoice_ids": [invoice["id"]],
                "amount_cents": 19990,
                "method": "pix",
                "status": "confirmed",
                "paid_at": "2026-12-01T03:05:00Z",
                "gateway": "asaas",
            }
        ],
        "refunds": [],
    }


def test_paying_one_charge_cancels_every_other_pending_charge_for_the_invoice(api: Api, runtime: Runtime) -> None:
    api.put_account(ACCOUNT)
    api.subscribe(ACCOUNT, "platform")
    tick_once(runtime)
    [invoice] = api.invoices(ACCOUNT)
    paid, other, third = (charge(runtime, [invoice["id"]], method) for method in ("pix", "boleto", "card"))

    issued = issued_charge(runtime, invoice["id"])
    settlement = settle(runtime, paid, "gw_1")
    assert sorted(settlement.charges_canceled) == sorted([other, third, issued])

    def statuses(session: Session) -> dict[str, str]:
        return {found.id: found.status for found in session.scalars(select(Charge))}

    assert runtime.read(statuses) == {paid: "confirmed", other: "canceled", third: "canceled", issued: "canceled"}


# 3.10 Plan changes


def test_a_plan_change_takes_effect_from_the_next_invoice_and_stays_out_of_payment_history(
    api: Api, runtime: Runtime, clock: FrozenClock
) -> None:
    api.put_account(ACCOUNT)
    api.subscribe(ACCOUNT, "platform")
    tick_once(runtime)
    [december] = api.invoices(ACCOUNT)
    pay(runtime, [december["id"]])

    move(clock, "2026-12-15T10:00")
    api.subscribe(ACCOUNT, "platform", plan="basic", monthly_price_cents=9990)
    assert tick_once(runtime).counts["invoices_issued"] == 0
    [unchanged] = api.invoices(ACCOUNT)
    assert (unchanged["id"], unchanged["total_cents"]) == (december["id"], 19990)

    history = api.get(f"/api/accounts/{ACCOUNT}/payments")
    assert [p["invoice_ids"] for p in history["payments"]] == [[december["id"]]]
    assert history["refunds"] == []

    move(clock, "2027-01-01T00:01")
    assert tick_once(runtime).counts["invoices_issued"] == 1
    january = api.invoices(ACCOUNT)[0]
    assert (january["period_start"], january["subtotal_cents"], january["total_cents"]) == (
        "2027-01-01",
        9990,
        9990,
    )
    assert len(api.get(f"/api/accounts/{ACCOUNT}/payments")["payments"]) == 1


# 3.11 Payment history


def test_payment_history_lists_every_payment_but_only_refunds_from_14_06_2023(
    api: Api, runtime: Runtime, clock: FrozenClock
) -> None:
    move(clock, "2023-06-01T00:05")
    api.put_account(ACCOUNT)
    api.subscribe(ACCOUNT, "platform", starts_on="2023-06-01")
    tick_once(runtime)
    [june] = api.invoices(ACCOUNT)
    first, second = charge(runtime, [june["id"]]), charge(runtime, [june["id"]])
    settle(runtime, first, "gw_paid")

    move(clock, "2023-06-13T23:59")  # 14/06 02:59 in UTC, still the 13th in São Paulo
    hidden = settle(runtime, second, "gw_dup_before")
    move(clock, "2023-06-14T00:00")
    shown = settle(runtime, second, "gw_dup_on_the_day")
    assert len(hidden.refunds_owed) == len(shown.refunds_owed) == 1

    history = api.get(f"/api/accounts/{ACCOUNT}/payments")
    assert len(history["payments"]) == 3
    assert [refund["id"] for refund in history["refunds"]] == shown.refunds_owed
    assert history["refunds"][0]["payment_id"] == shown.payment_id
