"""Charging end to end through real HTTP: regua and the gateway simulator on sockets, webhooks flowing back.

regua's app (API, webhooks, an in-process worker on the stub broker) and the Asaas simulator each
run under uvicorn in a thread; both read the test's frozen clock, and ticks move billing time.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import httpx
import pytest
import uvicorn
from dramatiq.errors import QueueJoinTimeout
from sqlalchemy import select
from sqlalchemy.orm import selectinload
from starlette.types import ASGIApp

from billing.charging import plan_auto_debits
from billing.clock import FrozenClock, parse_instant
from billing.journal import WebhookEvent
from billing.models import Charge, EventStatus, Invoice, Payment, Refund
from billing.tick import TickReport
from regua.app import create_app
from regua.assembly import InProcessWorker, build_providers
from regua.gateway.asaas import AsaasGateway
from regua.mailer import SmtpPostman
from regua.runtime import Runtime, build_runtime
from regua.sandbox.simulator import create_simulator_app
from regua.settings import Settings
from tests.conftest import ASAAS_TOKEN
from tests.integration.conftest import AUTH, Api
from workers.actors import Jobs, declare_actors
from workers.broker import build_broker
from workers.context import WorkerContext
from workers.tick import tick

pytestmark = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)

ACCOUNT = "padaria-central"
FINAL = (EventStatus.PROCESSED.value, EventStatus.IGNORED.value, EventStatus.UNMATCHED.value)


def day(number: int, month: int = 12, year: int = 2026) -> Any:
    return parse_instant(f"{year}-{month:02d}-{number:02d}T00:05:00-03:00")


def bound_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@contextlib.contextmanager
def serve(app: ASGIApp, sock: socket.socket) -> Iterator[None]:
    """`app` under uvicorn on an already bound socket, in a thread; stopped and joined on exit."""
    server = uvicorn.Server(uvicorn.Config(app, lifespan="on", log_level="warning", http="h11", ws="none"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the test server did not start")
            time.sleep(0.01)
        yield
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@dataclass
class World:
    runtime: Runtime
    clock: FrozenClock
    context: WorkerContext
    jobs: Jobs
    api: Api
    sim: httpx.Client

    def tick(self, at: Any) -> TickReport:
        self.clock.set(at)
        report = tick(self.context, self.jobs)
        self.settle()
        return report

    def settle(self, until: Callable[[], bool] = lambda: True, timeout: float = 20) -> None:
        """Wait until the queues are quiet, every webhook the simulator sent is processed, and `until` holds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for queue in ("webhooks", "charges"):
                with contextlib.suppress(QueueJoinTimeout):
                    self.jobs.broker.join(queue, timeout=100)
            deliveries = self.sim.get("/sim/state").json()["webhooks"]
            events = self.rows(WebhookEvent)
            if (
                all(delivery["status"] == "delivered" for delivery in deliveries)
                and len(events) >= len(deliveries)
                and all(event.status in FINAL for event in events)
                and until()
            ):
                return
            time.sleep(0.05)
        raise AssertionError(f"never settled: {self.sim.get('/sim/state').json()['webhooks']}")

    def rows(self, model: type[Any]) -> list[Any]:
        return self.runtime.read(lambda session: list(session.scalars(select(model))))

    def charges(self) -> list[Charge]:
        query = select(Charge).options(selectinload(Charge.attempts)).order_by(Charge.created_at)
        return self.runtime.read(lambda session: list(session.scalars(query)))

    def sim_payments(self) -> list[dict[str, Any]]:
        return list(self.sim.get("/sim/state").json()["payments"])

    def checkout(self, **body: Any) -> dict[str, Any]:
        response = self.api.client.post(f"/api/accounts/{ACCOUNT}/checkout", json=body, headers=AUTH)
        assert response.status_code in (200, 201), response.text
        return dict(response.json())


@pytest.fixture
def world(settings: Settings, clock: FrozenClock) -> Iterator[World]:
    regua_sock, sim_sock = bound_socket(), bound_socket()
    regua_url = f"http://127.0.0.1:{regua_sock.getsockname()[1]}"
    sim_url = f"http://127.0.0.1:{sim_sock.getsockname()[1]}"
    sim_settings = replace(settings, asaas_api_url=sim_url)
    runtime = build_runtime(sim_settings, clock=clock)
    providers = build_providers(sim_settings)
    # The worker's client gives up after 0.5 s, before tok_timeout's answer comes (1.5 s).
    gateway = AsaasGateway(sim_url, "asaas-test-key", timeout=httpx.Timeout(0.5, connect=2.0), backoff=lambda _n: 0.05)
    context = WorkerContext(runtime, providers, gateway, postman=lambda: SmtpPostman(runtime))
    jobs = declare_actors(build_broker(""), lambda: context)
    app = create_app(runtime, providers, jobs.enqueue_events, [InProcessWorker(jobs.broker)])
    simulator = create_simulator_app(
        f"{regua_url}/webhooks/asaas",
        ASAAS_TOKEN,
        timeout_delay_s=1.5,
        clock=clock,
        webhook_retry_delays=(0.2, 0.5, 1.0, 2.0),
    )
    with (
        serve(simulator, sim_sock),
        serve(app, regua_sock),
        httpx.Client(base_url=regua_url, timeout=30) as regua_client,
        httpx.Client(base_url=sim_url, timeout=10) as sim_client,
    ):
        api = Api(regua_client)  # type: ignore[arg-type]
        api.put_account(ACCOUNT)
        yield World(runtime, clock, context, jobs, api, sim_client)
    gateway.close()


