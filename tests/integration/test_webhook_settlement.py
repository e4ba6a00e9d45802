"""From a delivery to the books: invoices paid, blocks lifted, duplicates refunded, in any order, once."""

from __future__ import annotations

import contextlib
import copy
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import respx
from dramatiq.errors import QueueJoinTimeout
from sqlalchemy import select
from starlette.testclient import TestClient

from billing.clock import FrozenClock, parse_instant
from billing.journal import WebhookEvent
from billing.models import Charge, EventStatus, Invoice, Payment, Refund, pix_txid
from billing.ports import GatewayUnavailable
from billing.settlement import open_charge
from regua.cli import tick_once
from regua.runtime import Runtime
from tests.conftest import ASAAS_API_URL
from tests.integration.conftest import Api
from tests.integration.webhook_helpers import (
    asaas_delivery,
    asaas_headers,
    event_rows,
    fixture,
    pix_url,
    standard_body,
    standard_headers,
)
from webhooks.base import Provider
from workers.actors import Jobs
from workers.processing import process_event, replay_events

FINAL = (EventStatus.PROCESSED.value, EventStatus.IGNORED.value, EventStatus.UNMATCHED.value)
DAY_9 = parse_instant("2026-12-09T11:00:00-03:00")


@pytest.fixture
def blocked_invoice(api: Api, runtime: Runtime, clock: FrozenClock) -> str:
    """A boleto customer who did not pay December: blocked since 00:00 of 7/12, now on day 9."""
    api.put_account("padaria-central")
    api.subscribe("padaria-central", "platform", payment_method="boleto")
    tick_once(runtime)
    clock.set(DAY_9)
    tick_once(runtime)
    assert api.access("padaria-central", "platform")["state"] == "blocked"
    [invoice] = api.invoices("padaria-central")
    return str(invoice["id"])


def opened_charges(runtime: Runtime) -> list[Charge]:
    """The charges a test opened, without the PIX or boleto one the tick opened with the invoice (rule 3.3)."""
    return [charge for charge in rows(runtime, Charge) if charge.source != "manual"]


def charge_for(runtime: Runtime, invoice_ids: list[str], method: str = "pix") -> str:
    return runtime.transaction(lambda session: open_charge(session, invoice_ids, method, runtime.clock.now()).id)


def deliver_standard(
    client: TestClient, clock: FrozenClock, event_type: str, charge_id: str, message_id: str, **data: Any
) -> None:
    body = standard_body(event_type, charge_id, **data)
    response = client.post("/webhooks/standard", content=body, headers=standard_headers(body, message_id, clock.now()))
    assert response.status_code == 200, response.text


