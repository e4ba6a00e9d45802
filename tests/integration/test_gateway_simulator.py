"""The real Asaas client against the gateway simulator over real sockets, and the simulator's webhooks."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.testclient import TestClient
from starlette.types import ASGIApp

from billing.ports import (
    BoletoCode,
    CardCharge,
    CardDeclined,
    ManualCharge,
    PixCode,
)
from regua.gateway.asaas import AsaasGateway
from regua.sandbox.simulator import create_simulator_app

WEBHOOK_TOKEN = "whk-test-token"
CLIENT_READ_TIMEOUT_S = 0.75
SIMULATED_DELAY_S = 2.0


@contextmanager
def serve(app: ASGIApp) -> Iterator[str]:
    """Run `app` under uvicorn on a free 127.0.0.1 port in a thread; stop it and wait for it on exit."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, lifespan="on", log_level="warning", http="h11", ws="none")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name=f"uvicorn-{port}")
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the test server did not start")
            time.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
        assert not thread.is_alive(), "the test server did not stop"


@dataclass
class Delivery:
    headers: dict[str, str]
    body: bytes

    @property
    def event(self) -> dict[str, Any]:
        return dict(json.loads(self.body))


class Receiver:
    """A stand-in for regua's webhook endpoint: records every delivery; can be told to fail first."""

    def __init__(self) -> None:
        self.deliveries: list[Delivery] = []
        self.failures: list[int] = []  # status codes to answer before answering 200
        self._changed = threading.Condition()
        self.app = Starlette(routes=[Route("/webhooks/asaas", self.receive, methods=["POST"])])
        self.url = ""

    async def receive(self, request: Request) -> Response:
        body = await request.body()
        with self._changed:
            self.deliveries.append(Delivery(dict(request.headers), body))
            self._changed.notify_all()
            status = self.failures.pop(0) if self.failures else 200
        return Response('{"status": "accepted"}', status_code=status, media_type="application/json")

    def clear(self) -> None:
        with self._changed:
            self.deliveries.clear()
            self.failures.clear()

    def events(self, name: str, count: int = 1, timeout: float = 5.0) -> list[Delivery]:
        """Wait for `count` deliveries of event `name` and return all of them."""
        with self._changed:
            self._changed.wait_for(lambda: len(self._named(name)) >= count, timeout)
            return self._named(name)

    def _named(self, name: str) -> list[Delivery]:
        return [delivery for delivery in self.deliveries if delivery.event["event"] == name]


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    with serve(receiver.app) as url:
        receiver.url = f"{url}/webhooks/asaas"
        yield receiver


@pytest.fixture(scope="module")
def simulator(receiver: Receiver) -> Iterator[str]:
    app = create_simulator_app(
        receiver.url,
        WEBHOOK_TOKEN,
        timeout_delay_s=SIMULATED_DELAY_S,
        webhook_retry_delays=(0.05, 0.05, 0.05),
    )
    with serve(app) as url:
        yield url
    assert not [thread for thread in threading.enumerate() if thread.name == "asaas-sim-webhooks"]


@pytest.fixture(scope="module")
def gateway(simulator: str) -> Iterator[AsaasGateway]:
    timeout = httpx.Timeout(CLIENT_READ_TIMEOUT_S, connect=2.0)
    with AsaasGateway(simulator, "any-key", timeout=timeout, backoff=lambda _attempt: 0.01) as client:
        yield client


@pytest.fixture(scope="module")
def sim(simulator: str) -> Iterator[httpx.Client]:
    """The simulator's test controls under /sim/."""
    with httpx.Client(base_url=simulator, timeout=5.0) as client:
        yield client


@pytest.fixture(autouse=True)
def fresh(sim: httpx.Client, receiver: Receiver) -> Iterator[None]:
    """Each test starts with an empty simulator and receiver, and leaves no webhook in flight."""
    yield
    deadline = time.monotonic() + 5
    while any(hook["status"] == "pending" for hook in sim.get("/sim/state").json()["webhooks"]):
        assert time.monotonic() < deadline, "a webhook was still in flight at the end of the test"
        time.sleep(0.02)
    sim.post("/sim/reset")
    receiver.clear()


