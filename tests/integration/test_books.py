"""The money paths off the happy path, each through the real path (the intake stores the delivery, the job
applies it) on SQLite and PostgreSQL, and the books checked whole after each."""

from __future__ import annotations

import copy
import json
from datetime import timedelta
from typing import Any

import httpx
import pytest
import respx
from sqlalchemy import select
from starlette.testclient import TestClient

from billing.check import check_books
from billing.clock import FrozenClock, parse_instant
from billing.journal import Notification
from billing.models import Invoice, Payment, Refund
from billing.notifications import record_due_notifications
from billing.settlement import open_charge
from regua.cli import main, tick_once
from regua.runtime import Runtime
from regua.settings import Settings
from tests.integration.conftest import Api
from tests.integration.test_webhook_settlement import (  # noqa: F401  (fixtures)
    asaas_api,
    asaas_payment,
    blocked_invoice,
    charge_for,
    deliver_standard,
    rows,
    settle_jobs,
)
from tests.integration.webhook_helpers import asaas_delivery, asaas_headers, fixture, pix_url
from workers.actors import Jobs

ACCOUNT = "padaria-central"


def assert_books_clean(runtime: Runtime) -> None:
    report = runtime.read(lambda session: check_books(session, runtime.clock.now()))
    assert report.clean, [violation.line() for violation in report.violations]


def refund_item(value: float, created: str) -> dict[str, Any]:
    """A refund as Asaas lists it on a payment (the item of the recorded PAYMENT_PARTIALLY_REFUNDED)."""
    item = copy.deepcopy(fixture("asaas/PAYMENT_PARTIALLY_REFUNDED.json")["payment"]["refunds"][0])
    item.update(value=value, dateCreated=created)
    return dict(item)


def post_asaas(client: TestClient, name: str, event_id: str, payment_id: str, reference: str, value: float) -> None:
    body = asaas_delivery(name, event_id=event_id, payment_id=payment_id, reference=reference, value=value)
    response = client.post("/webhooks/asaas", content=body, headers=asaas_headers())
    assert response.status_code == 200, response.text


def api_answers(router: respx.MockRouter, payment: dict[str, Any]) -> None:
    router.get(f"/v3/payments/{payment['id']}").mock(return_value=httpx.Response(200, json=copy.deepcopy(payment)))


# -- 1. partial refunds