def settle_jobs(jobs: Jobs, runtime: Runtime, *, until: tuple[str, ...] = FINAL) -> None:
    """Wait until every stored event reached one of `until` (the answer comes before the job is queued)."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with contextlib.suppress(QueueJoinTimeout):
            jobs.broker.join("webhooks", timeout=200)
        if all(event.status in until for event in event_rows(runtime)):
            return
        time.sleep(0.01)
    raise AssertionError(f"events still waiting: {[(e.id, e.status) for e in event_rows(runtime)]}")


def rows(runtime: Runtime, model: type[Any]) -> list[Any]:
    return runtime.read(lambda session: list(session.scalars(select(model))))


def test_a_confirmed_payment_pays_the_invoice_and_lifts_the_block_in_the_same_job(
    client: TestClient, api: Api, runtime: Runtime, clock: FrozenClock, jobs: Jobs, blocked_invoice: str
) -> None:
    charge_id = charge_for(runtime, [blocked_invoice])
    deliver_standard(client, clock, "payment.confirmed", charge_id, "msg_paid")
    settle_jobs(jobs, runtime)
    [invoice] = api.invoices("padaria-central")
    assert invoice["status"] == "paid"
    assert invoice["charge_id"] == charge_id
    assert api.access("padaria-central", "platform")["state"] == "active"
    [event] = event_rows(runtime)
    assert (event.status, event.outcome, event.charge_id) == ("processed", "settled", charge_id)


def test_the_same_payment_delivered_twice_settles_once(
    client: TestClient, runtime: Runtime, clock: FrozenClock, jobs: Jobs, blocked_invoice: str
) -> None:
    charge_id = charge_for(runtime, [blocked_invoice])
    deliver_standard(client, clock, "payment.confirmed", charge_id, "msg_a")
    deliver_standard(client, clock, "payment.confirmed", charge_id, "msg_b")  # a relay re-sent it with a new id
    settle_jobs(jobs, runtime)
    assert len(rows(runtime, Payment)) == 1
    assert sorted(event.outcome for event in event_rows(runtime)) == ["already_recorded", "settled"]


def test_a_second_payment_for_a_paid_invoice_is_a_duplicate_owed_back(
    client: TestClient, api: Api, runtime: Runtime, clock: FrozenClock, jobs: Jobs, blocked_invoice: str
) -> None:
    boleto = charge_for(runtime, [blocked_invoice], "boleto")
    pix = charge_for(runtime, [blocked_invoice], "pix")
    deliver_standard(client, clock, "payment.confirmed", pix, "msg_pix", payment_id="gw_pix")
    settle_jobs(jobs, runtime)
    assert rows(runtime, Charge)[0].status in ("canceled", "confirmed")
    assert {charge.id: charge.status for charge in opened_charges(runtime)} == {boleto: "canceled", pix: "confirmed"}
    deliver_standard(client, clock, "payment.confirmed", boleto, "msg_boleto", payment_id="gw_boleto", method="boleto")
    settle_jobs(jobs, runtime)
    history = api.get("/api/accounts/padaria-central/payments")
    assert sorted(payment["status"] for payment in history["payments"]) == ["confirmed", "duplicate"]
    [refund] = history["refunds"]
    assert (refund["amount_cents"], refund["reason"]) == (19990, "duplicate")
    assert [invoice["status"] for invoice in api.invoices("padaria-central")] == ["paid"]


def test_a_pending_payment_puts_the_invoice_in_verification_and_a_failure_ends_it(
    client: TestClient, api: Api, runtime: Runtime, clock: FrozenClock, jobs: Jobs, blocked_invoice: str
) -> None:
    charge_id = charge_for(runtime, [blocked_invoice], "boleto")
    deliver_standard(client, clock, "payment.pending", charge_id, "msg_pending", method="boleto")
    settle_jobs(jobs, runtime)
    assert api.access("padaria-central", "platform")["state"] == "verifying"
    deliver_standard(client, clock, "payment.failed", charge_id, "msg_failed", failure_code="insufficient_funds")
    settle_jobs(jobs, runtime)
    assert api.access("padaria-central", "platform")["state"] == "blocked"
    [charge] = opened_charges(runtime)
    assert (charge.status, charge.failure_code) == ("failed", "insufficient_funds")


def test_a_refund_that_arrives_before_its_confirmation_ends_where_the_right_order_ends(
    client: TestClient, api: Api, runtime: Runtime, clock: FrozenClock, jobs: Jobs, blocked_invoice: str
) -> None:
    charge_id = charge_for(runtime, [blocked_invoice])
    deliver_standard(client, clock, "payment.refunded", charge_id, "msg_refund", refund_id="rf_1")
    settle_jobs(jobs, runtime)
    deliver_standard(client, clock, "payment.confirmed", charge_id, "msg_confirm")
    settle_jobs(jobs, runtime)
    [payment] = rows(runtime, Payment)
    [refund] = rows(runtime, Refund)
    assert payment.status == "refunded"
    assert (refund.status, refund.gateway_refund_id, refund.amount_cents) == ("done", "rf_1", 19990)
    assert [invoice["status"] for invoice in api.invoices("padaria-central")] == ["refunded"]
    assert [charge.status for charge in opened_charges(runtime)] == ["refunded"]


def test_the_same_events_in_the_right_order_end_in_the_same_state(
    client: TestClient, api: Api, runtime: Runtime, clock: FrozenClock, jobs: Jobs, blocked_invoice: str
) -> None:
    charge_id = charge_for(runtime, [blocked_invoice])
    deliver_standard(client, clock, "payment.confirmed", charge_id, "msg_confirm")
    settle_jobs(jobs, runtime)
    deliver_standard(client, clock, "payment.refunded", charge_id, "msg_refund", refund_id="rf_1")
    settle_jobs(jobs, runtime)
    [payment] = rows(runtime, Payment)
    [refund] = rows(runtime, Refund)
    assert payment.status == "refunded"
    assert (refund.status, refund.gateway_refund_id, refund.amount_cents) == ("done", "rf_1", 19990)
    assert [invoice["status"] for invoice in api.invoices("padaria-central")] == ["refunded"]
    assert [charge.status for charge in opened_charges(runtime)] == ["refunded"]


def test_a_chargeback_reopens_the_month_it_paid(
    client: TestClient, api: Api, runtime: Runtime, clock: FrozenClock, jobs: Jobs, blocked_invoice: str
) -> None:
    charge_id = charge_for(runtime, [blocked_invoice], "card")
    deliver_standard(client, clock, "payment.confirmed", charge_id, "msg_paid", method="card")
    settle_jobs(jobs, runtime)
    deliver_standard(client, clock, "payment.chargeback", charge_id, "msg_chargeback", method="card")
    settle_jobs(jobs, runtime)
    assert [invoice["status"] for invoice in api.invoices("padaria-central")] == ["open"]
    assert api.access("padaria-central", "platform")["state"] == "blocked"


def test_an_event_for_an_unknown_charge_is_parked_as_unmatched_and_can_be_replayed(
    client: TestClient,
    runtime: Runtime,
    clock: FrozenClock,
    jobs: Jobs,
    providers: dict[str, Provider],
    blocked_invoice: str,
) -> None:
    deliver_standard(client, clock, "payment.confirmed", "chg_made_elsewhere", "msg_orphan", payment_id="gw_ext_1")
    settle_jobs(jobs, runtime)
    [event] = event_rows(runtime)
    assert event.status == "unmatched"

    def adopt(session: Any) -> None:  # ops link the gateway's payment to a charge of ours
        charge = open_charge(session, [blocked_invoice], "pix", clock.now(), gateway="standard")
        charge.gateway_payment_id = "gw_ext_1"

    runtime.transaction(adopt)
    assert runtime.transaction(lambda session: replay_events(session, [event.id])) == [event.id]
    assert process_event(runtime, providers, event.id) == "settled"
    assert [row.status for row in event_rows(runtime)] == ["processed"]


@pytest.fixture
def asaas_api() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=ASAAS_API_URL, assert_all_called=False) as router:
        yield router


def asaas_payment(payment_id: str, reference: str, status: str, value: float) -> dict[str, Any]:
    payment = copy.deepcopy(fixture("asaas/PAYMENT_RECEIVED_PIX.json")["payment"])
    payment.update(id=payment_id, externalReference=reference, status=status, value=value)
    return dict(payment)


def test_an_asaas_payment_is_settled_only_after_the_api_confirms_it(
    client: TestClient, api: Api, runtime: Runtime, jobs: Jobs, blocked_invoice: str, asaas_api: respx.MockRouter
) -> None:
    charge_id = charge_for(runtime, [blocked_invoice])
    fetch = asaas_api.get("/v3/payments/pay_777").mock(
        return_value=httpx.Response(200, json=asaas_payment("pay_777", charge_id, "RECEIVED", 199.9))
    )
    body = asaas_delivery(
        "PAYMENT_RECEIVED_PIX", event_id="evt_1", payment_id="pay_777", reference=charge_id, value=199.9
    )
    answer = client.post("/webhooks/asaas", content=body, headers=asaas_headers()).json()
    assert answer == {"status": "accepted", "event_ids": [row.id for row in rows(runtime, WebhookEvent)]}
    settle_jobs(jobs, runtime)
    assert fetch.call_count == 1
    assert fetch.calls.last.request.headers["access_token"] == "asaas-test-key"
    assert api.access("padaria-central", "platform")["state"] == "active"
    [payment] = rows(runtime, Payment)
    assert (payment.amount_cents, payment.method, payment.gateway) == (19990, "pix", "asaas")


def test_an_asaas_webhook_the_api_contradicts_settles_nothing(
    client: TestClient, api: Api, runtime: Runtime, jobs: Jobs, blocked_invoice: str, asaas_api: respx.MockRouter
) -> None:
    charge_id = charge_for(runtime, [blocked_invoice])
    asaas_api.get("/v3/payments/pay_forged").mock(
        return_value=httpx.Response(200, json=asaas_payment("pay_forged", charge_id, "PENDING", 199.9))
    )
    body = asaas_delivery(
        "PAYMENT_RECEIVED_PIX", event_id="evt_f", payment_id="pay_forged", reference=charge_id, value=199.9
    )
    client.post("/webhooks/asaas", content=body, headers=asaas_headers())
    settle_jobs(jobs, runtime)
    assert rows(runtime, Payment) == []
    assert api.access("padaria-central", "platform")["state"] == "blocked"
    [event] = event_rows(runtime)
    assert event.status == "processed"
    assert "the API says PENDING" in (event.outcome or "")


def test_an_asaas_refund_is_recorded_from_the_refetched_payment(
    client: TestClient, api: Api, runtime: Runtime, jobs: Jobs, blocked_invoice: str, asaas_api: respx.MockRouter
) -> None:
    charge_id = charge_for(runtime, [blocked_invoice], "card")
    route = asaas_api.get("/v3/payments/pay_9")
    route.mock(return_value=httpx.Response(200, json=asaas_payment("pay_9", charge_id, "CONFIRMED", 199.9)))
    confirmed = asaas_delivery(
        "PAYMENT_CONFIRMED", event_id="evt_c", payment_id="pay_9", reference=charge_id, value=199.9
    )
    client.post("/webhooks/asaas", content=confirmed, headers=asaas_headers())
    settle_jobs(jobs, runtime)
    route.mock(return_value=httpx.Response(200, json=asaas_payment("pay_9", charge_id, "REFUNDED", 199.9)))
    refunded = asaas_delivery(
        "PAYMENT_REFUNDED", event_id="evt_r", payment_id="pay_9", reference=charge_id, value=199.9
    )
    client.post("/webhooks/asaas", content=refunded, headers=asaas_headers())
    settle_jobs(jobs, runtime)
    [payment] = rows(runtime, Payment)
    assert payment.status == "refunded"
    assert [invoice["status"] for invoice in api.invoices("padaria-central")] == ["refunded"]


def test_a_card_plan_in_installments_settles_whole_with_its_first_and_ignores_the_others(
    client: TestClient, api: Api, runtime: Runtime, jobs: Jobs, blocked_invoice: str, asaas_api: respx.MockRouter
) -> None:
    charge_id = charge_for(runtime, [blocked_invoice], "card")
    for number, payment_id in ((1, "pay_i1"), (2, "pay_i2")):
        payment = asaas_payment(payment_id, charge_id, "CONFIRMED", 66.64 if number == 1 else 66.63)
        payment.update(billingType="CREDIT_CARD", installment="ins_1", installmentNumber=number)
        asaas_api.get(f"/v3/payments/{payment_id}").mock(return_value=httpx.Response(200, json=payment))
        body = asaas_delivery(
            "PAYMENT_CONFIRMED", event_id=f"evt_i{number}", payment_id=payment_id, reference=charge_id, value=66.64
        )
        client.post("/webhooks/asaas", content=body, headers=asaas_headers())
        settle_jobs(jobs, runtime)
    [payment_row] = rows(runtime, Payment)
    assert (payment_row.amount_cents, payment_row.status) == (19990, "confirmed")
    assert rows(runtime, Refund) == []
    assert api.access("padaria-central", "platform")["state"] == "active"
    assert sorted(event.outcome or "" for event in event_rows(runtime))[0].startswith("installment 2")


def test_an_asaas_api_outage_leaves_the_event_to_be_retried(
    client: TestClient,
    runtime: Runtime,
    jobs: Jobs,
    providers: dict[str, Provider],
    blocked_invoice: str,
    asaas_api: respx.MockRouter,
) -> None:
    charge_id = charge_for(runtime, [blocked_invoice])
    route = asaas_api.get("/v3/payments/pay_5").mock(return_value=httpx.Response(503))
    body = asaas_delivery(
        "PAYMENT_RECEIVED_PIX", event_id="evt_5", payment_id="pay_5", reference=charge_id, value=199.9
    )
    client.post("/webhooks/asaas", content=body, headers=asaas_headers())
    settle_jobs(jobs, runtime, until=("failed",))
    [event] = event_rows(runtime)
    assert "503" in (event.outcome or "")
    with pytest.raises(GatewayUnavailable):
        process_event(runtime, providers, event.id)
    assert event_rows(runtime)[0].status == "failed"
    route.mock(return_value=httpx.Response(200, json=asaas_payment("pay_5", charge_id, "RECEIVED", 199.9)))
    assert process_event(runtime, providers, event.id) == "settled"


@pytest.mark.parametrize("shape", ["list", "object"])
def test_a_pix_payment_settles_by_txid_and_its_devolucao_refunds_it(
    client: TestClient, api: Api, runtime: Runtime, jobs: Jobs, blocked_invoice: str, shape: str
) -> None:
    charge_id = charge_for(runtime, [blocked_invoice])
    item = fixture("pix/devolucao_devolvido.json")["pix"][0]
    paid = {**{k: v for k, v in item.items() if k != "devolucoes"}, "txid": pix_txid(charge_id), "valor": "199.90"}
    response = client.post(
        pix_url(), content=json.dumps({"pix": [paid]}).encode(), headers={"content-type": "application/json"}
    )
    [paid_event] = rows(runtime, WebhookEvent)
    assert response.json() == {"status": "accepted", "event_ids": [paid_event.id]}
    settle_jobs(jobs, runtime)
    assert api.access("padaria-central", "platform")["state"] == "active"
    refunded = {**item, "txid": pix_txid(charge_id), "valor": "199.90"}
    devolucao = {**item["devolucoes"][0], "valor": "199.90"}
    refunded["devolucoes"] = [devolucao] if shape == "list" else devolucao  # "object": as BACEN's example writes it
    response = client.post(
        pix_url("/webhooks/pix/pix"),
        content=json.dumps({"pix": [refunded]}).encode(),
        headers={"content-type": "application/json"},
    )
    # the payment is a duplicate, its devolução is new: only the devolução's id comes back
    [refund_event] = [row for row in rows(runtime, WebhookEvent) if row.id != paid_event.id]
    assert response.json() == {"status": "accepted", "event_ids": [refund_event.id]}
    settle_jobs(jobs, runtime)
    [payment] = rows(runtime, Payment)
    assert (payment.gateway, payment.gateway_payment_id, payment.status) == ("pix", item["endToEndId"], "refunded")


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
@pytest.mark.parametrize(
    "events", [("evt_msg_1", "evt_msg_2"), ("evt_msg_1", "evt_msg_1")], ids=["two-deliveries", "one-delivery"]
)
def test_two_workers_settling_the_same_payment_at_the_same_instant_settle_it_once(
    runtime: Runtime, clock: FrozenClock, providers: dict[str, Provider], blocked_invoice: str, events: tuple[str, str]
) -> None:
    charge_id = charge_for(runtime, [blocked_invoice])
    body = standard_body("payment.confirmed", charge_id)
    for message_id in ("msg_1", "msg_2"):
        runtime.transaction(
            lambda session, message_id=message_id: session.add(
                WebhookEvent(
                    id=f"evt_{message_id}",
                    provider="standard",
                    dedupe_key=message_id,
                    event_type="payment.confirmed",
                    body=body.decode(),
                    status=EventStatus.RECEIVED.value,
                    received_at=clock.now(),
                    attempts=0,
                )
            )
        )
    barrier = threading.Barrier(2)
    outcomes: list[str] = []
    errors: list[BaseException] = []

    def work(event_id: str) -> None:
        barrier.wait()
        try:
            outcomes.append(process_event(runtime, providers, event_id))
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=work, args=(event_id,)) for event_id in events]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(outcomes)[-1] == "settled"
    assert sorted(outcomes)[0] in ("already_done", "already_recorded")
    assert len(rows(runtime, Payment)) == 1
    assert [invoice.status for invoice in rows(runtime, Invoice)] == ["paid"]
