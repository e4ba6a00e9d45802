"""The day-1 tick with 100,000 card auto-debit subscriptions: invoices issued and their charges queued.

A fresh PostgreSQL database gets N accounts with a monthly `card_auto_debit` subscription each
(bulk-inserted, not timed); Redis is emptied. Then the tick at 2026-12-01T00:05-03:00 runs in this
process as `regua tick` runs it with REGUA_BROKER_URL set (run_tick, then the charging step) and
is timed: it issues the invoices, opens one pending charge per invoice and queues them on Redis in
`charge_cards` jobs of twenty (nothing executes them: no worker runs). The script checks the rows and the
messages, runs the pass again (it must do nothing), and prints the figures. `--cli` also times the
whole `regua tick --now ...` command, email step included, on a second database. Targets: under
30 s for 100,000 (5 minutes for 1,000,000), the process's peak RSS under 300 MB, a second pass under 30 s.

    python -m bench.day1 [--subscriptions 100000] [--cli]

Needs PostgreSQL and Redis as in the README.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import uuid
from datetime import UTC, date, datetime

import redis
from sqlalchemy import create_engine, insert, text
from sqlalchemy.engine import Engine, make_url

from billing.clock import parse_instant
from billing.models import Account, Contact, Subscription
from billing.tick import record_tick, run_tick
from regua.assembly import build_jobs, lazy_context, worker_context
from regua.migrate import upgrade
from regua.runtime import build_runtime
from regua.settings import Settings
from workers.charging import CHARGES_PER_MESSAGE
from workers.tick import charging_step

POSTGRES = os.environ.get("REGUA_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS = os.environ.get("REGUA_BENCH_REDIS_URL", "redis://127.0.0.1:6379/13")
NOW = "2026-12-01T00:05:00-03:00"
CHUNK = 10_000
TARGET_S_PER_100K = 30
"""The pass's target: 30 s for 100,000 subscriptions, as many times that for more (5 minutes for a million)."""
TARGET_RSS_MB = 300
TARGET_SECOND_S = 30


def populate(engine: Engine, count: int, *, contacts: bool = False) -> float:
    """`count` accounts with a card auto-debit subscription each (and a billing contact, if asked)."""
    started = time.perf_counter()
    created = datetime(2026, 11, 20, tzinfo=UTC)
    with engine.begin() as connection:
        for offset in range(0, count, CHUNK):
            numbers = range(offset, min(offset + CHUNK, count))
            connection.execute(
                insert(Account),
                [
                    {
                        "id": f"acct-{n:07d}",
                        "name": f"Cliente {n}",
                        "document": "11222333000181",
                        "gateway_customer_id": f"cus_{n:012d}",
                        "created_at": created,
                        "updated_at": created,
                    }
                    for n in numbers
                ],
            )
            if contacts:
                connection.execute(
                    insert(Contact),
                    [
                        {
                            "account_id": f"acct-{n:07d}",
                            "email": f"financeiro{n}@cliente.example",
                            "name": "Ana",
                            "manage_payments": True,
                        }
                        for n in numbers
                    ],
                )
            connection.execute(
                insert(Subscription),
                [
                    {
                        "id": f"sub_{n:020d}",
                        "account_id": f"acct-{n:07d}",
                        "product": "platform",
                        "plan": "pro",
                        "modules": [],
                        "monthly_price_cents": 19990,
                        "frequency": "monthly",
                        "payment_method": "card_auto_debit",
                        "card_token": "tok_ok",
                        "remote_ip": "203.0.113.10",
                        "installments": 1,
                        "starts_on": date(2026, 12, 1),
                        "created_at": created,
                        "updated_at": created,
                    }
                    for n in numbers
                ],
            )
        connection.execute(text("ANALYZE"))
    return time.perf_counter() - started


