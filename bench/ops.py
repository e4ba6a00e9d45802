"""The ops pages with 100,000 webhook events stored: how long each page takes to answer.

A fresh PostgreSQL database gets N webhook events spread over the last 30 days (20% of them in the
last 24 hours; a mix of providers and statuses, 1% unmatched, 0.5% failed), 5,000 accounts with a
subscription, one charge per account, and each event pointing at one of those charges (bulk
inserts, not timed). Then the app runs in this process on a Redis broker and each page is fetched
over HTTP (uvicorn on a free port) R times after one warm-up; the script prints the median and the
slowest answer per page. Target: under 300 ms each.

    python -m bench.ops [--events 100000] [--rounds 20]

Needs PostgreSQL and Redis as in the README.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import threading
import time
import uuid
from datetime import UTC, date, datetime, timedelta

import httpx
import redis
import uvicorn
from sqlalchemy import create_engine, insert, text
from sqlalchemy.engine import Engine, make_url

from billing.journal import WebhookEvent
from billing.models import Account, Charge, Contact, Subscription
from regua.app import create_app
from regua.assembly import build_jobs, build_providers, lazy_context
from regua.migrate import upgrade
from regua.runtime import build_runtime
from regua.settings import Settings
from tests.e2e.conftest import free_port

POSTGRES = os.environ.get("REGUA_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS = os.environ.get("REGUA_BENCH_REDIS_URL", "redis://127.0.0.1:6379/13")
ACCOUNTS = 5_000
CHUNK = 10_000
TOKEN = "bench-ops-token"
STATUSES = ["processed"] * 935 + ["ignored"] * 40 + ["unmatched"] * 10 + ["failed"] * 5 + ["received"] * 10


def populate(engine: Engine, events: int, now: datetime) -> float:
    started = time.perf_counter()
    rng = random.Random(7)
    created = now - timedelta(days=60)
    with engine.begin() as connection:
        connection.execute(
            insert(Account),
            [
                {
                    "id": f"acct-{n:05d}",
                    "name": f"Cliente {n} Ltda",
                    "document": "11222333000181",
                    "created_at": created,
                    "updated_at": created,
                }
                for n in range(ACCOUNTS)
            ],
        )
        connection.execute(
            insert(Contact),
            [{"account_id": f"acct-{n:05d}", "email": f"c{n}@example.com", "name": "", "manage_payments": n % 50 != 0}
             for n in range(ACCOUNTS)],
        )  # fmt: skip
        connection.execute(
            insert(Subscription),
            [
                {
                    "id": f"sub_{n:05d}",
                    "account_id": f"acct-{n:05d}",
                    "product": "platform",
                    "plan": "pro",
                    "modules": [],
                    "monthly_price_cents": 19990,
                    "frequency": "monthly",
                    "payment_method": "pix",
                    "starts_on": date(2026, 10, 1),
                    "created_at": created,
                    "updated_at": created,
                }
                for n in range(ACCOUNTS)
            ],
        )
        connection.execute(
            insert(Charge),
            [
                {
                    "id": f"chg_{n:026x}",
                    "account_id": f"acct-{n:05d}",
                    "product": "platform",
                    "method": "pix",
                    "amount_cents": 19990,
                    "status": "confirmed",
                    "idempotency_key": f"bench-{n}",
                    "created_at": now - timedelta(hours=rng.uniform(0, 720)),
                }
                for n in range(ACCOUNTS)
            ],
        )
        for offset in range(0, events, CHUNK):
            rows = []
            for n in range(offset, min(offset + CHUNK, events)):
                age = rng.uniform(0, 24) if n % 5 == 0 else rng.uniform(24, 720)
                status = rng.choice(STATUSES)
                rows.append(
                    {
                        "id": f"evt_{n:020x}",
                        "provider": ("asaas", "standard", "pix")[n % 3],
                        "dedupe_key": f"bench-{n}",
                        "event_type": "PAYMENT_RECEIVED",
                        "body": json.dumps(
                            {"id": f"evt_{n}", "event": "PAYMENT_RECEIVED", "payment": {"value": 199.9}}
                        ),
                        "status": status,
                        "received_at": now - timedelta(hours=age),
                        "attempts": 1,
                        "outcome": "settled" if status == "processed" else None,
                        "charge_id": None if status == "unmatched" else f"chg_{rng.randrange(ACCOUNTS):026x}",
                    }
                )
            connection.execute(insert(WebhookEvent), rows)
        connection.execute(text("ANALYZE"))
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()

    name = f"regua_bench_ops_{uuid.uuid4().hex[:8]}"
    admin = create_engine(make_url(POSTGRES).set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(POSTGRES).set(database=name).render_as_string(hide_password=False)
    redis.Redis.from_url(REDIS).flushdb()
    try:
        upgrade(url)
        settings = Settings(env="test", database_url=url, broker_url=REDIS, ops_token=TOKEN)
        runtime = build_runtime(settings)
        now = runtime.clock.now()
        loaded = populate(runtime.engine, args.events, now)
        print(f"loaded {args.events:,} events, {ACCOUNTS:,} accounts in {loaded:.1f} s")
        jobs = build_jobs(settings, lazy_context(settings), runtime.clock)
        app = create_app(runtime, build_providers(settings), jobs.enqueue_events, broker=jobs.broker)
        port = free_port()
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, auth=("ops", TOKEN), timeout=30) as client:
            while True:
                try:
                    client.get("/healthz")
                    break
                except httpx.TransportError:
                    time.sleep(0.05)
            today = runtime.calendar.local_date(now)
            pages = {
                "overview": "/ops",
                "needs a person": "/ops/person",
                "events, newest": "/ops/events",
                "events, failed": "/ops/events?status=failed",
                "events, unmatched, asaas": "/ops/events?status=unmatched&provider=asaas",
                "events, one account": "/ops/events?account=acct-00042",
                "events, one day": f"/ops/events?since={today - timedelta(days=10)}&until={today - timedelta(days=10)}",
                "events, by id": f"/ops/events?id=evt_{args.events // 2:020x}",
                "event page": f"/ops/events/evt_{args.events // 2:020x}",
                "dead letters": "/ops/queues/webhooks",
                "accounts, search": "/ops/accounts?q=Cliente%204242",
                "account page": "/ops/accounts/acct-00042",
                "metrics": "/metrics",
            }
            print(f"| page | median ms | slowest ms |  ({args.rounds} rounds, {args.events:,} events)")
            print("|---|---:|---:|")
            for label, path in pages.items():
                assert client.get(path).status_code == 200, path
                times = []
                for _ in range(args.rounds):
                    started = time.perf_counter()
                    response = client.get(path)
                    times.append((time.perf_counter() - started) * 1000)
                    assert response.status_code == 200
                print(f"| {label} | {statistics.median(times):.0f} | {max(times):.0f} |")
        server.should_exit = True
        thread.join(timeout=10)
        runtime.close()
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
        print(f"at {datetime.now(UTC).isoformat(timespec='seconds')}")


if __name__ == "__main__":
    main()
