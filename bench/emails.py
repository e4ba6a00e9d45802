"""Emails rendered and delivered per second by one worker process, against raw aiosmtplib sends.

The sink is aiosmtpd in a process of its own (so it does not share the worker's GIL), counting what
it accepts. In the same run:

- raw: one pre-built message sent again and again with aiosmtplib, on 1 connection, then on as
  many connections as regua's SMTP pool keeps (the ceiling for this sink on this machine);
- transport: the same message through regua's SmtpMailer alone (no database, no rendering);
- render: the templates of SAMPLES customers' notifications rendered into MIME messages, in turn, in
  one thread (no I/O; the first, which loads the templates, not timed);
- regua: one Dramatiq worker (the in-process broker, THREADS threads) draining the send jobs as
  the tick queues them (up to 16 notifications a job): claim them in the database, check each is
  still true, render it, send it over pooled SMTP connections, mark it sent (jobs that run at the
  same time share the transactions and send side by side: workers.mailing.Grouped). The script
  checks that the sink got every one and the database says each was sent once.

On two cores the sink, the worker and PostgreSQL share the machine, and one ceiling run differs
from the next by a third. So the worker runs ROUNDS times for each thread count, each round
between two ceiling runs, and each worker run is set against the mean of the two ceilings around
it; the median of those shares is the figure.

    python -m bench.emails [--emails 2000] [--threads 8,32] [--rounds 3] [--sqlite]

Uses a fresh PostgreSQL database (REGUA_TEST_POSTGRES_URL's server) unless --sqlite is given.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import socket
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiosmtplib
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from billing.accounts import AccountInput, SubscriptionInput, upsert_account, upsert_subscription
from billing.clock import FrozenClock, parse_instant
from billing.invoicing import issue_due_invoices
from billing.journal import Notification
from billing.models import NotificationStatus
from billing.notifications import record_due_notifications
from regua.assembly import InProcessWorker
from regua.mail import message_bytes, render_email
from regua.mailer import SmtpPostman, email_context
from regua.migrate import upgrade
from regua.runtime import Runtime, build_runtime
from regua.settings import Settings
from regua.smtp import CONNECTIONS, Outgoing, SmtpMailer
from workers.actors import declare_actors
from workers.broker import build_broker
from workers.context import WorkerContext
from workers.tuning import tune_worker_process

POSTGRES = os.environ.get("REGUA_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
START = "2026-12-01T00:05:00-03:00"
SENDER = "financeiro@regua.example"
TARGET = 0.6
"""Of the ceiling, for one worker process."""
SAMPLES = 200
"""Customers the render-only row goes round: each email with its own name and link."""


@dataclass
class Result:
    name: str
    emails: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.emails / self.seconds


# The sink, in its own process.


def free_port() -> int:
    with closing(socket.socket()) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class _Counter:
    def __init__(self, count: Any) -> None:
        self.count = count

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.count.get_lock():
            self.count.value += 1
        return "250 OK"


def _sink(port: int, count: Any, ready: Any, stop: Any) -> None:
    from aiosmtpd.controller import Controller

    controller = Controller(_Counter(count), hostname="127.0.0.1", port=port, server_hostname="sink.bench")
    controller.start()
    ready.set()
    stop.wait()
    controller.stop()


@contextmanager
def sink() -> Iterator[tuple[int, Callable[[], int]]]:
    spawn = multiprocessing.get_context("spawn")
    port, count, ready, stop = free_port(), spawn.Value("i", 0), spawn.Event(), spawn.Event()
    process = spawn.Process(target=_sink, args=(port, count, ready, stop), daemon=True)
    process.start()
    if not ready.wait(timeout=30):
        raise SystemExit("the SMTP sink did not start")
    try:
        yield port, lambda: int(count.value)
    finally:
        stop.set()
        process.join(timeout=10)


# The database, with one invoice_issued notification per account.


@contextmanager
def database(use_sqlite: bool) -> Iterator[str]:
    if use_sqlite:
        with tempfile.TemporaryDirectory() as directory:
            url = f"sqlite:///{Path(directory) / 'bench.db'}"
            upgrade(url)
            yield url
        return
    name = f"regua_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(make_url(POSTGRES).set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(POSTGRES).set(database=name).render_as_string(hide_password=False)
    try:
        upgrade(url)
        yield url
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def customers(runtime: Runtime, count: int, prefix: str) -> list[str]:
    """`count` boleto customers whose December invoice is issued: one pending notification each."""
    now = runtime.clock.now()
    subscription = SubscriptionInput.parse(
        {
            "plan": "pro",
            "modules": [],
            "monthly_price_cents": 19990,
            "frequency": "monthly",
            "payment_method": "boleto",
            "installments": 1,
            "starts_on": "2026-12-01",
        }
    )

    def work(session: Session) -> list[str]:
        for number in range(count):
            account = AccountInput.parse(
                {
                    "name": f"Cliente {number} Ltda",
                    "document": "11.222.333/0001-81",
                    "contacts": [
                        {"email": f"financeiro{number}@cliente.example", "name": "Ana", "manage_payments": True}
                    ],
                },
                runtime.calendar,
            )
            upsert_account(session, f"{prefix}-{number:05d}", account, now)
            upsert_subscription(session, f"{prefix}-{number:05d}", "platform", subscription, now, runtime.calendar)
        session.flush()
        issue_due_invoices(session, now, runtime.calendar)
        return record_due_notifications(session, now, runtime.calendar, runtime.policy).pending

    ids = runtime.transaction(work)
    assert len(ids) == count, f"{len(ids)} notifications recorded for {count} customers"
    return ids


# What is measured.


def raw(port: int, count: int, connections: int, data: bytes) -> Result:
    async def one(share: int) -> None:
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, local_hostname="bench.local")
        await client.connect()
        for _ in range(share):
            await client.sendmail(SENDER, ["financeiro0@cliente.example"], data)
        await client.quit()

    async def run() -> None:
        shares = [count // connections + (1 if n < count % connections else 0) for n in range(connections)]
        await asyncio.gather(*(one(share) for share in shares))

    started = time.perf_counter()
    asyncio.run(run())
    return Result(f"raw aiosmtplib, {connections} connection{'s' if connections > 1 else ''}", count, _since(started))


def transport(port: int, count: int, data: bytes) -> Result:
    with SmtpMailer(f"smtp://127.0.0.1:{port}") as mailer:
        started = time.perf_counter()
        answers = mailer.send_many(Outgoing(data, SENDER, ("financeiro0@cliente.example",)) for _ in range(count))
        seconds = _since(started)
    assert all(not isinstance(answer, Exception) for answer in answers), "the transport run had failures"
    return Result(f"regua's SmtpMailer alone, {CONNECTIONS} connections", count, seconds)


def render_only(runtime: Runtime, notification_ids: list[str], count: int) -> tuple[Result, bytes]:
    """`count` emails rendered, going round these notifications (each customer's own name, link and amounts)."""
    notifications = runtime.read(
        lambda session: [session.get(Notification, notification_id) for notification_id in notification_ids]
    )

    def rendered(notification: Notification | None) -> bytes:
        assert notification is not None
        context = email_context(notification.kind, notification.account_id, notification.context, "https://p.example")
        return message_bytes(
            render_email(context),
            context,
            mail_from=f"Financeiro <{SENDER}>",
            message_id_domain="regua.example",
            invoice_id=notification.invoice_id,
            sent_at=runtime.clock.now(),
            message_id=f"<{notification.id}@regua.example>",
        )

    data = rendered(notifications[0])  # the first loads the templates and inlines their CSS: not timed
    started = time.perf_counter()
    for number in range(count):
        data = rendered(notifications[number % len(notifications)])
    return Result("render only (templates + MIME bytes), 1 thread", count, _since(started)), data


def regua_worker(runtime: Runtime, ids: list[str], threads: int, received: Callable[[], int]) -> Result:
    tune_worker_process()  # as each `regua worker` process is, from here on (the raw rows ran before)
    context = WorkerContext(runtime, {}, None, postman=lambda: SmtpPostman(runtime))
    jobs = declare_actors(build_broker(""), lambda: context)
    jobs.mailing.queue(ids)
    before = received()
    worker = InProcessWorker(jobs.broker, threads=threads)
    started = time.perf_counter()
    worker.start()
    try:
        deadline = time.monotonic() + 600
        while received() - before < len(ids):
            if time.monotonic() > deadline:
                raise SystemExit(f"only {received() - before} of {len(ids)} emails arrived")
            time.sleep(0.005)
        seconds = _since(started)
    finally:
        worker.stop()
        jobs.mailing.close()
    sent = runtime.read(
        lambda session: session.scalar(
            select(func.count())
            .select_from(Notification)
            .where(Notification.id.in_(ids), Notification.status == NotificationStatus.SENT)
        )
    )
    assert sent == len(ids), f"{sent} notifications marked sent for {len(ids)} emails"
    assert received() - before == len(ids), "the sink got more emails than notifications"
    return Result(f"regua worker: claim, render, send, mark sent ({threads} threads)", len(ids), seconds)


def _since(started: float) -> float:
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--emails", type=int, default=2000)
    parser.add_argument("--threads", default="8,32", help="worker threads, one run each a round (default 8,32)")
    parser.add_argument("--rounds", type=int, default=3, help="worker runs for each thread count (default 3)")
    parser.add_argument("--sqlite", action="store_true", help="the embedded default instead of PostgreSQL")
    args = parser.parse_args()
    runs = [int(threads) for threads in args.threads.split(",")]

    with sink() as (port, received), database(args.sqlite) as url:
        settings = Settings(
            env="test",
            database_url=url,
            smtp_url=f"smtp://127.0.0.1:{port}",
            mail_from=f"Financeiro <{SENDER}>",
            portal_url="https://app.example.com.br/portal",
        )
        runtime = build_runtime(settings, clock=FrozenClock(parse_instant(START)))
        try:
            batches = iter([customers(runtime, args.emails, f"run{n}") for n in range(len(runs) * args.rounds)])
            samples = customers(runtime, SAMPLES, "sample")
            rendered, data = render_only(runtime, samples, min(args.emails, 1000))
            single = raw(port, args.emails, 1, data)
            alone = transport(port, args.emails, data)
            ceilings = [raw(port, args.emails, CONNECTIONS, data)]
            workers: dict[int, list[Result]] = {threads: [] for threads in runs}
            for _ in range(args.rounds):
                for threads in runs:
                    workers[threads].append(regua_worker(runtime, next(batches), threads, received))
                ceilings.append(raw(port, args.emails, CONNECTIONS, data))
        finally:
            runtime.close()

    database_name = "SQLite" if args.sqlite else "PostgreSQL"
    sqlite = " --sqlite" if args.sqlite else ""
    print(f"\n$ python -m bench.emails --emails {args.emails} --threads {args.threads} --rounds {args.rounds}{sqlite}")
    print(
        f"{args.emails} emails a row, to an aiosmtpd sink in another process; {database_name}; {os.cpu_count()} cores; "
        f"load average {os.getloadavg()[0]:.2f} at the end\n"
    )
    print(f"| {'':<58} | {'runs':>4} | {'per second (median)':>19} | {'range':>13} |")
    print(f"|{'-' * 60}|{'-' * 5}:|{'-' * 20}:|{'-' * 14}:|")
    for results in ([single], ceilings, [alone], [rendered], *workers.values()):
        rates = [result.rate for result in results]
        spread = f"{min(rates):,.0f}-{max(rates):,.0f}" if len(rates) > 1 else ""
        print(f"| {results[0].name:<58} | {len(rates):>4} | {statistics.median(rates):>19,.0f} | {spread:>13} |")
    print(f"\nThe ceiling is the raw row with {CONNECTIONS} connections, as many as regua's SMTP pool keeps;")
    print("each worker run is set against the mean of the ceiling runs just before and just after it.")
    for threads, results in workers.items():
        shares = [
            result.rate / statistics.mean((ceilings[round_].rate, ceilings[round_ + 1].rate))
            for round_, result in enumerate(results)
        ]
        median = statistics.median(shares)
        listed = ", ".join(f"{share:.2f}" for share in shares)
        print(
            f"regua worker, {threads} threads: {listed} of the ceiling; median {median:.2f}; "
            f"target {TARGET} {'met' if median >= TARGET else 'NOT met'}"
        )


if __name__ == "__main__":
    main()