def rss_mb(field: str = "VmRSS") -> float:
    """This process's resident memory (VmRSS) or its peak since the last `reset_peak_rss` (VmHWM), in MB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return 0.0


def reset_peak_rss() -> None:
    """Start VmHWM again from the current RSS (Linux: "5" to /proc/self/clear_refs)."""
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")


def tick_in_process(database_url: str) -> tuple[dict[str, int], dict[str, float], dict[str, float]]:
    """run_tick, then the charging step, as `regua tick` runs them (the email step is not timed here).

    The phases' seconds, and `rss_before` and `rss_peak`, the process's resident memory before the pass and at its
    highest during it, in MB."""
    settings = Settings(env="test", database_url=database_url, broker_url=REDIS)
    runtime = build_runtime(settings)
    try:
        jobs = build_jobs(settings, lazy_context(settings))
        context = worker_context(runtime)
        now = parse_instant(NOW)
        rss_before = rss_mb()
        reset_peak_rss()
        started = time.perf_counter()
        report = run_tick(runtime, now)
        issued = time.perf_counter()
        charging_step(jobs, context, report)
        planned = time.perf_counter()
        record_tick(runtime, report)
        done = time.perf_counter()
        rss_peak = rss_mb("VmHWM")
    finally:
        runtime.close()
    phases = {"run_tick": issued - started, "charging": planned - issued, "record": done - planned}
    return dict(report.as_dict()), phases, {"rss_before": rss_before, "rss_peak": rss_peak}


def tick_command(database_url: str) -> tuple[dict[str, int] | None, float, str]:
    command = [sys.executable, "-m", "regua.cli", "tick", "--now", NOW, "--json"]
    env = {**os.environ, "REGUA_DATABASE_URL": database_url, "REGUA_BROKER_URL": REDIS, "REGUA_ENV": "test"}
    env.pop("REGUA_NOW", None)
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        errors = [line for line in done.stderr.splitlines() if "Error" in line.split(":")[0]]
        return None, elapsed, (errors[-1] if errors else done.stderr.strip()[-300:] or "failed")[:300]
    return json.loads(done.stdout), elapsed, ""


def fresh_database(admin: Engine, count: int) -> tuple[str, str, float]:
    database = f"regua_bench_{uuid.uuid4().hex[:8]}"
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{database}"'))
    database_url = make_url(POSTGRES).set(database=database).render_as_string(hide_password=False)
    upgrade(database_url)
    engine = create_engine(make_url(database_url).set(drivername="postgresql+psycopg"))
    try:
        load_s = populate(engine, count)
    finally:
        engine.dispose()
    return database, database_url, load_s


def check(database_url: str, queue: redis.Redis) -> dict[str, int]:
    engine = create_engine(make_url(database_url).set(drivername="postgresql+psycopg"))
    with engine.connect() as connection:
        invoices = connection.execute(text("SELECT count(*) FROM invoices")).scalar_one()
        total = connection.execute(text("SELECT coalesce(sum(total_cents), 0) FROM invoices")).scalar_one()
        charges = connection.execute(
            text("SELECT count(*) FROM charges WHERE status = 'pending' AND idempotency_key LIKE :key"),
            {"key": "auto:%:day1"},
        ).scalar_one()
        links = connection.execute(text("SELECT count(*) FROM charge_invoices")).scalar_one()
    engine.dispose()
    return {
        "invoices": invoices,
        "total_cents": total,
        "charges": charges,
        "links": links,
        "queued": int(queue.llen("dramatiq:charges")),
        "payloads": int(queue.hlen("dramatiq:charges.msgs")),
        **queued_charges(queue),
    }


def queued_charges(queue: redis.Redis) -> dict[str, int]:
    """The charge ids in the queued `charge_cards` jobs: in all, and distinct (each must be queued once)."""
    ids = [
        charge_id for payload in queue.hvals("dramatiq:charges.msgs") for charge_id in json.loads(payload)["args"][0]
    ]
    return {"charges_queued": len(ids), "distinct_queued": len(set(ids))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscriptions", type=int, default=100_000)
    parser.add_argument("--cli", action="store_true", help="also time the `regua tick` command on a second database")
    args = parser.parse_args()
    n = args.subscriptions
    admin = create_engine(make_url(POSTGRES).set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT")
    queue = redis.Redis.from_url(REDIS)
    databases: list[str] = []
    failed = False
    try:
        database, database_url, load_s = fresh_database(admin, n)
        databases.append(database)
        queue.flushdb()
        print(f"{n:,} card_auto_debit subscriptions bulk-loaded in {load_s:.1f} s (not timed)")
        counts, phases, memory = tick_in_process(database_url)
        found = check(database_url, queue)
        elapsed = sum(phases.values())
        print(f"day-1 tick in process (run_tick + charging_step, Redis broker): {elapsed:.1f} s")
        print("  " + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in phases.items()))
        grown = memory["rss_peak"] - memory["rss_before"]
        before, peak = memory["rss_before"], memory["rss_peak"]
        print(f"  RSS {before:.0f} MB before the pass, {peak:.0f} MB at its peak (+{grown:.0f})")
        print(f"  invoices_issued {counts['invoices_issued']:,}, charges_started {counts['charges_started']:,}")
        print(
            f"  rows: {found['invoices']:,} invoices (R$ {found['total_cents'] / 100:,.2f}), "
            f"{found['charges']:,} pending day-1 charges, {found['links']:,} links; "
            f"Redis: {found['queued']:,} charge jobs queued, {found['payloads']:,} payloads, "
            f"{found['charges_queued']:,} charges in them ({found['distinct_queued']:,} distinct)"
        )
        again, again_phases, again_memory = tick_in_process(database_url)
        print(
            f"  second pass at the same instant: {sum(again_phases.values()):.1f} s, "
            f"RSS peak {again_memory['rss_peak']:.0f} MB, "
            f"charges_started {again['charges_started']}, queue {int(queue.llen('dramatiq:charges')):,}"
        )
        charges = {counts["charges_started"], found["charges"], found["charges_queued"], found["distinct_queued"]}
        expected = {n} == {counts["invoices_issued"], *charges} and found["queued"] == -(-n // CHARGES_PER_MESSAGE)
        failed = not expected or again["charges_started"] != 0
        second = sum(again_phases.values())
        limit = TARGET_S_PER_100K * max(1.0, n / 100_000)
        print(f"target under {limit:.0f} s:", "met" if elapsed < limit else "MISSED")
        print(f"target RSS under {TARGET_RSS_MB} MB:", "met" if memory["rss_peak"] < TARGET_RSS_MB else "MISSED")
        print(f"target second pass under {TARGET_SECOND_S} s:", "met" if second < TARGET_SECOND_S else "MISSED")

        if args.cli:
            queue.flushdb()
            database, database_url, _ = fresh_database(admin, n)
            databases.append(database)
            result, seconds, error = tick_command(database_url)
            print(f"`regua tick --now {NOW}` with REGUA_BROKER_URL={REDIS}: {seconds:.1f} s, process start to exit")
            if result is None:
                print(f"  it failed: {error}")
                failed = True
            else:
                found = check(database_url, queue)
                print(f"  charges_started {result['charges_started']:,}, {found['queued']:,} jobs queued")
    finally:
        queue.flushdb()
        queue.close()
        with admin.connect() as connection:
            for database in databases:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
        admin.dispose()
    if failed:
        raise SystemExit("FAILED: not one invoice and one charge per subscription, each charge queued once")


if __name__ == "__main__":
    main()
