"""Asaas's whole payment lifecycle through the intake and the job: each event of the README's table, as it acts.

Asaas's API sits behind respx: each test moves one payment through the statuses the real gateway gives
it (captured in tests/fixtures/asaas), posts the webhook Asaas would post, and lets the in-process
worker re-fetch and apply it. After each, `regua check` finds the books clean.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
import respx
from sqlalchemy import select
from starlette.testclient import TestClient

from billing.charging.planning import dead_cards
from billing.check import check_books
from billing.clock import FrozenClock, parse_instant
from billing.journal import Notification, WebhookEvent
from billing.models import Block, Charge, Invoice, Payment, Refund
from billing.notifications import record_due_notifications
from billing.settlement import open_charge
from regua.cli import tick_once
from regua.runtime import Runtime
from tests.conftest import ASAAS_API_URL
from tests.integration.conftest import Api
from tests.integration.test_webhook_settlement import settle_jobs
from tests.integration.webhook_helpers import asaas_headers, fixture
from workers.actors import Jobs

DAY_9 = parse_instant("2026-12-09T11:00:00-03:00")
PRICE = 199.9


class AsaasAccount:
    """One Asaas payment as the API answers it, and the webhooks Asaas posts about it."""

    def __init__(self, router: respx.MockRouter, client: TestClient, runtime: Runtime, jobs: Jobs) -> None:
        self.router, self.client, self.runtime, self.jobs = router, client, runtime, jobs
        self.payments: dict[str, dict[str, Any]] = {}
        self.sent = 0

    def payment(self, payment_id: str, reference: str, *, value: float = PRICE, kind: str = "PIX") -> dict[str, Any]:
        body = copy.deepcopy(fixture("asaas/PAYMENT_RECEIVED_PIX.json")["payment"])
        body.update(id=payment_id, externalReference=reference, value=value, billingType=kind, status="PENDING")
        body.update(clientPaymentDate=None, confirmedDate=None, paymentDate=None, refunds=None)
        self.payments[payment_id] = body
        self.router.get(f"/v3/payments/{payment_id}").mock(side_effect=lambda _r: httpx.Response(200, json=body))
        return body

    def post(self, event: str, payment_id: str, *, event_id: str | None = None, at: str = "2026-12-09 11:00:00") -> Any:
        """Posts `event` about the payment as it is now, and waits for its job."""
        self.sent += 1
        delivery: dict[str, Any] = {"event": event, "dateCreated": at, "payment": self.payments[payment_id]}
        delivery["id"] = event_id or f"evt_{self.sent}_{event}"
        response = self.client.post("/webhooks/asaas", content=json.dumps(delivery), headers=asaas_headers())
        assert response.status_code == 200, response.text
        settle_jobs(self.jobs, self.runtime)
        return response.json()

    def move(self, payment_id: str, event: str, **fields: Any) -> Any:
        self.payments[payment_id].update(fields)
        return self.post(event, payment_id)


@pytest.fixture
def blocked(api: Api, runtime: Runtime, clock: FrozenClock) -> str:
    """A boleto customer who did not pay December: blocked since 00:00 of 7/12, now on day 9."""
    api.put_account("padaria-central")
    api.subscribe("padaria-central", "platform", payment_method="boleto")
    tick_once(runtime)
    clock.set(DAY_9)
    tick_once(runtime)
    assert api.access("padaria-central", "platform")["state"] == "blocked"
    [invoice] = api.invoices("padaria-central")
    return str(invoice["id"])


@pytest.fixture
def asaas(client: TestClient, runtime: Runtime, jobs: Jobs, blocked: str) -> Iterator[AsaasAccount]:
    """Asaas's API from the moment the account is blocked (its boleto charge was opened before, offline)."""
    with respx.mock(base_url=ASAAS_API_URL, assert_all_called=False) as router:
        yield AsaasAccount(router, client, runtime, jobs)


def charge(runtime: Runtime, invoice_ids: list[str], method: str) -> str:
    return runtime.transaction(lambda session: open_charge(session, invoice_ids, method, runtime.clock.now()).id)


