"""SPEC section 6 with real processes: each fault injected into `regua serve`, two worker processes, the
gateway simulator and an SMTP sink, then the books read back."""

from __future__ import annotations

import copy
import json
import os
import re
import signal
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from time import monotonic
from typing import Any

import httpx
import pytest
import redis

from billing.models import Payment, pix_txid
from tests.conftest import ASAAS_TOKEN, PIX_SECRET
from tests.faults.conftest import SAO_PAULO, Stack, shuffled, wait_for
from tests.integration.webhook_helpers import fixture, standard_headers

pytestmark = [pytest.mark.faults, pytest.mark.e2e]

JSON = {"content-type": "application/json"}
SETTLED = {"processed", "unmatched", "ignored"}


def day_one(first: Any) -> datetime:
    return datetime.combine(first, time(0, 5), SAO_PAULO)


def standard_delivery(
    charge: dict[str, Any], message_id: str, *, at: datetime | None = None
) -> tuple[str, bytes, dict[str, str]]:
    """A signed Standard Webhooks payment.confirmed for `charge`, paid `at` (now by default) and signed with
    the real time: the receiver measures the signature's 5-minute tolerance on the wall clock, whatever
    its shared clock says. In UTC: the library's `sign` reads any datetime's wall time as UTC."""
    at = (at or datetime.now(UTC)).astimezone(UTC)
    body = json.dumps(
        {
            "type": "payment.confirmed",
            "data": {
                "charge_id": charge["id"],
                "payment_id": f"gw_{charge['id']}",
                "amount_cents": charge["amount_cents"],
                "method": "boleto",
                "occurred_at": at.isoformat(),
            },
        }
    ).encode()
    return "/webhooks/standard", body, standard_headers(body, message_id, datetime.now(UTC))


def pix_delivery(charge: dict[str, Any], path: str) -> tuple[str, bytes, dict[str, str]]:
    cents = charge["amount_cents"]
    item = {
        "endToEndId": f"E00000000{charge['id'].removeprefix('chg_')}"[:32],
        "txid": pix_txid(charge["id"]),
        "valor": f"{cents // 100}.{cents % 100:02d}",
        "horario": datetime.now(UTC).isoformat(),
        "infoPagador": "pagamento da mensalidade",
    }
    return f"{path}?hmac={PIX_SECRET}", json.dumps({"pix": [item]}).encode(), JSON


def asaas_delivery(charge: dict[str, Any], event_id: str) -> tuple[str, bytes, dict[str, str]]:
    body = copy.deepcopy(fixture("asaas/PAYMENT_RECEIVED_PIX.json"))
    body["id"] = event_id
    body["payment"].update(
        id=charge["gateway_payment_id"], externalReference=charge["id"], value=charge["amount_cents"] / 100
    )
    return "/webhooks/asaas", json.dumps(body).encode(), {**JSON, "asaas-access-token": ASAAS_TOKEN}


def post(stack: Stack, delivery: tuple[str, bytes, dict[str, str]]) -> httpx.Response:
    path, body, headers = delivery
    return stack.http.post(f"{stack.base}{path}", content=body, headers=headers)


def events_settled(stack: Stack) -> bool:
    return all(event["status"] in SETTLED for event in stack.books.events())


def given_up(log: str) -> int:
    """How many webhook events serve's enqueuer gave up queueing, by its log."""
    return sum(int(count) for count in re.findall(r"queueing (\d+) webhook events failed", log))


def test_redis_stopped_while_webhooks_arrive_every_delivery_is_stored_and_each_processed_once_when_it_is_back(
    stack: Stack,
) -> None:
    first = stack.open_invoices(6)
    assert stack.tick(day_one(first))["invoices_issued"] == 6
    charges = stack.charges()
    assert len(charges) == 6

    stack.redis.stop()
    answers = []
    for index, charge in enumerate(charges):
        delivery = standard_delivery(charge, f"msg_outage_{index}")
        answers += [post(stack, delivery).json()["status"], post(stack, delivery).json()["status"]]
    assert answers == ["accepted", "duplicate"] * 6
    assert sorted(event["status"] for event in stack.books.events()) == ["received"] * 6

    # serve's enqueuer retries its connection for a while, then leaves the events to tick: wait for that
    # the deliveries may be queued in several rounds: wait until serve gave up on all six
    wait_for(lambda: given_up(stack.processes.log("serve")) == 6, 60, "serve gave up queueing the six")
    stack.redis.start()
    # tick re-queues what waited more than 5 minutes: the pass is run as if 6 minutes had gone by
    later = datetime.now(UTC) + timedelta(minutes=6)
    assert stack.tick(later)["webhooks_requeued"] == 6
    wait_for(lambda: stack.books.paid_invoices() == 6, 90, "the 6 invoices paid")
    wait_for(lambda: events_settled(stack), 30, "every event processed")
    assert [event["attempts"] for event in stack.books.events()] == [1] * 6
    stack.assert_books()
    assert stack.tick(later + timedelta(minutes=1))["webhooks_requeued"] == 0