def card(token: str, charge_id: str = "chg_card_1") -> CardCharge:
    return CardCharge(charge_id, "cus_000005113026", 18990, date(2026, 12, 1), token, "203.0.113.10", description="Pro")


def payments_for(sim: httpx.Client, charge_id: str) -> list[dict[str, Any]]:
    state = sim.get("/sim/state").json()
    return [payment for payment in state["payments"] if payment["externalReference"] == charge_id]


def test_an_approved_card_is_confirmed_and_announced_by_webhook(gateway: AsaasGateway, receiver: Receiver) -> None:
    payment = gateway.charge_card(card("tok_ok"))

    assert payment.status == "CONFIRMED"
    assert payment.is_paid
    assert payment.amount_cents == 18990
    [delivery] = receiver.events("PAYMENT_CONFIRMED")
    assert delivery.headers["asaas-access-token"] == WEBHOOK_TOKEN
    assert delivery.headers["content-type"] == "application/json"
    assert b'"value":189.90' in delivery.body
    event = delivery.event
    assert event["id"].startswith("evt_")
    assert event["payment"]["id"] == payment.id
    assert event["payment"]["externalReference"] == "chg_card_1"
    assert event["payment"]["billingType"] == "CREDIT_CARD"


def test_a_soft_decline_stores_nothing_and_may_be_retried(gateway: AsaasGateway, sim: httpx.Client) -> None:
    with pytest.raises(CardDeclined) as declined:
        gateway.charge_card(card("tok_soft_decline"))

    assert (declined.value.hard, declined.value.reason) == (False, "insufficient_funds")
    assert declined.value.code == "invalid_action"  # Asaas's code for a refused card
    assert payments_for(sim, "chg_card_1") == []
    assert sim.get("/sim/state").json()["refused"] == [
        {"externalReference": "chg_card_1", "creditCardToken": "tok_soft_decline"}
    ]


def test_a_hard_decline_says_never_to_retry_that_card(gateway: AsaasGateway, sim: httpx.Client) -> None:
    with pytest.raises(CardDeclined) as declined:
        gateway.charge_card(card("tok_hard_decline"))

    assert (declined.value.hard, declined.value.reason) == (True, "stolen_or_lost")
    assert payments_for(sim, "chg_card_1") == []


def test_a_charge_that_times_out_is_found_by_its_reference_and_made_only_once(
    gateway: AsaasGateway, sim: httpx.Client, receiver: Receiver
) -> None:
    started = time.monotonic()
    payment = gateway.charge_card(card("tok_timeout", charge_id="chg_slow"))
    elapsed = time.monotonic() - started

    assert CLIENT_READ_TIMEOUT_S <= elapsed < SIMULATED_DELAY_S  # it gave up waiting, then looked it up
    assert payment.is_paid
    [stored] = payments_for(sim, "chg_slow")
    assert stored["id"] == payment.id
    assert len(receiver.events("PAYMENT_CONFIRMED")) == 1


def test_scripted_outages_on_creation_are_retried_and_the_card_is_charged_once(
    gateway: AsaasGateway, sim: httpx.Client
) -> None:
    assert sim.post("/sim/outages", json={"create": ["500", "502-charged"]}).status_code == 200

    payment = gateway.charge_card(card("tok_ok", charge_id="chg_outages"))

    # a 500 stored nothing; the retry was charged and answered 502; the client looked again and found it
    assert sim.get("/sim/state").json()["outages"] == [
        {"outage": "500", "externalReference": "chg_outages"},
        {"outage": "502-charged", "externalReference": "chg_outages"},
    ]
    [stored] = payments_for(sim, "chg_outages")
    assert (stored["id"], stored["status"]) == (payment.id, "CONFIRMED")