def test_partial_refunds_are_recorded_each_at_its_own_amount_and_the_month_stays_paid(
    client: TestClient,
    api: Api,
    runtime: Runtime,
    jobs: Jobs,
    blocked_invoice: str,  # noqa: F811
    asaas_api: respx.MockRouter,  # noqa: F811
) -> None:
    charge_id = charge_for(runtime, [blocked_invoice], "card")
    payment = asaas_payment("pay_p", charge_id, "RECEIVED", 199.9)
    payment["billingType"] = "CREDIT_CARD"
    api_answers(asaas_api, payment)
    post_asaas(client, "PAYMENT_CONFIRMED", "evt_paid", "pay_p", charge_id, 199.9)
    settle_jobs(jobs, runtime)

    listed: list[dict[str, Any]] = []
    for number, value in enumerate((50, 60, 10), start=1):
        listed.append(refund_item(value, f"2026-12-1{number} 10:00:00"))
        api_answers(asaas_api, {**payment, "refunds": listed})
        post_asaas(client, "PAYMENT_PARTIALLY_REFUNDED", f"evt_partial_{number}", "pay_p", charge_id, 199.9)
        settle_jobs(jobs, runtime)
    # Asaas delivers again the one it did not hear us answer: nothing more is recorded.
    post_asaas(client, "PAYMENT_PARTIALLY_REFUNDED", "evt_partial_again", "pay_p", charge_id, 199.9)
    settle_jobs(jobs, runtime)

    refunds = sorted(rows(runtime, Refund), key=lambda refund: refund.gateway_refund_id)
    assert [(r.amount_cents, r.status, r.reason) for r in refunds] == [
        (5000, "done", "gateway"),
        (6000, "done", "gateway"),
        (1000, "done", "gateway"),
    ]
    [paid] = rows(runtime, Payment)
    assert paid.status == "confirmed"
    assert [invoice["status"] for invoice in api.invoices(ACCOUNT)] == ["paid"]
    assert api.access(ACCOUNT, "platform")["state"] == "active"
    history = api.get(f"/api/accounts/{ACCOUNT}/payments")
    assert sorted(refund["amount_cents"] for refund in history["refunds"]) == [1000, 5000, 6000]
    assert {refund["status"] for refund in history["refunds"]} == {"done"}
    now = runtime.clock.now()
    runtime.transaction(lambda session: record_due_notifications(session, now, runtime.calendar, runtime.policy))
    mails = runtime.read(
        lambda session: list(session.scalars(select(Notification).where(Notification.kind == "refund_issued")))
    )
    assert sorted(mail.context["refund_amount_cents"] for mail in mails) == [1000, 5000, 6000]
    assert_books_clean(runtime)

    # The rest given back: the payment is refunded, and so is the month it paid.
    listed.append(refund_item(79.9, "2026-12-20 10:00:00"))
    api_answers(asaas_api, {**payment, "status": "REFUNDED", "refunds": listed})
    post_asaas(client, "PAYMENT_REFUNDED", "evt_rest", "pay_p", charge_id, 199.9)
    settle_jobs(jobs, runtime)
    [paid] = rows(runtime, Payment)
    assert paid.status == "refunded"
    assert [invoice["status"] for invoice in api.invoices(ACCOUNT)] == ["refunded"]
    assert_books_clean(runtime)


# -- 2. chargebacks


def test_a_chargeback_of_a_duplicate_cancels_its_owed_refund_and_reopens_nothing(
    client: TestClient,
    api: Api,
    runtime: Runtime,
    jobs: Jobs,
    blocked_invoice: str,  # noqa: F811
    asaas_api: respx.MockRouter,  # noqa: F811
) -> None:
    charge_id = charge_for(runtime, [blocked_invoice], "pix")
    first = asaas_payment("pay_first", charge_id, "RECEIVED", 199.9)
    second = asaas_payment("pay_second", charge_id, "RECEIVED", 199.9)
    api_answers(asaas_api, first)
    api_answers(asaas_api, second)
    post_asaas(client, "PAYMENT_RECEIVED_PIX", "evt_first", "pay_first", charge_id, 199.9)
    settle_jobs(jobs, runtime)
    post_asaas(client, "PAYMENT_RECEIVED_PIX", "evt_second", "pay_second", charge_id, 199.9)
    settle_jobs(jobs, runtime)
    [owed] = rows(runtime, Refund)
    assert (owed.status, owed.reason) == ("owed", "duplicate")

    api_answers(asaas_api, {**second, "status": "CHARGEBACK_REQUESTED"})
    post_asaas(client, "PAYMENT_CHARGEBACK_REQUESTED", "evt_cb", "pay_second", charge_id, 199.9)
    settle_jobs(jobs, runtime)
    [canceled] = rows(runtime, Refund)
    assert canceled.status == "canceled"  # the money went back once, by the chargeback
    assert [invoice["status"] for invoice in api.invoices(ACCOUNT)] == ["paid"]
    assert api.access(ACCOUNT, "platform")["state"] == "active"
    assert_books_clean(runtime)


