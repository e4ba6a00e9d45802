"""`regua serve`, `regua worker`, `regua gateway-sim` and `regua tick` as processes: a day-1 auto-debit is paid."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import datetime
from zoneinfo import ZoneInfo

import httpx
import pytest

from tests.e2e.conftest import Processes, free_port

pytestmark = pytest.mark.e2e

API = {"Authorization": "Bearer e2e-token"}


def wait_for(check: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError("the condition never held")


def test_a_day_one_tick_charges_the_saved_card_through_the_gateway_and_the_invoice_is_paid(
    processes: Processes,
) -> None:
    port, sim_port = free_port(), free_port()
    base, sim = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{sim_port}"
    processes.env.update({"REGUA_ASAAS_API_URL": sim, "REGUA_ASAAS_API_KEY": "e2e-asaas-key"})
    processes.start("gateway-sim", "gateway-sim", "--port", str(sim_port), "--webhook-url", f"{base}/webhooks/asaas")
    processes.start("serve", "serve", "--port", str(port))
    processes.start("worker", "worker", "--processes", "1", "--threads", "2")
    processes.wait_http(f"{sim}/sim/state")
    processes.wait_http(f"{base}/readyz")

    # Billing time is moved by the tick's --now to 00:05 of day 1 of this real month (serve and the
    # worker keep the real clock, which only dates the payment).
    first = datetime.now(ZoneInfo("America/Sao_Paulo")).date().replace(day=1)
    account = {
        "name": "Padaria Central Ltda",
        "document": "11.222.333/0001-81",
        "contacts": [{"email": "ana@padaria.example", "name": "Ana", "manage_payments": True}],
        "gateway_customer_id": "cus_000005113026",
    }
    assert httpx.put(f"{base}/api/accounts/padaria", json=account, headers=API).status_code == 201
    subscription = {
        "plan": "pro",
        "monthly_price_cents": 19990,
        "frequency": "monthly",
        "payment_method": "card_auto_debit",
        "card_token": "tok_ok",
        "remote_ip": "203.0.113.10",
        "starts_on": first.isoformat(),
    }
    response = httpx.put(f"{base}/api/accounts/padaria/subscriptions/platform", json=subscription, headers=API)
    assert response.status_code == 201, response.text

    tick = json.loads(processes.run("tick", "--now", f"{first.isoformat()}T00:05:00-03:00", "--json"))
    assert (tick["invoices_issued"], tick["charges_started"]) == (1, 1)

    def invoices() -> list[dict[str, object]]:
        return list(httpx.get(f"{base}/api/accounts/padaria/invoices", headers=API).json()["invoices"])

    wait_for(lambda: invoices()[0]["status"] == "paid")
    [invoice] = invoices()
    assert (invoice["total_cents"], invoice["discount_cents"]) == (18990, 1000)
    state = httpx.get(f"{sim}/sim/state").json()
    [payment] = state["payments"]
    assert (payment["value"], payment["billingType"], payment["status"]) == (189.9, "CREDIT_CARD", "CONFIRMED")
    assert payment["externalReference"] == invoice["charge_id"]
    wait_for(lambda: all(d["status"] == "delivered" for d in httpx.get(f"{sim}/sim/state").json()["webhooks"]))
    payments = httpx.get(f"{base}/api/accounts/padaria/payments", headers=API).json()["payments"]
    assert [(p["amount_cents"], p["method"], p["status"]) for p in payments] == [(18990, "card", "confirmed")]

    again = json.loads(processes.run("tick", "--now", f"{first.isoformat()}T00:10:00-03:00", "--json"))
    assert again["charges_started"] == 0