def test_an_outage_script_names_what_it_accepts(sim: httpx.Client) -> None:
    answer = sim.post("/sim/outages", json={"create": ["503"]})

    assert answer.status_code == 400
    assert "500, 502-charged, timeout" in answer.json()["errors"][0]["description"]


def test_a_second_call_for_the_same_charge_returns_the_first_payment(gateway: AsaasGateway, sim: httpx.Client) -> None:
    first = gateway.charge_card(card("tok_ok", charge_id="chg_twice"))
    second = gateway.charge_card(card("tok_ok", charge_id="chg_twice"))

    assert second.id == first.id
    assert len(payments_for(sim, "chg_twice")) == 1


def test_a_boleto_paid_at_the_bank_is_announced_with_the_token_and_reads_as_paid(
    gateway: AsaasGateway, sim: httpx.Client, receiver: Receiver
) -> None:
    payment, code = gateway.create_manual_charge(
        ManualCharge("chg_boleto", "cus_000005113026", 19990, date(2026, 12, 1), "boleto")
    )
    assert payment.state == "pending"
    assert isinstance(code, BoletoCode)
    assert len(code.identification_field) == 47
    assert code.identification_field.isdigit()
    assert code.bank_slip_url is not None

    answer = sim.post(f"/sim/payments/{payment.id}/pay", json={"paymentDate": "2026-12-09"})
    assert answer.status_code == 200

    [delivery] = receiver.events("PAYMENT_RECEIVED")
    assert delivery.headers["asaas-access-token"] == WEBHOOK_TOKEN
    event = delivery.event
    assert event["payment"]["id"] == payment.id
    assert event["payment"]["status"] == "RECEIVED"
    assert event["payment"]["billingType"] == "BOLETO"
    assert event["payment"]["externalReference"] == "chg_boleto"
    assert event["payment"]["paymentDate"] == "2026-12-09"
    assert b'"value":199.90' in delivery.body
    fetched = gateway.get_payment(payment.id)
    assert fetched.is_paid
    assert fetched.paid_on == date(2026, 12, 9)


def test_a_pix_paid_twice_is_refunded_once_a_moment_after_the_refund_is_asked_for(
    gateway: AsaasGateway, sim: httpx.Client, receiver: Receiver
) -> None:
    payment, code = gateway.create_manual_charge(
        ManualCharge("chg_pix", "cus_000005113026", 11000, date(2026, 12, 1), "pix")
    )
    assert isinstance(code, PixCode)
    assert code.payload.startswith("000201")
    assert "5406110.00" in code.payload
    assert code.encoded_image.startswith("iVBORw0KGgo")

    sim.post(f"/sim/payments/{payment.id}/pay")
    duplicate = sim.post(f"/sim/payments/{payment.id}/pay-again").json()
    refund = gateway.refund(duplicate["id"], description="Pagamento em duplicidade")

    # Asaas answers with the refund PENDING; it is DONE a moment later, and only then announced
    assert refund.state == "refunding"
    assert [item["status"] for item in refund.raw["refunds"]] == ["PENDING"]
    assert refund.amount_cents == 11000
    received = receiver.events("PAYMENT_RECEIVED", count=2)
    assert {delivery.event["payment"]["id"] for delivery in received} == {payment.id, duplicate["id"]}
    [refunded] = receiver.events("PAYMENT_REFUNDED")
    assert refunded.event["payment"]["id"] == duplicate["id"]
    assert refunded.event["payment"]["refunds"][0]["status"] == "DONE"
    assert gateway.get_payment(payment.id).is_paid
    assert gateway.get_payment(duplicate["id"]).state == "refunded"


def test_a_canceled_boleto_is_gone_from_the_reference_lookup(gateway: AsaasGateway, receiver: Receiver) -> None:
    payment, _ = gateway.create_manual_charge(
        ManualCharge("chg_cancel", "cus_000005113026", 19990, date(2026, 12, 1), "boleto")
    )

    gateway.cancel(payment.id)

    assert gateway.get_payment(payment.id).state == "canceled"
    assert gateway.find_by_reference("chg_cancel") is None
    assert receiver.events("PAYMENT_DELETED")[0].event["payment"]["deleted"] is True


