"""`regua check` on the books of 100,000 accounts: how long one snapshot of every invariant takes.

A fresh PostgreSQL database gets N accounts with a monthly card auto-debit subscription each (as
`bench.day1` populates them); the billing pass issues December's invoices; half of them are paid
(a payment and its charge each, written in bulk), and a pass on day 9 blocks the other half. Then
`check_books` runs in one REPEATABLE READ snapshot and is timed, beside a baseline measured in the
same run: one `SELECT count(*)` of every table the check reads (the least any whole-books check
must do). Target: under 10 s for 100,000 accounts.

    python -m bench.check [--accounts 100000]

Needs PostgreSQL as in the README.
"""

from __future__ import annotations

import argparse
import time
from datetime import timedelta

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from bench.day1 import POSTGRES, fresh_database
from billing.check import check_books, snapshot
from billing.clock import FrozenClock, parse_instant
from billing.tick import run_tick
from regua.runtime import build_runtime
from regua.settings import Settings

DAY_1 = parse_instant("2026-12-01T00:05:00-03:00")
PAY_HALF = """
    WITH paid AS (
        SELECT id, account_id, total_cents, row_number() OVER (ORDER BY id) AS n FROM invoices
    ), chosen AS (SELECT * FROM paid WHERE n % 2 = 0), charge AS (
        INSERT INTO charges (id, account_id, product, method, amount_cents, installments, status,
                             idempotency_key, gateway, created_at, confirmed_at, source, gateway_cancel_owed)
        SELECT 'chg_' || substr(md5(id), 1, 26), account_id, 'platform', 'card', total_cents, 1, 'confirmed',
               'bench:' || id, 'asaas', :now, :now, 'auto_debit', false FROM chosen
        RETURNING id, account_id, amount_cents
    ), link AS (
        INSERT INTO charge_invoices (charge_id, invoice_id)
        SELECT 'chg_' || substr(md5(id), 1, 26), id FROM chosen
    ), payment AS (
        INSERT INTO payments (id, charge_id, account_id, amount_cents, method, status, gateway,
                              gateway_payment_id, invoice_ids, paid_at, chargeback_cents)
        SELECT 'pay_' || substr(md5(id), 1, 26), 'chg_' || substr(md5(id), 1, 26), account_id, total_cents,
               'card', 'confirmed', 'asaas', 'gw_' || id, json_build_array(id), :now, 0 FROM chosen
    )
    UPDATE invoices SET status = 'paid', paid_at = :now, charge_id = 'chg_' || substr(md5(invoices.id), 1, 26),
                        payment_id = 'pay_' || substr(md5(invoices.id), 1, 26)
    FROM chosen WHERE invoices.id = chosen.id
"""
TABLES = ("invoices", "payments", "refunds", "charges", "charge_invoices", "blocks", "notifications", "tick_runs")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=100_000)
    args = parser.parse_args()
    admin = create_engine(make_url(POSTGRES).set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT")
    database, url, _load = fresh_database(admin, args.accounts)
    clock = FrozenClock(DAY_1)
    runtime = build_runtime(Settings(env="test", database_url=url), clock=clock)
    try:
        run_tick(runtime, DAY_1)
        with runtime.engine.begin() as connection:
            connection.execute(text(PAY_HALF), {"now": DAY_1})
        day_9 = DAY_1 + timedelta(days=8)
        clock.set(day_9)
        blocked = run_tick(runtime, day_9).counts["blocks_applied"]
        with runtime.engine.begin() as connection:
            connection.execute(text("ANALYZE"))

        def baseline(session: Session) -> int:
            snapshot(session)
            return sum(int(session.scalar(text(f"SELECT count(*) FROM {table}")) or 0) for table in TABLES)

        started = time.perf_counter()
        rows = runtime.read(baseline)
        baseline_s = time.perf_counter() - started

        def checked(session: Session) -> dict[str, int]:
            snapshot(session)
            return check_books(session, day_9).counts

        started = time.perf_counter()
        counts = runtime.read(checked)
        check_s = time.perf_counter() - started
    finally:
        runtime.close()
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
        admin.dispose()
    broken = {name: count for name, count in counts.items() if count}
    print(f"accounts {args.accounts}, blocks applied on day 9 {blocked}, rows counted {rows}")
    print(f"baseline (count(*) of the {len(TABLES)} tables read): {baseline_s:.2f} s")
    print(f"regua check, every invariant in one snapshot: {check_s:.2f} s ({check_s / baseline_s:.1f}x the baseline)")
    print(f"violations: {broken or 'none'}")


if __name__ == "__main__":
    main()