def test_a_chargeback_of_the_payment_that_paid_the_month_opens_it_again_and_blocks(
    client: TestClient,
    api: Api,
    runtime: Runtime,
    jobs: Jobs,
    blocked_invoice: str,  # noqa: F811
    asaas_api: respx.MockRouter,  # noqa: F811
) -> None:
    charge_id = charge_for(runtime, [blocked_invoice], "card")
    payment = asaas_payment("pay_cb", charge_id, "CONFIRMED", 199.9)
    api_answers(asaas_api, payment)
    post_asaas(client, "PAYMENT_CONFIRMED", "evt_ok", "pay_cb", charge_id, 199.9)
    settle_jobs(jobs, runtime)
    assert api.access(ACCOUNT, "platform")["state"] == "active"
    api_answers(asaas_api, {**payment, "status": "CHARGEBACK_REQUESTED"})
    post_asaas(client, "PAYMENT_CHARGEBACK_REQUESTED", "evt_cb", "pay_cb", charge_id, 199.9)
    settle_jobs(jobs, runtime)
    [charged_back] = rows(runtime, Payment)
    assert (charged_back.status, charged_back.chargeback_cents) == ("chargeback", 19990)
    assert [invoice["status"] for invoice in api.invoices(ACCOUNT)] == ["open"]
    assert api.access(ACCOUNT, "platform")["state"] == "blocked"  # past its day 7: blocked again at once
    assert_books_clean(runtime)


# -- 4. no refund is silent


