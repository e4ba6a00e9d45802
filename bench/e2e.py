"""From a payment's webhook to its account's block lifted, through `regua serve` and two worker processes.

Blocked boleto customers (this month's invoice unpaid past its tolerance) pay by Asaas (marked paid
at the gateway simulator, the delivery posted by this script) and by PIX. First the capacity: a
batch of payments posted as fast as 16 clients can, timed until the last block is lifted. Then the
rest are posted at a steady rate, half that capacity unless `--rate` says otherwise, for `--seconds`.
The time from each delivery to its block's `lifted_at`, read back from the database, is reported
beside the baseline of the same run: the time the same deliveries took to be answered 200. The
resident memory of each process is sampled every `--sample` seconds; the series shows growth.

    python -m bench.e2e [--accounts 4000] [--seconds 60] [--rate R]
    make soak    # ten minutes at a steady rate, the memory series the point

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
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import redis
from sqlalchemy import Engine, create_engine, insert, text
from sqlalchemy.engine import make_url

from bench.webhooks import POSTGRES, REDIS, free_port, wait_up
from billing.models import Account, Subscription, pix_txid
from regua.migrate import upgrade

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "bench-token"
PIX_SECRET = "bench-pix"
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


def blocked_month(today: date) -> date:
    """The first day of the latest month already past its tolerance on `today`: this month from its 7th on, the
    month before on days 1 to 6 (the benchmark then blocks accounts whatever the day it runs)."""
    first = today.replace(day=1)
    return first if today.day >= 7 else (first - timedelta(days=1)).replace(day=1)


def blocking_tick_instant(first: date) -> datetime:
    """00:10 of that month's day 7 in São Paulo: the tick there issues the month and blocks it."""
    return datetime(first.year, first.month, 7, 0, 10, tzinfo=ZoneInfo("America/Sao_Paulo"))


def boleto_accounts(engine: Engine, count: int, first: date) -> None:
    """`count` accounts paying by boleto since `first`: the tick at that month's day 7 issues and blocks them
    (bulk-inserted: thousands through the API take minutes)."""
    created = datetime.now(UTC)
    with engine.begin() as connection:
        for offset in range(0, count, 5_000):
            numbers = range(offset, min(offset + 5_000, count))
            accounts: list[dict[str, Any]] = [
                {"id": f"acc{n}", "name": f"Cliente {n}", "document": "11222333000181"} for n in numbers
            ]
            for account in accounts:
                account |= {"gateway_customer_id": f"cus_{account['id']}", "created_at": created, "updated_at": created}
            connection.execute(insert(Account), accounts)
            subscription: dict[str, Any] = {"product": "platform", "plan": "pro", "modules": [], "frequency": "monthly"}
            subscription |= {"payment_method": "boleto", "installments": 1, "starts_on": first}
            subscription |= {"created_at": created, "updated_at": created}
            rows = [
                subscription | {"id": f"sub_{n:020d}", "account_id": f"acc{n}", "monthly_price_cents": 10_000 + n}
                for n in numbers
            ]
            connection.execute(insert(Subscription), rows)
        connection.execute(text("ANALYZE"))


def lifted_blocks(engine: Engine) -> dict[str, float]:
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT account_id, lifted_at FROM blocks WHERE lifted_at IS NOT NULL"))
        return {account: at.timestamp() for account, at in rows}