def test_a_storm_of_a_thousand_shuffled_duplicated_deliveries_of_a_hundred_payments_settles_each_once(
    stack: Stack,
) -> None:
    first = stack.open_invoices(100)
    assert stack.tick(day_one(first))["invoices_issued"] == 100
    # the workers open each boleto at the simulator
    wait_for(lambda: all(charge["gateway_payment_id"] for charge in stack.charges()), 120, "boletos issued")
    charges = stack.charges()
    assert len(charges) == 100

    deliveries = []
    for index, charge in enumerate(charges):
        if index % 3 == 0:  # paid at the simulator, which posts its own webhook; then ours, again and again
            paid = stack.http.post(f"{stack.sim}/sim/payments/{charge['gateway_payment_id']}/pay", json={})
            assert paid.status_code == 200, paid.text
            deliveries += [asaas_delivery(charge, f"evt_storm_{index}_{copy_ % 3}") for copy_ in range(9)]
        elif index % 3 == 1:
            deliveries += [pix_delivery(charge, ("/webhooks/pix", "/webhooks/pix/pix")[n % 2]) for n in range(10)]
        else:
            deliveries += [standard_delivery(charge, f"msg_storm_{index}_{n % 4}") for n in range(10)]
    assert len(deliveries) >= 960

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(lambda delivery: post(stack, delivery).status_code, shuffled(deliveries, 12)))
    assert set(statuses) == {200}

    wait_for(lambda: stack.books.paid_invoices() == 100, 180, "the 100 invoices paid")
    wait_for(lambda: events_settled(stack), 60, "every event processed")
    payments = stack.books.all(Payment)
    assert len(payments) == 100
    stack.assert_books()
    confirmations = [message["X-Regua-Invoice"] for message in stack.smtp.of_kind("payment_confirmed")]
    assert len(confirmations) == len(set(confirmations))


def worker_children(master: int) -> list[int]:
    """The worker processes `regua worker --processes 2` forked, read from /proc."""
    children = []
    for task in Path(f"/proc/{master}/task").iterdir():
        children += [int(pid) for pid in (task / "children").read_text().split()]
    return children


def kill_the_workers(stack: Stack) -> tuple[redis.Redis, list[bytes]]:
    """SIGKILL both worker processes of `regua worker --processes 2`, as the OOM killer would; the broker,
    and the acknowledgement sets that still hold the messages they had taken."""
    [(_, worker)] = [(name, process) for name, process in stack.processes.running if name == "worker"]
    children = worker_children(worker.pid)
    assert len(children) == 2
    for pid in children:
        os.kill(pid, signal.SIGKILL)
    assert worker.wait(timeout=30) != 0  # Dramatiq stops the whole worker when one process dies
    broker = redis.Redis.from_url(stack.redis.url)
    in_flight = [key for key in broker.keys("dramatiq:__acks__.*") if broker.scard(key)]
    assert in_flight, "the killed workers held no message: the kill came too late to test anything"
    return broker, in_flight


def restart_after_kill(stack: Stack, broker: redis.Redis, in_flight: list[bytes]) -> None:
    stack.start_worker("worker-restarted")  # what a supervisor does
    # The dead workers' messages come back once their heartbeat is 15 s old (workers/broker.py)
    wait_for(lambda: not any(broker.scard(key) for key in in_flight), 90, "the killed workers' messages re-queued")


def test_workers_sigkilled_in_the_middle_of_a_card_charge_charge_the_card_once_and_settle_it_once(
    stack: Stack,
) -> None:
    first = stack.open_invoices(3, method="card_auto_debit", token="tok_timeout")
    stack.tick(day_one(first))
    # the simulator charges the card and holds its answer for 25 s: the jobs are in the middle of the charge
    wait_for(lambda: len(stack.sim_state()["payments"]) == 3, 60, "the three cards charged at the simulator")
    broker, in_flight = kill_the_workers(stack)
    restart_after_kill(stack, broker, in_flight)
    wait_for(lambda: stack.books.paid_invoices() == 3, 90, "the three invoices paid")
    wait_for(lambda: events_settled(stack), 60, "every event processed")
    broker.close()
    assert len(stack.sim_state()["payments"]) == 3
    stack.assert_books()
    assert len(stack.books.all(Payment)) == 3


def test_workers_sigkilled_in_the_middle_of_settling_a_burst_settle_each_payment_once(stack: Stack) -> None:
    first = stack.open_invoices(60)
    assert stack.tick(day_one(first))["invoices_issued"] == 60
    charges = stack.charges()
    deliveries = []  # each payment told twice, by one provider or the other
    for index, charge in enumerate(charges):
        delivery = pix_delivery(charge, "/webhooks/pix") if index % 2 else standard_delivery(charge, f"kill_{index}")
        deliveries += [delivery, delivery]
    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(lambda delivery: post(stack, delivery).status_code, shuffled(deliveries, 7)))
    assert set(statuses) == {200}
    wait_for(lambda: stack.books.paid_invoices() >= 3, 60, "the settling under way")
    broker, in_flight = kill_the_workers(stack)
    assert stack.books.paid_invoices() < 60, "every payment settled before the kill: nothing was tested"

    restart_after_kill(stack, broker, in_flight)
    wait_for(lambda: stack.books.paid_invoices() == 60, 90, "the 60 invoices paid")
    wait_for(lambda: events_settled(stack), 60, "every event processed")
    broker.close()
    assert len(stack.books.all(Payment)) == 60
    stack.assert_books()
    confirmations = [message["X-Regua-Invoice"] for message in stack.smtp.of_kind("payment_confirmed")]
    assert len(confirmations) == len(set(confirmations))


def test_the_gateway_timing_out_during_card_charges_never_charges_twice(stack: Stack) -> None:
    first = stack.open_invoices(3, method="card_auto_debit", token="tok_timeout")
    started = monotonic()
    stack.tick(day_one(first))
    # The simulator charges each card and answers 25 s later, after the client's 20 s read timeout: the
    # job does not know whether the card was charged, looks the charge up by our reference, and finds it.
    wait_for(lambda: stack.books.paid_invoices() == 3, 120, "the three invoices paid")
    assert monotonic() - started > 20, "paid before the client's read timeout: no timeout was injected"
    wait_for(lambda: events_settled(stack), 60, "every event processed")
    assert len(stack.sim_state()["payments"]) == 3
    stack.assert_books()
    assert len(stack.books.all(Payment)) == 3