def test_day_one_charges_the_saved_card_with_five_percent_off_and_pays_the_invoice(world: World) -> None:
    world.api.subscribe(ACCOUNT, "platform", payment_method="card_auto_debit", card_token="tok_ok")
    report = world.tick(day(1))
    world.settle(lambda: len(world.rows(Payment)) == 1)

    assert report.counts["charges_started"] == 1
    [sim_payment] = world.sim_payments()
    [charge] = world.charges()
    assert (sim_payment["value"], sim_payment["billingType"], sim_payment["status"]) == (
        189.9,
        "CREDIT_CARD",
        "CONFIRMED",
    )
    assert sim_payment["externalReference"] == charge.id
    assert charge.status == "confirmed"
    [invoice] = world.api.invoices(ACCOUNT)
    assert (invoice["subtotal_cents"], invoice["discount_cents"], invoice["total_cents"]) == (19990, 1000, 18990)
    assert (invoice["status"], invoice["charge_id"]) == ("paid", charge.id)
    [payment] = world.rows(Payment)
    assert (payment.amount_cents, payment.method, payment.gateway_payment_id) == (18990, "card", sim_payment["id"])
    [event] = world.rows(WebhookEvent)
    assert event.outcome in ("already_recorded", "settled")
    assert world.tick(day(1)).counts["charges_started"] == 0


def test_a_soft_decline_on_day_one_is_retried_on_day_three_and_paid(world: World) -> None:
    world.api.subscribe(ACCOUNT, "platform", payment_method="card_auto_debit", card_token="tok_soft_decline")
    world.tick(day(1))
    [declined] = world.charges()
    assert (declined.status, declined.failure_code, any(a.decline_class == "hard" for a in declined.attempts)) == (
        "failed",
        "insufficient_funds",
        False,
    )
    assert world.tick(day(2)).counts["charges_started"] == 0

    world.api.subscribe(ACCOUNT, "platform", payment_method="card_auto_debit", card_token="tok_ok")
    assert world.tick(day(3)).counts["charges_started"] == 1
    world.settle(lambda: world.api.invoices(ACCOUNT)[0]["status"] == "paid")
    assert [charge.status for charge in world.charges()] == ["failed", "confirmed"]
    # The new card is charged at the next pass, retry day or not (rule 3.3): its own key, not day 3's.
    assert [charge.idempotency_key.rsplit(":", 1)[1][:5] for charge in world.charges()] == ["day1", "card-"]
    assert len(world.sim_payments()) == 1


def test_a_hard_decline_is_never_retried_and_the_account_blocks_on_day_seven(world: World) -> None:
    world.api.subscribe(ACCOUNT, "platform", payment_method="card_auto_debit", card_token="tok_hard_decline")
    world.tick(day(1))
    [declined] = world.charges()
    assert (declined.failure_code, any(a.decline_class == "hard" for a in declined.attempts)) == (
        "stolen_or_lost",
        True,
    )
    for retry_day in (3, 5):
        assert world.tick(day(retry_day)).counts["charges_started"] == 0
    assert world.tick(day(7)).counts["blocks_applied"] == 1
    assert world.api.access(ACCOUNT, "platform")["state"] == "blocked"
    assert len(world.sim.get("/sim/state").json()["refused"]) == 1
    assert len(world.charges()) == 1