class Memory:
    """The resident memory of the processes, sampled every `every` seconds on a thread of its own."""

    def __init__(self, running: dict[str, subprocess.Popen[bytes]], every: float) -> None:
        self.series: dict[str, list[float]] = {}
        self._running = running
        self._every = every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> Memory:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.take()

    def take(self) -> None:
        for name in ("serve", "worker"):
            pid = self._running[name].pid
            for label, process in ((name, pid), *((f"{name} child {i}", c) for i, c in enumerate(children(pid), 1))):
                self.series.setdefault(label, []).append(rss_mb(process))

    def _sample(self) -> None:
        self.take()
        while not self._stop.wait(self._every):
            self.take()

    def report(self) -> None:
        print("\n| process | RSS MB at start | middle | end | growth |\n|---|---:|---:|---:|---:|")
        for label, values in self.series.items():
            start, middle, end = values[0], values[len(values) // 2], values[-1]
            print(f"| {label} | {start:.0f} | {middle:.0f} | {end:.0f} | {end - start:+.0f} |")


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


class Payer:
    """Posts each charge's delivery once, from 16 threads, keeping when it was sent and how long the 200 took."""

    def __init__(self, client: httpx.Client, base: str) -> None:
        self.client, self.base = client, base
        self.sent: dict[str, tuple[float, float]] = {}

    def post(self, index: int, charge: dict[str, Any]) -> None:
        path, body, headers = delivery(charge, index)
        started = time.time()
        response = self.client.post(
            f"{self.base}{path}", content=body, headers={**headers, "content-type": "application/json"}
        )
        response.raise_for_status()
        self.sent[charge["account_id"]] = (started, time.time() - started)

    def pay(self, charges: list[tuple[int, dict[str, Any]]], rate: float | None, until: float) -> int:
        """At `rate` per second (None: as fast as the threads go) until the monotonic `until`; how many."""
        begun, done = time.monotonic(), 0
        with ThreadPoolExecutor(max_workers=16) as pool:
            for number, (index, charge) in enumerate(charges):
                if rate is not None:
                    time.sleep(max(0.0, begun + number / rate - time.monotonic()))
                if time.monotonic() > until:
                    break
                pool.submit(self.post, index, charge)
                done += 1
        return done


def wait_lifted(engine: Engine, accounts: set[str], timeout: float) -> dict[str, float]:
    deadline = time.monotonic() + timeout
    while not accounts <= (lifted := lifted_blocks(engine)).keys() and time.monotonic() < deadline:
        time.sleep(0.2)
    return lifted


def report(payer: Payer, found: list[dict[str, Any]], lifted: dict[str, float], rate: float) -> None:
    sent = payer.sent
    latency = {account: (lifted[account] - sent[account][0]) * 1000 for account in sent if account in lifted}
    by_account = {charge["account_id"]: index for index, charge in enumerate(found)}
    asaas = [value for account, value in latency.items() if by_account[account] % 2 == 0]
    pix = [value for account, value in latency.items() if by_account[account] % 2 == 1]
    answered = [elapsed * 1000 for _, elapsed in sent.values()]
    print(f"\n| {len(sent)} deliveries at {rate:.0f}/s | p50 ms | p99 ms | max ms |")
    print("|---|---:|---:|---:|")
    for name, values in (
        ("answered 200 (baseline)", answered),
        ("delivery to block lifted, all", list(latency.values())),
        ("  Asaas (re-fetched from the simulator)", asaas),
        ("  PIX", pix),
    ):
        if values:
            print(f"| {name} | {statistics.median(values):.1f} | {percentile(values, 0.99):.1f} | {max(values):.1f} |")
    print(f"\nblocks lifted: {len(latency)} of {len(sent)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=4000)
    parser.add_argument("--seconds", type=float, default=60.0, help="how long the steady rate runs")
    parser.add_argument("--rate", type=float, help="deliveries per second (default: half the measured capacity)")
    parser.add_argument("--capacity-batch", type=int, default=400, help="payments posted at once to find capacity")
    parser.add_argument("--sample", type=float, default=10.0, help="seconds between memory samples")
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
        "REGUA_GATEWAY_MAX_RPS": "100000",  # the bench measures regua, not the pace kept for a real gateway
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
        first = blocked_month(date.today())
        boleto_accounts(engine, args.accounts, first)
        at = blocking_tick_instant(first).isoformat()
        subprocess.run(
            [sys.executable, "-m", "regua.cli", "tick", "--now", at], env=env, check=True, capture_output=True
        )
        deadline = time.monotonic() + 1200
        while not (found := charges(engine)) or not all(charge["gateway_payment_id"] for charge in found):
            if time.monotonic() > deadline:
                raise SystemExit("the boletos were never issued")
            time.sleep(1)
        with engine.connect() as connection:
            blocked = connection.scalar(text("SELECT count(*) FROM blocks WHERE lifted_at IS NULL"))
        print(f"{len(found)} accounts blocked ({blocked} blocks)", flush=True)
        for index, charge in enumerate(found):
            if index % 2 == 0:
                client.post(f"{sim}/sim/payments/{charge['gateway_payment_id']}/pay", json={}).raise_for_status()
        numbered = list(enumerate(found))
        batch, steady = numbered[: args.capacity_batch], numbered[args.capacity_batch :]

        burst = Payer(client, base)
        started = time.time()
        burst.pay(batch, None, time.monotonic() + 600)
        lifted = wait_lifted(engine, set(burst.sent), 300)
        capacity = len(burst.sent) / (max(lifted[account] for account in burst.sent) - started)
        rate = args.rate or capacity / 2
        print(f"capacity: {len(burst.sent)} payments to blocks lifted at {capacity:.0f}/s; steady rate {rate:.0f}/s")
        if len(steady) < rate * args.seconds:
            print(f"(only {len(steady)} accounts left: {len(steady) / rate:.0f} s at that rate; raise --accounts)")

        payer = Payer(client, base)
        with Memory(running, args.sample) as memory:
            payer.pay(steady, rate, time.monotonic() + args.seconds)
            lifted = wait_lifted(engine, set(payer.sent), 120)
        report(payer, found, lifted, rate)
        memory.report()
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
