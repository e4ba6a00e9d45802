"""The logs of a real run: JSON lines naming their ids, and not one configured secret or document number."""

from __future__ import annotations

import base64
import json
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from billing.settlement import open_charge
from regua.runtime import build_runtime
from regua.settings import Settings
from tests.conftest import ASAAS_TOKEN, PIX_SECRET, STANDARD_SECRET
from tests.e2e.conftest import Processes, free_port
from tests.integration.webhook_helpers import standard_headers

pytestmark = pytest.mark.e2e

API_TOKEN = "e2e-token"
OPS_TOKEN = "e2e-ops-token-c0ffee"
SECRET_KEY = "e2e-secret-key-0badf00d"
ASAAS_API_KEY = "$aact_e2e_key_feedface"
DOCUMENTS = ["11.222.333/0001-81", "11222333000181", "529.982.247-25", "52998224725"]


def test_a_run_logs_json_lines_with_ids_and_never_a_secret_or_a_document(processes: Processes) -> None:
    processes.env.update(
        REGUA_LOG_FORMAT="json",
        REGUA_OPS_TOKEN=OPS_TOKEN,
        REGUA_SECRET_KEY=SECRET_KEY,
        REGUA_ASAAS_API_KEY=ASAAS_API_KEY,
        REGUA_ASAAS_API_URL="http://127.0.0.1:9",  # closed: nothing leaves the machine
    )
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    processes.start("serve", "serve", "--port", str(port))
    processes.start("worker", "worker", "--processes", "1", "--threads", "2")
    processes.wait_http(f"{base}/readyz")
    api = {"Authorization": f"Bearer {API_TOKEN}"}
    ops = {"Authorization": "Basic " + base64.b64encode(f"ops:{OPS_TOKEN}".encode()).decode()}

    today = datetime.now(UTC).date()
    for account, document in (("padaria", DOCUMENTS[0]), ("ana-silva", DOCUMENTS[2])):
        body = {
            "name": "Cliente",
            "document": document,
            "contacts": [{"email": f"{account}@example.com", "name": "X", "manage_payments": True}],
        }
        assert httpx.put(f"{base}/api/accounts/{account}", json=body, headers=api).status_code == 201
        subscription = {
            "plan": "pro",
            "monthly_price_cents": 19990,
            "frequency": "monthly",
            "payment_method": "pix",
            "starts_on": (today - timedelta(days=10)).replace(day=1).isoformat(),
        }
        assert httpx.put(f"{base}/api/accounts/{account}/subscriptions/platform", json=subscription, headers=api)
    processes.run("tick")

    runtime = build_runtime(Settings(env="test", database_url=processes.env["REGUA_DATABASE_URL"]))
    invoices = httpx.get(f"{base}/api/accounts/padaria/invoices", headers=api).json()["invoices"]
    charge_id = runtime.transaction(
        lambda session: open_charge(session, [invoices[0]["id"]], "pix", runtime.clock.now()).id
    )
    runtime.close()
    for n, charge in enumerate((charge_id, "chg_unknown")):
        body = json.dumps(
            {
                "type": "payment.confirmed",
                "data": {
                    "charge_id": charge,
                    "payment_id": f"gw_logs_{n}",
                    "amount_cents": invoices[0]["total_cents"],
                    "method": "pix",
                    "occurred_at": datetime.now(UTC).isoformat(),
                },
            }
        ).encode()
        headers = standard_headers(body, f"msg_logs_{n}", datetime.now(UTC))
        assert httpx.post(f"{base}/webhooks/standard", content=body, headers=headers).status_code == 200
    # Wrong credentials and a wrong webhook token are logged as refusals, never echoed.
    httpx.post(f"{base}/webhooks/asaas", content=b"{}", headers={"asaas-access-token": OPS_TOKEN})
    httpx.get(f"{base}/api/accounts/padaria/access", headers={"Authorization": f"Bearer {SECRET_KEY}"})
    assert httpx.get(f"{base}/ops", headers=ops).status_code == 200
    assert httpx.get(f"{base}/metrics", headers=ops).status_code == 200

    deadline = time.monotonic() + 30
    while "webhook event" not in processes.log("worker") and time.monotonic() < deadline:
        time.sleep(0.2)
    processes.stop()

    logs = "\n".join((processes.logs / f"{name}.log").read_text(errors="replace") for name in ("serve", "worker"))
    configured = [
        API_TOKEN,
        OPS_TOKEN,
        SECRET_KEY,
        ASAAS_API_KEY,
        ASAAS_TOKEN,
        PIX_SECRET,
        STANDARD_SECRET,
        STANDARD_SECRET.removeprefix("whsec_"),
    ]
    for value in [*configured, *DOCUMENTS]:
        assert value not in logs, f"{value!r} appears in the logs"
    records = [json.loads(line) for line in logs.splitlines() if line.startswith("{")]
    regua = [record for record in records if record["logger"].startswith("regua")]
    assert regua, logs[-2000:]
    assert any(record.get("event_id", "").startswith("evt_") for record in regua), logs[-2000:]
