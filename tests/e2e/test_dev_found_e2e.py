"""`regua dev --port P` on a port of its own, and `regua clock` and `regua trigger` from another shell with no
REGUA_PUBLIC_URL: they find the dev's simulator and mail sink through the addresses it recorded."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from regua.sandbox.dev_record import running_dev, with_running_dev
from regua.settings import Settings
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
def dev(tmp_path: Path) -> Iterator[tuple[Processes, str]]:
    port, smtp_port = free_port(), free_port()
    base = f"http://127.0.0.1:{port}"
    env = {name: value for name, value in os.environ.items() if not name.startswith("REGUA_")}
    env["REGUA_DATABASE_URL"] = f"sqlite:///{tmp_path / 'regua.db'}"  # no REGUA_PUBLIC_URL, no REGUA_SMTP_URL
    running = Processes(env=env, logs=tmp_path, cwd=tmp_path)
    running.start("dev", "dev", "--port", str(port), "--smtp-port", str(smtp_port))
    running.wait_http(f"{base}/readyz", timeout=60)
    yield running, base
    running.stop()
    print(running.log("dev"))  # shown by pytest when the test failed


def test_clock_and_trigger_from_another_shell_reach_the_dev_on_its_own_port(
    dev: tuple[Processes, str], tmp_path: Path
) -> None:
    processes, base = dev
    assert (tmp_path / "regua.db.dev.json").is_file()
    assert "REGUA_PUBLIC_URL is" not in processes.log("dev")  # no note asking to set it
    account = {
        "name": "Padaria Central Ltda",
        "document": "11.222.333/0001-81",
        "contacts": [{"email": "ana@padaria.example", "name": "Ana", "manage_payments": True}],
    }
    assert httpx.put(f"{base}/api/accounts/acme", json=account).status_code == 201
    subscription = {"plan": "pro", "monthly_price_cents": 19990, "frequency": "monthly", "payment_method": "boleto"}
    subscription["starts_on"] = "2026-12-01"
    assert httpx.put(f"{base}/api/accounts/acme/subscriptions/platform", json=subscription).status_code == 201

    def mails() -> list[dict[str, Any]]:
        return list(httpx.get(f"{base}/ops/mail.json").json())

    processes.run("clock", "set", "2026-12-01T00:05")

    # The pass ran in the clock command's process: its boleto is at the dev's simulator, its mail in the dev's sink.
    wait_for(lambda: any(mail["kind"] == "invoice_issued" for mail in mails()))
    state = httpx.get(f"{base}/gateway-sim/sim/state").json()
    [payment] = state["payments"]
    assert payment["billingType"] == "BOLETO"

    sent = processes.run("trigger", "payment", "--account", "acme")
    assert f"{base}/gateway-sim/sim/payments/{payment['id']}/pay" in sent
    wait_for(lambda: httpx.get(f"{base}/api/accounts/acme/invoices").json()["invoices"][0]["status"] == "paid")

    processes.stop()  # SIGTERM: the record may stay behind, and points nowhere once its process is gone
    settings = Settings.from_env({"REGUA_DATABASE_URL": f"sqlite:///{tmp_path / 'regua.db'}"}, env_file=None)
    assert running_dev(settings) is None
    assert with_running_dev(settings) == settings
