"""`regua dev` as a new user runs it, with `regua clock` and `regua trigger` beside it: a boleto month.

Nothing configured but the ports and the database file: the gateway is the simulator inside
`regua dev`, mails go to its sink, and every process reads the shared clock in the database.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Processes, free_port

pytestmark = pytest.mark.e2e


def wait_for(check: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError("the condition never held")


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[tuple[Processes, str]]:
    port, smtp_port = free_port(), free_port()
    base = f"http://127.0.0.1:{port}"
    env = {name: value for name, value in os.environ.items() if not name.startswith("REGUA_")}
    env.update(
        {
            "REGUA_DATABASE_URL": f"sqlite:///{tmp_path / 'regua.db'}",
            "REGUA_PUBLIC_URL": base,
            "REGUA_SMTP_URL": f"smtp://127.0.0.1:{smtp_port}",
        }
    )
    running = Processes(env=env, logs=tmp_path, cwd=tmp_path)
    running.start("dev", "dev", "--port", str(port))
    running.wait_http(f"{base}/readyz", timeout=60)
    yield running, base
    running.stop()
    print(running.log("dev"))  # shown by pytest when the test failed


def test_a_boleto_month_in_the_sandbox_issues_blocks_and_unblocks_with_its_mails(
    sandbox: tuple[Processes, str],
) -> None:
    processes, base = sandbox
    with httpx.Client(base_url=f"{base}/gateway-sim", headers={"access_token": "dev-asaas-key"}) as gateway:
        a_month_in_the_sandbox(processes, base, gateway)


def a_month_in_the_sandbox(processes: Processes, base: str, gateway: httpx.Client) -> None:
    banner = processes.log("dev")
    assert f"{base}/ops/mail" in banner
    assert "curl -X PUT" in banner

    # The account and its boleto subscription, as the README shows them: regua creates the customer at
    # the (simulated) gateway itself when it first charges.
    account = {
        "name": "Padaria Central Ltda",
        "document": "11.222.333/0001-81",
        "contacts": [{"email": "ana@padaria.example", "name": "Ana", "manage_payments": True}],
    }
    assert httpx.put(f"{base}/api/accounts/acme", json=account).status_code == 201
    subscription = {
        "plan": "pro",
        "monthly_price_cents": 19990,
        "frequency": "monthly",
        "payment_method": "boleto",
        "starts_on": "2026-12-01",
    }
    answer = httpx.put(f"{base}/api/accounts/acme/subscriptions/platform", json=subscription)
    assert answer.status_code == 201, answer.text

    def mails() -> list[dict[str, Any]]:
        return list(httpx.get(f"{base}/ops/mail.json").json())

    def access() -> dict[str, Any]:
        return dict(httpx.get(f"{base}/api/accounts/acme/access").json()["products"]["platform"])

    processes.run("clock", "set", "2026-12-01T00:05")
    assert "2026-12-01T00:05:00-03:00 (set)" in processes.run("clock", "show")
    wait_for(lambda: any(mail["kind"] == "invoice_issued" for mail in mails()))
    [issued] = [mail for mail in mails() if mail["kind"] == "invoice_issued"]
    assert (issued["to"], issued["account"]) == (["ana@padaria.example"], "acme")
    [invoice] = httpx.get(f"{base}/api/accounts/acme/invoices").json()["invoices"]
    assert issued["invoice"] == invoice["id"]
    [customer] = gateway.get("/v3/customers", params={"externalReference": "acme"}).json()["data"]
    [payment] = gateway.get("/v3/payments", params={"customer": customer["id"]}).json()["data"]
    assert payment["billingType"] == "BOLETO"
    assert payment["dateCreated"] == "2026-12-01"
    line = gateway.get(f"/v3/payments/{payment['id']}/identificationField").json()["identificationField"]
    page = httpx.get(f"{base}/ops/mail").text
    assert "X-Regua-Kind" in page
    assert line in re.sub(r"[.\s]", "", page)

    processes.run("clock", "advance", "6d")
    wait_for(lambda: access()["state"] == "blocked")
    assert "account_blocked" in [mail["kind"] for mail in mails()]

    sent = processes.run("trigger", "payment", "--account", "acme")
    assert f"/gateway-sim/sim/payments/{payment['id']}/pay" in sent
    assert "<- 200" in sent
    wait_for(lambda: access()["state"] == "active")
    wait_for(lambda: "account_unblocked" in [mail["kind"] for mail in mails()])
    [paid] = httpx.get(f"{base}/api/accounts/acme/invoices").json()["invoices"]
    assert paid["status"] == "paid"
    assert paid["paid_at"].startswith("2026-12-07")
    processes.run("check")  # the books' invariants hold: exit 0


def test_every_trigger_event_reaches_the_books_through_the_webhooks_a_gateway_posts(
    sandbox: tuple[Processes, str],
) -> None:
    processes, base = sandbox
    account = {
        "name": "Oficina Norte",
        "document": "11.222.333/0001-81",
        "contacts": [{"email": "caio@oficina.example", "name": "Caio", "manage_payments": True}],
    }
    assert httpx.put(f"{base}/api/accounts/norte", json=account).status_code == 201
    subscription = {
        "plan": "pro",
        "monthly_price_cents": 19990,
        "frequency": "monthly",
        "payment_method": "pix",
        "starts_on": "2026-12-01",
    }
    assert httpx.put(f"{base}/api/accounts/norte/subscriptions/platform", json=subscription).status_code == 201
    processes.run("clock", "set", "2026-12-01T00:05")

    def invoice_status() -> str:
        return str(httpx.get(f"{base}/api/accounts/norte/invoices").json()["invoices"][0]["status"])

    def history() -> dict[str, Any]:
        return dict(httpx.get(f"{base}/api/accounts/norte/payments").json())

    def trigger(event: str) -> str:
        return processes.run("trigger", event, "--account", "norte")

    def mailed(kind: str) -> bool:
        return kind in [mail["kind"] for mail in httpx.get(f"{base}/ops/mail.json").json()]

    assert "-> Standard Webhook" in trigger("pending")
    wait_for(lambda: invoice_status() == "verifying")
    wait_for(lambda: mailed("verification_pending"))  # told while true: a decline would make it obsolete
    assert '"failure_code":"insufficient_funds"' in trigger("decline")
    wait_for(lambda: invoice_status() == "open")
    wait_for(lambda: mailed("payment_failed"))  # told while true: paid a moment later, it would be obsolete

    paid = trigger("payment")
    assert "no open charge: checkout" in paid, "the declined charge is over: a new one is opened"
    wait_for(lambda: invoice_status() == "paid")

    assert "/pay-again" in trigger("duplicate")
    wait_for(lambda: [r["reason"] for r in history()["refunds"]] == ["duplicate"])
    assert [p["status"] for p in history()["payments"]].count("duplicate") == 1

    assert '{"value":99.95,' in trigger("partial-refund"), "money goes to Asaas as an exact number"
    wait_for(lambda: sorted(r["amount_cents"] for r in history()["refunds"]) == [9995, 19990])

    assert "/chargeback" in trigger("chargeback")
    wait_for(lambda: "chargeback" in [p["status"] for p in history()["payments"]])
    kinds = [mail["kind"] for mail in httpx.get(f"{base}/ops/mail.json").json()]
    assert {"invoice_issued", "verification_pending", "payment_failed", "payment_confirmed"} <= set(kinds)
    processes.run("check")  # the books' invariants hold: exit 0


def test_a_standalone_gateway_simulator_dates_its_payments_by_the_shared_clock(tmp_path: Path) -> None:
    port = free_port()
    env = {name: value for name, value in os.environ.items() if not name.startswith("REGUA_")}
    env["REGUA_DATABASE_URL"] = f"sqlite:///{tmp_path / 'regua.db'}"
    processes = Processes(env=env, logs=tmp_path, cwd=tmp_path)
    try:
        processes.run("migrate")
        processes.run("clock", "set", "2026-12-01T10:00")
        processes.start("sim", "gateway-sim", "--port", str(port), "--webhook-url", "")
        processes.wait_http(f"http://127.0.0.1:{port}/sim/state")
        body = {"customer": "cus_1", "billingType": "PIX", "value": 10, "dueDate": "2026-12-01"}
        created = httpx.post(f"http://127.0.0.1:{port}/v3/payments", json=body, headers={"access_token": "k"})
    finally:
        processes.stop()

    assert created.json()["dateCreated"] == "2026-12-01"
