"""From a payment's webhook to its account's block lifted, through `regua serve` and two worker processes.

Blocked boleto customers (this month's invoice unpaid past its tolerance) pay by Asaas (marked paid
at the gateway simulator, the delivery posted by this script) and by PIX, at a fixed rate. The time
from each delivery to its block's `lifted_at`, read back from the database, is reported beside the
baseline of the same run: the time the same deliveries took to be answered 200. Then the resident
memory of each process.

    python -m bench.e2e [--accounts 600] [--rate 10]

Needs PostgreSQL and Redis as in the README; uses Redis database 13 (flushed).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import redis
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from bench.webhooks import POSTGRES, REDIS, free_port, wait_up
from billing.models import pix_txid
from regua.migrate import upgrade

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "bench-token"
PIX_SECRET = "bench-pix"
API = {"Authorization": "Bearer bench-api"}
ASAAS_BODY = json.loads((ROOT / "tests" / "fixtures" / "asaas" / "PAYMENT_RECEIVED_PIX.json").read_text())


def regua(name: str, args: list[str], env: dict[str, str], logs: Path) -> subprocess.Popen[bytes]:
    log = (logs / f"{name}.log").open("wb")
    return subprocess.Popen([sys.executable, "-m", "regua.cli", *args], env=env, stdout=log, stderr=subprocess.STDOUT)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(child) for child in (task / "children").read_text().split()]
    return found


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def open_blocked_accounts(client: httpx.Client, base: str, count: int) -> None:
    first = time.strftime("%Y-%m-01")
    for index in range(count):
        account = {
            "name": f"Cliente {index}",
            "document": "11.222.333/0001-81",
            "contacts": [{"email": f"c{index}@cliente.example", "name": "Ana", "manage_payments": True}],
            "gateway_customer_id": f"cus_{index:012d}",
        }
        client.put(f"{base}/api/accounts/acc{index}", json=account, headers=API).raise_for_status()
        subscription = {"plan": "pro", "monthly_price_cents": 10_000 + index, "frequency": "monthly"}
        subscription |= {"payment_method": "boleto", "starts_on": first}
        client.put(f"{base}/api/accounts/acc{index}/subscriptions/platform", json=subscription, headers=API)


def charges(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as connection:
        return [
            dict(row)
            for row in connection.execute(
                text("SELECT id, account_id, amount_cents, gateway_payment_id FROM charges WHERE status = 'pending'")
            ).mappings()
        ]


def delivery(charge: dict[str, Any], index: int) -> tuple[str, bytes, dict[str, str]]:
    cents = charge["amount_cents"]
    if index % 2 == 0:
        body = copy.deepcopy(ASAAS_BODY)
        body["id"] = f"evt_bench_{index}"
        body["payment"].update(id=charge["gateway_payment_id"], externalReference=charge["id"], value=cents / 100)
        return "/webhooks/asaas", json.dumps(body).encode(), {"asaas-access-token": TOKEN}
    item = {
        "endToEndId": f"E{index:031d}",
        "txid": pix_txid(charge["id"]),
        "valor": f"{cents // 100}.{cents % 100:02d}",
        "horario": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    return f"/webhooks/pix?hmac={PIX_SECRET}", json.dumps({"pix": [item]}).encode(), {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=600)
    parser.add_argument("--rate", type=float, default=10.0, help="deliveries per second")
    args = parser.parse_args()

    database = f"regua_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(make_url(POSTGRES).set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{database}"'))
    database_url = make_url(POSTGRES).set(database=database).render_as_string(hide_password=False)
    upgrade(database_url)
    engine = create_engine(make_url(database_url).set(drivername="postgresql+psycopg"))
    redis.Redis.from_url(REDIS).flushdb()
    port, sim_port = free_port(), free_port()
    base, sim = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{sim_port}"
    env = {key: value for key, value in os.environ.items() if not key.startswith("REGUA_")}
    env |= {
        "REGUA_ENV": "test",
        "REGUA_DATABASE_URL": database_url,
        "REGUA_BROKER_URL": REDIS,
        "REGUA_API_TOKEN": "bench-api",
        "REGUA_ASAAS_WEBHOOK_TOKEN": TOKEN,
        "REGUA_PIX_WEBHOOK_SECRET": PIX_SECRET,
        "REGUA_ASAAS_API_URL": sim,
        "REGUA_ASAAS_API_KEY": "bench-key",
        "REGUA_SMTP_URL": f"smtp://127.0.0.1:{free_port()}",  # closed: mail waits on its own queue
    }
    logs = Path(os.environ.get("TMPDIR", "/tmp")) / f"regua-bench-{database}"
    logs.mkdir()
    # the simulator's own webhooks go to a closed port: each payment is delivered once, by this script
    running = {
        "gateway-sim": regua("gateway-sim", ["gateway-sim", "--port", str(sim_port), "--webhook-url", sim], env, logs),
        "serve": regua("serve", ["serve", "--port", str(port)], env, logs),
        "worker": regua("worker", ["worker", "--processes", "2", "--threads", "8"], env, logs),
    }
    client = httpx.Client(timeout=30)
    try:
        wait_up(f"{sim}/sim/state")
        wait_up(f"{base}/healthz")
        open_blocked_accounts(client, base, args.accounts)
        subprocess.run([sys.executable, "-m", "regua.cli", "tick"], env=env, check=True, capture_output=True)
        deadline = time.monotonic() + 600
        while not (found := charges(engine)) or not all(charge["gateway_payment_id"] for charge in found):
            if time.monotonic() > deadline:
                raise SystemExit("the boletos were never issued")
            time.sleep(1)
        with engine.connect() as connection:
            blocked = connection.scalar(text("SELECT count(*) FROM blocks WHERE lifted_at IS NULL"))
        print(f"{len(found)} accounts blocked ({blocked} blocks), paying at {args.rate}/s", flush=True)
        for index, charge in enumerate(found):
            if index % 2 == 0:
                client.post(f"{sim}/sim/payments/{charge['gateway_payment_id']}/pay", json={}).raise_for_status()

        sent: dict[str, tuple[float, float]] = {}

        def post(index: int, charge: dict[str, Any]) -> None:
            path, body, headers = delivery(charge, index)
            started = time.time()
            response = client.post(
                f"{base}{path}", content=body, headers={**headers, "content-type": "application/json"}
            )
            response.raise_for_status()
            sent[charge["account_id"]] = (started, time.time() - started)

        begun = time.monotonic()
        with ThreadPoolExecutor(max_workers=16) as pool:
            for index, charge in enumerate(found):
                time.sleep(max(0.0, begun + index / args.rate - time.monotonic()))
                pool.submit(post, index, charge)
        deadline = time.monotonic() + 120
        lifted: dict[str, float] = {}
        while time.monotonic() < deadline and len(lifted) < len(sent):
            with engine.connect() as connection:
                rows = connection.execute(text("SELECT account_id, lifted_at FROM blocks WHERE lifted_at IS NOT NULL"))
                lifted = {account: at.timestamp() for account, at in rows}
            time.sleep(0.5)
        latency = {account: (lifted[account] - sent[account][0]) * 1000 for account in sent if account in lifted}
        asaas = [latency[c["account_id"]] for i, c in enumerate(found) if i % 2 == 0 and c["account_id"] in latency]
        pix = [latency[c["account_id"]] for i, c in enumerate(found) if i % 2 == 1 and c["account_id"] in latency]
        answered = [elapsed * 1000 for _, elapsed in sent.values()]
        print(f"\n| {len(sent)} deliveries at {args.rate}/s | p50 ms | p99 ms | max ms |")
        print("|---|---:|---:|---:|")
        for name, values in (
            ("answered 200 (baseline)", answered),
            ("delivery to block lifted, all", list(latency.values())),
            ("  Asaas (re-fetched from the simulator)", asaas),
            ("  PIX", pix),
        ):
            if values:
                print(
                    f"| {name} | {statistics.median(values):.1f} | {percentile(values, 0.99):.1f} | {max(values):.1f} |"
                )
        print(f"\nblocks lifted: {len(latency)} of {len(sent)}")
        print("\n| process | RSS MB |\n|---|---:|")
        for name in ("serve", "worker"):
            process = running[name]
            print(f"| {name} | {rss_mb(process.pid):.0f} |")
            for child in children(process.pid):
                print(f"| {name} child {child} | {rss_mb(child):.0f} |")
    finally:
        client.close()
        for process in running.values():
            process.terminate()
        for process in running.values():
            process.wait(timeout=30)
        engine.dispose()
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
        admin.dispose()


if __name__ == "__main__":
    main()