def rows(runtime: Runtime, model: type[Any]) -> list[Any]:
    return runtime.read(lambda session: list(session.scalars(select(model))))


def books_clean(runtime: Runtime) -> None:
    report = runtime.read(lambda session: check_books(session, runtime.clock.now()))
    assert report.clean, [violation.line() for violation in report.violations]


def state(api: Api) -> str:
    return str(api.access("padaria-central", "platform")["state"])


def statuses(api: Api) -> list[str]:
    return [invoice["status"] for invoice in api.invoices("padaria-central")]


def kinds_told(runtime: Runtime) -> list[str]:
    """The email pass, run now: what the customer is told."""
    now = runtime.clock.now()
    runtime.transaction(
        lambda session: record_due_notifications(
            session, now, runtime.calendar, runtime.policy, schedule=False, lookback=timedelta(hours=1)
        )
    )
    return [notification.kind for notification in rows(runtime, Notification)]


def test_a_chargeback_won_pays_the_month_again_lifts_the_block_and_tells_the_customer(
    api: Api, runtime: Runtime, asaas: AsaasAccount, blocked: str
) -> None:
    charge_id = charge(runtime, [blocked], "card")
    asaas.payment("pay_cb", charge_id, kind="CREDIT_CARD")
    asaas.move("pay_cb", "PAYMENT_CONFIRMED", status="CONFIRMED", confirmedDate="2026-12-09")
    assert (statuses(api), state(api)) == (["paid"], "active")
    asaas.move("pay_cb", "PAYMENT_CHARGEBACK_REQUESTED", status="CHARGEBACK_REQUESTED")
    assert (statuses(api), state(api)) == (["open"], "blocked")
    assert dead_cards_of(runtime) == {"padaria-central"}

    asaas.move("pay_cb", "PAYMENT_CHARGEBACK_DISPUTE", status="CHARGEBACK_DISPUTE")
    dispute = [event for event in rows(runtime, WebhookEvent) if event.event_type == "PAYMENT_CHARGEBACK_DISPUTE"]
    assert [(event.status, "disputed" in (event.outcome or "")) for event in dispute] == [("processed", True)]
    assert state(api) == "blocked"

    asaas.move("pay_cb", "PAYMENT_AWAITING_CHARGEBACK_REVERSAL", status="AWAITING_CHARGEBACK_REVERSAL")
    assert (statuses(api), state(api)) == (["paid"], "active")
    [payment] = rows(runtime, Payment)
    assert (payment.status, payment.chargeback_cents, payment.reinstated_at is not None) == ("confirmed", 0, True)
    kinds_told(runtime)
    last_block = max(rows(runtime, Block), key=lambda block: block.started_at)  # the chargeback's
    assert last_block.lifted_at is not None
    unblocked = [row.step for row in rows(runtime, Notification) if row.kind == "account_unblocked"]
    assert last_block.id in unblocked
    assert dead_cards_of(runtime) == set()  # the card may be charged automatically again

    asaas.move("pay_cb", "PAYMENT_RECEIVED", status="RECEIVED")  # the money lands: nothing more to do
    assert [row.status for row in rows(runtime, Payment)] == ["confirmed"]
    assert rows(runtime, Refund) == []
    books_clean(runtime)


def dead_cards_of(runtime: Runtime) -> set[str]:
    def card_charges(session: Any) -> None:
        for row in session.scalars(select(Charge).where(Charge.method == "card")):
            row.card_ref = row.card_ref or "card_1"

    runtime.transaction(card_charges)
    return set(runtime.read(lambda session: dead_cards(session, ["padaria-central"])))


