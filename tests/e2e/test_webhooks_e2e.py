"""`regua serve` and `regua worker` as processes: a signed delivery over HTTP pays and unblocks."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from billing.settlement import open_charge
from regua.runtime import build_runtime
from regua.settings import Settings
from tests.e2e.conftest import Processes, free_port
from tests.integration.webhook_helpers import standard_headers

pytestmark = pytest.mark.e2e

API = {"Authorization": "Bearer e2e-token"}


def wait_for(check: object, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError("the condition never held")


def test_a_signed_delivery_over_http_pays_the_invoice_and_lifts_the_block(processes: Processes) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    processes.start("serve", "serve", "--port", str(port))
    processes.start("worker", "worker", "--processes", "1", "--threads", "2")
    processes.wait_http(f"{base}/readyz")

    # A boleto customer whose first invoice, by the real clock, is past its day 6.
    today = datetime.now(UTC).date()
    starts_on = (today if today.day >= 8 else today - timedelta(days=10)).replace(day=1).isoformat()
    account = {
        "name": "Padaria Central Ltda",
        "document": "11.222.333/0001-81",
        "contacts": [{"email": "ana@padaria.example", "name": "Ana", "manage_payments": True}],
    }
    assert httpx.put(f"{base}/api/accounts/padaria", json=account, headers=API).status_code == 201
    subscription = {
        "plan": "pro",
        "monthly_price_cents": 19990,
        "frequency": "monthly",
        "payment_method": "boleto",
        "starts_on": starts_on,
    }
    response = httpx.put(f"{base}/api/accounts/padaria/subscriptions/platform", json=subscription, headers=API)
    assert response.status_code == 201, response.text
    tick = json.loads(processes.run("tick", "--json"))
    assert tick["invoices_issued"] >= 1
    assert tick["blocks_applied"] == 1
    assert (
        httpx.get(f"{base}/api/accounts/padaria/access", headers=API).json()["products"]["platform"]["state"]
        == "blocked"
    )

    invoices = httpx.get(f"{base}/api/accounts/padaria/invoices", headers=API).json()["invoices"]
    overdue = [invoice["id"] for invoice in invoices]
    total = sum(invoice["total_cents"] for invoice in invoices)
    runtime = build_runtime(Settings(env="test", database_url=processes.env["REGUA_DATABASE_URL"]))
    charge_id = runtime.transaction(lambda session: open_charge(session, overdue, "pix", runtime.clock.now()).id)
    runtime.close()

    body = json.dumps(
        {
            "type": "payment.confirmed",
            "data": {
                "charge_id": charge_id,
                "payment_id": "gw_e2e_1",
                "amount_cents": total,
                "method": "pix",
                "occurred_at": datetime.now(UTC).isoformat(),
            },
        }
    ).encode()
    headers = standard_headers(body, "msg_e2e_1", datetime.now(UTC))
    first = httpx.post(f"{base}/webhooks/standard", content=body, headers=headers)
    again = httpx.post(f"{base}/webhooks/standard", content=body, headers=headers)
    assert first.status_code == 200
    assert first.json()["status"] == "accepted"
    [event_id] = first.json()["event_ids"]
    assert event_id.startswith("evt_")
    assert (again.status_code, again.json()) == (200, {"status": "duplicate"})

    def unblocked() -> bool:
        access = httpx.get(f"{base}/api/accounts/padaria/access", headers=API).json()["products"]["platform"]
        return bool(access["state"] != "blocked")

    wait_for(unblocked)
    paid = httpx.get(f"{base}/api/accounts/padaria/invoices", headers=API).json()["invoices"]
    assert {invoice["status"] for invoice in paid} == {"paid"}
    payments = httpx.get(f"{base}/api/accounts/padaria/payments", headers=API).json()["payments"]
    assert [(p["amount_cents"], p["status"]) for p in payments] == [(total, "confirmed")]