def test_a_pix_paid_twice_is_refunded_once_through_the_gateway(world: World) -> None:
    world.api.subscribe(ACCOUNT, "platform", payment_method="pix")
    world.tick(day(1))
    pix = world.checkout(product="platform", method="pix")
    [created] = world.sim_payments()
    assert world.sim.post(f"/sim/payments/{created['id']}/pay").status_code == 200
    world.settle(lambda: world.api.invoices(ACCOUNT)[0]["status"] == "paid")
    again = world.sim.post(f"/sim/payments/{created['id']}/pay-again")
    assert again.status_code == 201

    world.settle(lambda: [refund.status for refund in world.rows(Refund)] == ["done"])
    [refund] = world.rows(Refund)
    assert (refund.reason, refund.amount_cents) == ("duplicate", 19990)
    statuses = {p["id"]: p["status"] for p in world.sim_payments()}
    assert statuses == {created["id"]: "RECEIVED", again.json()["id"]: "REFUNDED"}
    [twice] = [p for p in world.sim_payments() if p["id"] == again.json()["id"]]
    assert len(twice["refunds"]) == 1
    history = world.api.get(f"/api/accounts/{ACCOUNT}/payments")
    assert sorted(payment["status"] for payment in history["payments"]) == ["confirmed", "duplicate"]
    [invoice] = world.api.invoices(ACCOUNT)
    assert (invoice["status"], invoice["charge_id"]) == ("paid", pix["charge_id"])


def test_a_charge_job_sent_twice_at_once_charges_the_card_once(world: World) -> None:
    world.api.subscribe(ACCOUNT, "platform", payment_method="card_auto_debit", card_token="tok_ok")
    world.tick(day(1, 11))  # issues nothing yet: the subscription starts in December
    world.clock.set(day(1))
    from billing.invoicing import issue_due_invoices

    runtime = world.runtime
    runtime.transaction(lambda session: issue_due_invoices(session, day(1), runtime.calendar))
    [charge_id] = runtime.transaction(
        lambda session: plan_auto_debits(session, day(1), runtime.calendar, runtime.policy)
    )
    for _ in range(3):
        world.jobs.charging.charge.send(charge_id)
    world.settle(lambda: len(world.rows(Payment)) == 1)
    world.jobs.charging.charge.send(charge_id)
    world.settle()
    assert len(world.sim_payments()) == 1
    assert len(world.rows(Payment)) == 1
    assert [invoice.status for invoice in world.rows(Invoice)] == ["paid"]


def test_a_card_whose_answer_times_out_is_charged_once_and_paid(world: World) -> None:
    world.api.subscribe(ACCOUNT, "platform", payment_method="card_auto_debit", card_token="tok_timeout")
    world.tick(day(1))
    world.settle(lambda: world.api.invoices(ACCOUNT)[0]["status"] == "paid")
    assert len(world.sim_payments()) == 1
    assert len(world.rows(Payment)) == 1


def test_a_blocked_mentorship_pays_both_months_in_one_pix_and_is_unblocked(world: World) -> None:
    world.api.subscribe(ACCOUNT, "mentorship", payment_method="pix", monthly_price_cents=50000, starts_on="2026-11-01")
    world.tick(day(9, 11))
    world.tick(day(9))
    assert world.api.access(ACCOUNT, "mentorship")["state"] == "blocked"

    body = world.checkout(product="mentorship", method="pix")
    assert body["amount_cents"] == 100000
    assert [invoice["period_start"] for invoice in body["invoices"]] == ["2026-11-01", "2026-12-01"]
    assert body["pix"]["code"].startswith("000201")
    # The PIX of each month, issued with its invoice, gave way to the combined one.
    payments = world.sim_payments()
    [created] = [p for p in payments if p["externalReference"] == body["charge_id"]]
    assert [p["deleted"] for p in payments if p is not created] == [True, True]
    assert created["value"] == 1000
    world.sim.post(f"/sim/payments/{created['id']}/pay")
    world.settle(lambda: world.api.access(ACCOUNT, "mentorship")["state"] == "active")
    assert [invoice["status"] for invoice in world.api.invoices(ACCOUNT)] == ["paid", "paid"]


def test_a_checkout_reuses_a_pending_pix_and_cancels_it_at_the_gateway_for_a_boleto(world: World) -> None:
    world.api.subscribe(ACCOUNT, "platform", payment_method="boleto")
    world.tick(day(1))
    world.tick(day(9))
    [day_one] = world.charges()
    first = world.checkout(product="platform", method="pix")
    assert world.checkout(product="platform", method="pix") == first
    assert len(world.sim_payments()) == 2  # the day-1 boleto (canceled for the PIX) and the PIX

    boleto = world.checkout(product="platform", method="boleto")
    world.settle()
    assert boleto["charge_id"] != first["charge_id"]
    assert len(boleto["boleto"]["line"]) == 47
    by_reference = {p["externalReference"]: p for p in world.sim_payments()}
    assert by_reference[first["charge_id"]]["deleted"] is True
    assert by_reference[boleto["charge_id"]]["billingType"] == "BOLETO"
    assert by_reference[day_one.id]["deleted"] is True
    statuses = {charge.id: charge.status for charge in world.charges()}
    assert statuses == {day_one.id: "canceled", first["charge_id"]: "canceled", boleto["charge_id"]: "pending"}