def test_a_chargeback_won_after_the_month_was_paid_again_is_a_duplicate_owed_back(
    api: Api, runtime: Runtime, asaas: AsaasAccount, blocked: str
) -> None:
    first = charge(runtime, [blocked], "card")
    asaas.payment("pay_1", first, kind="CREDIT_CARD")
    asaas.move("pay_1", "PAYMENT_CONFIRMED", status="CONFIRMED")
    asaas.move("pay_1", "PAYMENT_CHARGEBACK_REQUESTED", status="CHARGEBACK_REQUESTED")
    second = charge(runtime, [blocked], "pix")
    asaas.payment("pay_2", second)
    asaas.move("pay_2", "PAYMENT_RECEIVED", status="RECEIVED", clientPaymentDate="2026-12-09")
    assert (statuses(api), state(api)) == (["paid"], "active")

    asaas.move("pay_1", "PAYMENT_AWAITING_CHARGEBACK_REVERSAL", status="AWAITING_CHARGEBACK_REVERSAL")
    by_gateway_id = {payment.gateway_payment_id: payment for payment in rows(runtime, Payment)}
    assert (by_gateway_id["pay_1"].status, by_gateway_id["pay_2"].status) == ("duplicate", "confirmed")
    [owed] = rows(runtime, Refund)
    assert (owed.payment_id, owed.amount_cents, owed.reason, owed.status) == (
        by_gateway_id["pay_1"].id,
        19990,
        "duplicate",
        "owed",
    )
    assert statuses(api) == ["paid"]
    books_clean(runtime)


def test_a_cash_receipt_undone_reopens_the_month_and_blocks_then_paid_again_settles_it(
    api: Api, runtime: Runtime, asaas: AsaasAccount, blocked: str
) -> None:
    charge_id = charge(runtime, [blocked], "boleto")
    asaas.payment("pay_cash", charge_id, kind="BOLETO")
    asaas.move("pay_cash", "PAYMENT_RECEIVED", status="RECEIVED_IN_CASH", paymentDate="2026-12-09")
    assert (statuses(api), state(api)) == (["paid"], "active")

    asaas.move("pay_cash", "PAYMENT_RECEIVED_IN_CASH_UNDONE", status="OVERDUE", paymentDate=None)
    assert (statuses(api), state(api)) == (["open"], "blocked")
    [payment] = api.get("/api/accounts/padaria-central/payments")["payments"]
    assert payment["status"] == "undone"
    assert [row.status for row in rows(runtime, Charge) if row.id == charge_id] == ["pending"]
    books_clean(runtime)

    asaas.move("pay_cash", "PAYMENT_RECEIVED", status="RECEIVED", clientPaymentDate="2026-12-09")
    assert (statuses(api), state(api)) == (["paid"], "active")
    assert [row.status for row in rows(runtime, Payment)] == ["confirmed"]
    books_clean(runtime)


def test_a_deleted_payment_restored_at_the_gateway_opens_its_charge_again(
    api: Api, runtime: Runtime, asaas: AsaasAccount, blocked: str
) -> None:
    charge_id = charge(runtime, [blocked], "pix")
    asaas.payment("pay_del", charge_id)

    def codes_given(session: Any) -> None:
        session.get(Charge, charge_id).pix_code = "000201...old"

    runtime.transaction(codes_given)
    asaas.move("pay_del", "PAYMENT_DELETED", deleted=True)
    assert [row.status for row in rows(runtime, Charge) if row.id == charge_id] == ["canceled"]
    asaas.move("pay_del", "PAYMENT_RESTORED", deleted=False, status="PENDING")
    [restored] = [row for row in rows(runtime, Charge) if row.id == charge_id]
    assert (restored.status, restored.pix_code) == ("pending", None)  # its codes are asked for afresh
    asaas.move("pay_del", "PAYMENT_RECEIVED", status="RECEIVED")
    assert (statuses(api), state(api)) == (["paid"], "active")
    books_clean(runtime)