def test_a_duplicate_paid_by_bacen_pix_is_listed_to_refund_by_hand_and_recorded_done(
    client: TestClient,
    api: Api,
    runtime: Runtime,
    jobs: Jobs,
    settings: Settings,
    blocked_invoice: str,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    charge_id = charge_for(runtime, [blocked_invoice], "pix")
    txid = charge_id.replace("_", "")
    for end_to_end in ("E12345678202612091400aaaaaaaaaaa", "E12345678202612091401bbbbbbbbbbb"):
        item = {**fixture("pix/single.json")["pix"][0], "txid": txid, "endToEndId": end_to_end, "valor": "199.90"}
        item.pop("devolucoes", None)
        response = client.post(
            pix_url(), content=json.dumps({"pix": [item]}), headers={"content-type": "application/json"}
        )
        assert response.status_code == 200, response.text
        settle_jobs(jobs, runtime)

    for name, value in {
        "REGUA_DATABASE_URL": settings.database_url,
        "REGUA_ENV": "test",
        "REGUA_NOW": runtime.clock.now().isoformat(),
    }.items():
        monkeypatch.setenv(name, value)
    assert main(["refunds", "--json"]) == 0
    [listed] = json.loads(capsys.readouterr().out)
    assert (listed["account"], listed["amount_cents"], listed["reason"]) == (ACCOUNT, 19990, "duplicate")
    history = api.get(f"/api/accounts/{ACCOUNT}/payments")
    assert [(r["status"], r["refunded_at"]) for r in history["refunds"]] == [("owed", None)]  # never shown as made

    assert main(["refunds", "done", listed["id"], "--note", "TED 123"]) == 0
    capsys.readouterr()
    assert main(["refunds", "done", listed["id"]]) == 2  # only an owed refund can be recorded done
    [made] = rows(runtime, Refund)
    assert (made.status, made.note) == ("done", "TED 123")
    assert [r["status"] for r in api.get(f"/api/accounts/{ACCOUNT}/payments")["refunds"]] == ["done"]
    assert main(["refunds", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []
    assert_books_clean(runtime)


# -- 5. installment plans


def test_refunds_of_each_installment_of_a_card_plan_are_recorded_against_the_plan(
    client: TestClient,
    api: Api,
    runtime: Runtime,
    jobs: Jobs,
    blocked_invoice: str,  # noqa: F811
    asaas_api: respx.MockRouter,  # noqa: F811
) -> None:
    now = runtime.clock.now()
    charge_id = runtime.transaction(
        lambda session: open_charge(session, [blocked_invoice], "card", now, installments=3).id
    )
    values = {1: 66.64, 2: 66.63, 3: 66.63}
    payments = {}
    for number, value in values.items():
        payment = asaas_payment(f"pay_i{number}", charge_id, "CONFIRMED", value)
        payment.update(billingType="CREDIT_CARD", installment="ins_1", installmentNumber=number)
        payments[number] = payment
        api_answers(asaas_api, payment)
        post_asaas(client, "PAYMENT_CONFIRMED", f"evt_i{number}", f"pay_i{number}", charge_id, value)
        settle_jobs(jobs, runtime)
    for number in (2, 3):
        refunded = {
            **payments[number],
            "status": "REFUNDED",
            "refunds": [refund_item(values[number], "2026-12-12 09:00:00")],
        }
        api_answers(asaas_api, refunded)
        post_asaas(client, "PAYMENT_REFUNDED", f"evt_r{number}", f"pay_i{number}", charge_id, values[number])
        settle_jobs(jobs, runtime)
        [plan] = rows(runtime, Payment)
        assert plan.status == "confirmed"
        assert_books_clean(runtime)
    assert sorted(refund.amount_cents for refund in rows(runtime, Refund)) == [6663, 6663]
    assert [invoice["status"] for invoice in api.invoices(ACCOUNT)] == ["paid"]

    refunded = {**payments[1], "status": "REFUNDED", "refunds": [refund_item(values[1], "2026-12-13 09:00:00")]}
    api_answers(asaas_api, refunded)
    post_asaas(client, "PAYMENT_REFUNDED", "evt_r1", "pay_i1", charge_id, values[1])
    settle_jobs(jobs, runtime)
    [plan] = rows(runtime, Payment)
    assert plan.status == "refunded"
    assert [invoice["status"] for invoice in api.invoices(ACCOUNT)] == ["refunded"]
    assert_books_clean(runtime)


# -- 6. verification


def test_a_receipts_verification_survives_a_declined_card_and_a_second_receipt_does_not_extend_it(
    client: TestClient,
    api: Api,
    runtime: Runtime,
    clock: FrozenClock,
    jobs: Jobs,
    blocked_invoice: str,  # noqa: F811
) -> None:
    card = charge_for(runtime, [blocked_invoice], "card")
    receipt = client.post(f"/api/invoices/{blocked_invoice}/receipts", headers={"Authorization": "Bearer test-token"})
    assert receipt.status_code == 200, receipt.text
    until = receipt.json()["verifying_until"]
    assert api.access(ACCOUNT, "platform")["state"] == "verifying"

    deliver_standard(client, clock, "payment.failed", card, "msg_declined", method="card", failure_code="insufficient")
    settle_jobs(jobs, runtime)
    assert api.invoices(ACCOUNT)[0]["status"] == "verifying"  # the card's decline is not the receipt's payment
    tick_once(runtime)
    assert api.access(ACCOUNT, "platform")["state"] == "verifying"

    clock.set(clock.now() + timedelta(hours=30))
    again = client.post(f"/api/invoices/{blocked_invoice}/receipts", headers={"Authorization": "Bearer test-token"})
    assert again.json()["verifying_until"] == until  # the window runs from the first receipt
    clock.set(parse_instant(until) + timedelta(seconds=1))
    tick_once(runtime)
    assert api.access(ACCOUNT, "platform")["state"] == "blocked"
    assert_books_clean(runtime)


def test_the_gateway_failing_the_very_payment_it_reported_pending_ends_that_verification(
    client: TestClient,
    api: Api,
    runtime: Runtime,
    clock: FrozenClock,
    jobs: Jobs,
    blocked_invoice: str,  # noqa: F811
) -> None:
    pix = charge_for(runtime, [blocked_invoice], "pix")
    deliver_standard(client, clock, "payment.pending", pix, "msg_pending")
    settle_jobs(jobs, runtime)
    assert api.access(ACCOUNT, "platform")["state"] == "verifying"
    deliver_standard(client, clock, "payment.failed", pix, "msg_failed", failure_code="not_paid")
    settle_jobs(jobs, runtime)
    tick_once(runtime)
    assert api.access(ACCOUNT, "platform")["state"] == "blocked"


# -- 8. paid in time, told in time


def test_a_pix_paid_before_the_block_but_told_after_it_leaves_no_block_mail_behind(
    client: TestClient, api: Api, runtime: Runtime, clock: FrozenClock, jobs: Jobs
) -> None:
    api.put_account(ACCOUNT)
    api.subscribe(ACCOUNT, "platform", payment_method="pix")
    tick_once(runtime)
    [invoice] = api.invoices(ACCOUNT)
    charge_id = charge_for(runtime, [invoice["id"]], "pix")
    clock.set(parse_instant("2026-12-07T00:00:10-03:00"))
    tick_once(runtime)  # the pass at 00:00:10 of day 7 blocks: the payment is not known yet
    assert api.access(ACCOUNT, "platform")["state"] == "blocked"

    clock.set(parse_instant("2026-12-07T00:00:40-03:00"))
    item = {
        **fixture("pix/single.json")["pix"][0],
        "txid": charge_id.replace("_", ""),
        "endToEndId": "E12345678202612070259ccccccccccc",
        "valor": "199.90",
        "horario": "2026-12-06T23:59:30-03:00",
    }
    client.post(pix_url(), content=json.dumps({"pix": [item]}), headers={"content-type": "application/json"})
    settle_jobs(jobs, runtime)
    assert api.access(ACCOUNT, "platform")["state"] == "active"
    [payment] = api.get(f"/api/accounts/{ACCOUNT}/payments")["payments"]
    assert payment["paid_at"] == "2026-12-07T02:59:30Z"  # the payment's own instant, before the block
    tick_once(runtime)  # records the confirmation: later passes must still see the payment came first

    clock.set(parse_instant("2026-12-07T00:10:00-03:00"))
    tick_once(runtime)
    sent = {n.kind: n.status for n in rows(runtime, Notification)}
    assert "account_unblocked" not in sent
    assert sent.get("account_blocked") in (None, "obsolete")
    assert sent.get("payment_confirmed") in ("pending", "sent")
    assert_books_clean(runtime)


def test_invoices_are_listed_with_the_payment_that_paid_them(
    client: TestClient,
    api: Api,
    runtime: Runtime,
    clock: FrozenClock,
    jobs: Jobs,
    blocked_invoice: str,  # noqa: F811
) -> None:
    charge_id = charge_for(runtime, [blocked_invoice])
    deliver_standard(client, clock, "payment.confirmed", charge_id, "msg_paid")
    settle_jobs(jobs, runtime)
    [invoice] = rows(runtime, Invoice)
    [payment] = rows(runtime, Payment)
    assert (invoice.status, invoice.payment_id) == ("paid", payment.id)
    assert_books_clean(runtime)


def test_a_pending_report_told_again_after_its_window_ended_opens_no_new_window(
    client: TestClient,
    api: Api,
    runtime: Runtime,
    clock: FrozenClock,
    jobs: Jobs,
    blocked_invoice: str,  # noqa: F811
) -> None:
    pix = charge_for(runtime, [blocked_invoice], "pix")
    deliver_standard(client, clock, "payment.pending", pix, "msg_pending", payment_id="gw_slow")
    settle_jobs(jobs, runtime)
    assert api.access(ACCOUNT, "platform")["state"] == "verifying"
    clock.set(clock.now() + timedelta(hours=73))
    tick_once(runtime)
    assert api.access(ACCOUNT, "platform")["state"] == "blocked"
    # The gateway tells the same payment's pending again, under a new delivery id: no new window.
    deliver_standard(client, clock, "payment.pending", pix, "msg_pending_again", payment_id="gw_slow")
    settle_jobs(jobs, runtime)
    assert api.access(ACCOUNT, "platform")["state"] == "blocked"
    assert_books_clean(runtime)