def test_webhooks_are_retried_until_the_receiver_answers_exactly_200(
    gateway: AsaasGateway, sim: httpx.Client, receiver: Receiver
) -> None:
    receiver.failures = [503, 204]  # like Asaas, a 204 is not a delivery

    gateway.charge_card(card("tok_ok"))

    deliveries = receiver.events("PAYMENT_CONFIRMED", count=3)
    assert len({delivery.event["id"] for delivery in deliveries}) == 1  # the same event, three times
    deadline = time.monotonic() + 5
    while (log := sim.get("/sim/state").json()["webhooks"])[0]["status"] == "pending":
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert log[0]["status"] == "delivered"
    assert log[0]["attempts"] == 3


def test_a_configured_api_key_is_the_only_one_accepted() -> None:
    app = create_simulator_app("", "", api_key="the-right-key")
    with TestClient(app) as client:
        missing = client.get("/v3/payments/pay_any")
        wrong = client.get("/v3/payments/pay_any", headers={"access_token": "a-wrong-key"})
        right = client.get("/v3/payments/pay_any", headers={"access_token": "the-right-key"})

    assert missing.status_code == wrong.status_code == 401
    assert wrong.json()["errors"][0]["code"] == "invalid_access_token"
    assert right.status_code == 404
    assert right.json() == {"errors": [{"code": "not_found", "description": "Cobrança pay_any não encontrada."}]}


def wait_for_queue(sim: httpx.Client, until: Any, timeout: float = 10.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while not until(queue := sim.get("/sim/state").json()["webhook_queue"]):
        assert time.monotonic() < deadline, f"the webhook queue never got there: {queue}"
        time.sleep(0.02)
    return dict(queue)


def test_a_failing_webhook_holds_the_ones_behind_it_and_fifteen_failures_interrupt_the_queue(
    gateway: AsaasGateway, sim: httpx.Client, receiver: Receiver
) -> None:
    receiver.failures = [500] * 15

    first = gateway.charge_card(card("tok_ok", charge_id="chg_first"))
    second = gateway.charge_card(card("tok_ok", charge_id="chg_second"))

    queue = wait_for_queue(sim, lambda queue: queue["interrupted"])
    assert (queue["failures"], queue["pending"]) == (15, 2)
    # only the first event was ever tried, fifteen times: the second waited behind it
    assert [d.event["payment"]["id"] for d in receiver.deliveries] == [first.id] * 15
    log = sim.get("/sim/state").json()["webhooks"]
    assert [(hook["payment_id"], hook["status"], hook["attempts"]) for hook in log] == [
        (first.id, "pending", 15),
        (second.id, "pending", 0),
    ]
    assert log[0]["last_error"] == "HTTP 500"

    assert sim.post("/sim/webhooks/resume").json() == {"requeued": 2}

    delivered = receiver.events("PAYMENT_CONFIRMED", count=17)
    assert [d.event["payment"]["id"] for d in delivered[15:]] == [first.id, second.id]
    assert wait_for_queue(sim, lambda queue: queue["pending"] == 0)["interrupted"] is False


def test_the_webhook_retry_schedule_is_asaas_s_divided_by_the_simulator_s_divisor() -> None:
    app = create_simulator_app("", "", webhook_delay_divisor=30)
    with TestClient(app) as client:
        queue = client.get("/sim/state").json()["webhook_queue"]

    assert queue["retry_delays_s"][:6] == [1, 2, 7, 10, 30, 50]  # 30 s, 1 min, 3.5 min, 5, 15, 25 min
    assert queue["retry_delays_s"][6:] == [120] * 5 + [240, 240, 360]  # 1 h five times, 2 h twice, 3 h
    assert queue == queue | {"interrupted": False, "failures": 0, "pending": 0}