def test_risk_analysis_is_a_verification_then_approval_pays_and_refusal_fails(
    api: Api, runtime: Runtime, asaas: AsaasAccount, blocked: str
) -> None:
    approved = charge(runtime, [blocked], "card")
    asaas.payment("pay_risk", approved, kind="CREDIT_CARD")
    asaas.move("pay_risk", "PAYMENT_AWAITING_RISK_ANALYSIS", status="AWAITING_RISK_ANALYSIS")
    assert (statuses(api), state(api)) == (["verifying"], "verifying")
    asaas.move("pay_risk", "PAYMENT_REPROVED_BY_RISK_ANALYSIS", status="REPROVED_BY_RISK_ANALYSIS")
    assert (statuses(api), state(api)) == (["open"], "blocked")
    assert [row.status for row in rows(runtime, Charge) if row.id == approved] == ["failed"]

    again = charge(runtime, [blocked], "card")
    asaas.payment("pay_risk2", again, kind="CREDIT_CARD")
    asaas.move("pay_risk2", "PAYMENT_AWAITING_RISK_ANALYSIS", status="AWAITING_RISK_ANALYSIS")
    asaas.move("pay_risk2", "PAYMENT_APPROVED_BY_RISK_ANALYSIS", status="CONFIRMED")
    assert (statuses(api), state(api)) == (["paid"], "active")
    books_clean(runtime)


def test_a_card_capture_refused_is_a_decline(api: Api, runtime: Runtime, asaas: AsaasAccount, blocked: str) -> None:
    charge_id = charge(runtime, [blocked], "card")
    asaas.payment("pay_refused", charge_id, kind="CREDIT_CARD")
    asaas.move("pay_refused", "PAYMENT_CREDIT_CARD_CAPTURE_REFUSED", status="PENDING")
    [row] = [row for row in rows(runtime, Charge) if row.id == charge_id]
    assert (row.status, row.failure_code) == ("failed", "credit_card_capture_refused")
    assert state(api) == "blocked"


@pytest.mark.parametrize(
    "event",
    [
        "PAYMENT_CREATED",
        "PAYMENT_UPDATED",
        "PAYMENT_AUTHORIZED",
        "PAYMENT_ANTICIPATED",
        "PAYMENT_BANK_SLIP_VIEWED",
        "PAYMENT_CHECKOUT_VIEWED",
        "PAYMENT_DUNNING_REQUESTED",
        "PAYMENT_DUNNING_RECEIVED",
        "PAYMENT_SPLIT_CANCELLED",
        "TRANSFER_DONE",
        "ACCOUNT_STATUS_GENERAL_APPROVAL_APPROVED",
    ],
)
def test_events_that_move_no_money_are_stored_as_ignored_and_change_nothing(
    api: Api, runtime: Runtime, asaas: AsaasAccount, blocked: str, event: str
) -> None:
    charge_id = charge(runtime, [blocked], "pix")
    fetch = asaas.payment("pay_quiet", charge_id)
    asaas.move("pay_quiet", event, status="RECEIVED")  # even told paid, an event of no effect is not applied
    assert [(row.event_type, row.status) for row in rows(runtime, WebhookEvent)] == [(event, "ignored")]
    assert (statuses(api), state(api)) == (["open"], "blocked")
    assert fetch["status"] == "RECEIVED"
    assert not any(call.request.url.path.startswith("/v3/payments/") for call in asaas.router.calls)


def test_an_overdue_event_changes_nothing_the_calendar_decides(
    api: Api, runtime: Runtime, asaas: AsaasAccount, blocked: str
) -> None:
    charge_id = charge(runtime, [blocked], "boleto")
    asaas.payment("pay_late", charge_id, kind="BOLETO")
    asaas.move("pay_late", "PAYMENT_OVERDUE", status="OVERDUE")
    [event] = rows(runtime, WebhookEvent)
    assert event.status == "processed"
    assert (statuses(api), state(api)) == (["open"], "blocked")


@pytest.mark.parametrize(
    "reference",
    ["x" * 150, "pedido\n123", "🧾 nota 42", "", None, "chg_" + "9" * 60],
    ids=["long", "newline", "emoji", "empty", "none", "looks-like-ours"],
)
def test_a_payment_regua_did_not_make_is_answered_200_and_parked_as_unmatched(
    runtime: Runtime, asaas: AsaasAccount, blocked: str, reference: str | None
) -> None:
    body = asaas.payment("pay_elsewhere", "x")
    body["externalReference"] = reference
    body["status"] = "RECEIVED"
    answer = asaas.post("PAYMENT_RECEIVED", "pay_elsewhere")
    assert answer["status"] == "accepted"
    [event] = rows(runtime, WebhookEvent)
    assert event.status == "unmatched"
    assert rows(runtime, Payment) == []


def test_an_event_without_an_id_is_stored_once_by_the_hash_of_its_body(
    client: TestClient, runtime: Runtime, asaas: AsaasAccount, blocked: str
) -> None:
    charge_id = charge(runtime, [blocked], "pix")
    payment = asaas.payment("pay_noid", charge_id)
    payment["status"] = "RECEIVED"
    raw = json.dumps({"event": "PAYMENT_RECEIVED", "dateCreated": "2026-12-09 11:00:00", "payment": payment})
    first = client.post("/webhooks/asaas", content=raw, headers=asaas_headers())
    again = client.post("/webhooks/asaas", content=raw, headers=asaas_headers())
    assert (first.status_code, again.status_code) == (200, 200)
    assert (first.json()["status"], again.json()["status"]) == ("accepted", "duplicate")
    settle_jobs(asaas.jobs, runtime)
    [event] = rows(runtime, WebhookEvent)
    assert event.dedupe_key == "sha256:" + hashlib.sha256(raw.encode()).hexdigest()
    assert event.status == "processed"
    assert [row.status for row in rows(runtime, Payment)] == ["confirmed"]


def test_a_payment_is_dated_by_the_day_the_customer_paid_not_by_the_delivery(
    api: Api, runtime: Runtime, asaas: AsaasAccount, blocked: str
) -> None:
    charge_id = charge(runtime, [blocked], "boleto")
    asaas.payment("pay_slow", charge_id, kind="BOLETO")
    asaas.payments["pay_slow"].update(status="RECEIVED", clientPaymentDate="2026-12-06", paymentDate="2026-12-08")
    asaas.post("PAYMENT_RECEIVED", "pay_slow", at="2026-12-08 09:30:00")
    [payment] = api.get("/api/accounts/padaria-central/payments")["payments"]
    assert payment["paid_at"] == "2026-12-06T03:00:00Z"  # 00:00 of 06/12 in Brasília
    [invoice] = rows(runtime, Invoice)
    assert invoice.paid_at == parse_instant("2026-12-06T00:00:00-03:00")


def test_a_payment_paid_on_the_day_of_its_delivery_keeps_the_delivery_instant(
    api: Api, runtime: Runtime, asaas: AsaasAccount, blocked: str
) -> None:
    charge_id = charge(runtime, [blocked], "pix")
    asaas.payment("pay_now", charge_id)
    asaas.payments["pay_now"].update(status="RECEIVED", clientPaymentDate="2026-12-09")
    asaas.post("PAYMENT_RECEIVED", "pay_now", at="2026-12-09 10:42:13")
    [payment] = api.get("/api/accounts/padaria-central/payments")["payments"]
    assert payment["paid_at"] == "2026-12-09T13:42:13Z"


def test_a_duplicate_received_in_cash_and_undone_reopens_nothing(
    api: Api, runtime: Runtime, asaas: AsaasAccount, blocked: str
) -> None:
    charge_id = charge(runtime, [blocked], "boleto")
    asaas.payment("pay_first", charge_id, kind="BOLETO")
    asaas.move("pay_first", "PAYMENT_RECEIVED", status="RECEIVED")
    asaas.payment("pay_cash_again", charge_id, kind="BOLETO")
    asaas.move("pay_cash_again", "PAYMENT_RECEIVED", status="RECEIVED_IN_CASH")
    asaas.move("pay_cash_again", "PAYMENT_RECEIVED_IN_CASH_UNDONE", status="PENDING")
    assert (statuses(api), state(api)) == (["paid"], "active")
    assert [row.status for row in rows(runtime, Charge) if row.id == charge_id] == ["confirmed"]
    by_gateway_id = {payment.gateway_payment_id: payment.status for payment in rows(runtime, Payment)}
    assert by_gateway_id == {"pay_first": "confirmed", "pay_cash_again": "undone"}
    books_clean(runtime)
