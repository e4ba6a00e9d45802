"""The production processes on real services, for injecting faults: a Redis of the suite's own, that it
stops and starts; the machine's PostgreSQL; the gateway simulator; an SMTP sink. And the books, read back.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
import redis
from sqlalchemy import Engine, create_engine, select
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from billing.journal import Notification, WebhookEvent
from billing.models import Charge, ChargeInvoice, Invoice, Payment, Refund
from billing.shared_clock import store_instant
from tests.conftest import service_missing
from tests.e2e import conftest as e2e
from tests.integration.smtp_sink import SmtpSink

e2e_database = e2e.e2e_database
API = {"Authorization": "Bearer e2e-token"}
SAO_PAULO = ZoneInfo("America/Sao_Paulo")


def wait_for(check: Callable[[], bool], timeout: float, what: str | Callable[[], str]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"after {timeout:.0f} s, still not: {what if isinstance(what, str) else what()}")


NO_PERSISTENCE = ("--save", "", "--appendonly", "no", "--daemonize", "no")


@dataclass
class RedisServer:
    """A `redis-server` of the test's own, on a free port, without persistence: stopping it is an outage."""

    logs: Path
    port: int = field(default_factory=e2e.free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            service_missing("redis-server", FileNotFoundError("redis-server is not on PATH"))
        assert binary is not None
        with (self.logs / "redis.log").open("ab") as log:
            self.process = subprocess.Popen(
                [binary, "--port", str(self.port), "--bind", "127.0.0.1", *NO_PERSISTENCE],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        client = redis.Redis(port=self.port, socket_connect_timeout=0.5)
        try:
            wait_for(lambda: _pings(client), 10, "redis-server answers PING")
        finally:
            client.close()

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


@dataclass
class Books:
    """The database, read directly, for what the tests assert beside `regua check`."""

    engine: Engine

    def all(self, model: type[Any]) -> list[Any]:
        with self.engine.connect() as connection:
            return list(connection.execute(select(model.__table__)).mappings())

    def assert_clean(self, *, refunds: int = 0) -> None:
        """Every invoice paid at most once and paid exactly when it has a payment; one mail per step."""
        payments_per_invoice: Counter[str] = Counter()
        for payment in self.all(Payment):
            if payment["status"] == "confirmed":
                payments_per_invoice.update(payment["invoice_ids"])
        paid = {invoice["id"] for invoice in self.all(Invoice) if invoice["status"] == "paid"}
        assert {key for key, count in payments_per_invoice.items() if count > 1} == set(), "an invoice paid twice"
        assert set(payments_per_invoice) == paid, "paid invoices and confirmed payments disagree"
        assert len(self.all(Refund)) == refunds
        mails = Counter(
            (row["invoice_id"], row["kind"], row["step"]) for row in self.all(Notification) if row["status"] == "sent"
        )
        assert [key for key, count in mails.items() if count > 1] == []

    def events(self) -> list[dict[str, Any]]:
        return self.all(WebhookEvent)

    def paid_invoices(self) -> int:
        return sum(1 for invoice in self.all(Invoice) if invoice["status"] == "paid")


@dataclass
class Stack:
    """serve, two worker processes, the gateway simulator, an SMTP sink, on a Redis that can go away."""

    processes: e2e.Processes
    redis: RedisServer
    smtp: SmtpSink
    books: Books
    base: str
    sim: str
    http: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=10))

    def start_worker(self, name: str = "worker") -> subprocess.Popen[bytes]:
        return self.processes.start(name, "worker", "--processes", "2", "--threads", "2")

    def clock(self, *args: str) -> str:
        """`regua clock ...`: the shared clock every process reads, moved with the passes it crosses (the
        other processes see it within about a second)."""
        said = self.processes.run("clock", *args)
        time.sleep(1.5)
        return said

    def time_passes(self, to: datetime) -> None:
        """The shared clock moved as the wall clock moves: no pass runs unless a scheduler is up. The
        processes read it again within about a second."""
        with Session(self.books.engine) as session:
            store_instant(session, to, datetime.now(UTC))
            session.commit()
        time.sleep(1.5)

    def tick(self, at: datetime) -> dict[str, int]:
        """`regua tick` with its whole clock at `at` (REGUA_NOW): `--now` moves the billing pass only, not
        the 5 minutes after which stored events are re-queued."""
        done = subprocess.run(
            [sys.executable, "-m", "regua.cli", "tick", "--json"],
            env={**self.processes.env, "REGUA_NOW": at.isoformat()},
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr
        return dict(json.loads(done.stdout))

    def open_invoices(self, count: int, *, method: str = "boleto", token: str | None = None) -> date:
        """`count` accounts with one platform invoice each, issued by a tick on day 1 of this month."""
        first = datetime.now(SAO_PAULO).date().replace(day=1)
        for index in range(count):
            account = {
                "name": f"Cliente {index}",
                "document": "11.222.333/0001-81",
                "contacts": [{"email": f"c{index}@cliente.example", "name": "Ana", "manage_payments": True}],
                "gateway_customer_id": f"cus_{index:012d}",
            }
            assert self.http.put(f"{self.base}/api/accounts/acc{index}", json=account, headers=API).is_success
            subscription: dict[str, Any] = {
                "plan": "pro",
                "monthly_price_cents": 10_000 + index,
                "frequency": "monthly",
                "payment_method": method,
                "starts_on": first.isoformat(),
            }
            if token is not None:
                subscription["card_token"], subscription["remote_ip"] = token, "203.0.113.10"
            url = f"{self.base}/api/accounts/acc{index}/subscriptions/platform"
            response = self.http.put(url, json=subscription, headers=API)
            assert response.is_success, response.text
        return first

    def charges(self) -> list[dict[str, Any]]:
        """Our open charges, each with its invoice (one per charge here)."""
        with self.books.engine.connect() as connection:
            rows = connection.execute(
                select(Charge.__table__).where(Charge.__table__.c.status == "pending").order_by("id")
            ).mappings()
            charges = [dict(row) for row in rows]
        invoices = {invoice["id"]: invoice for invoice in self.books.all(Invoice)}
        links = self.books.all(ChargeInvoice)
        for charge in charges:
            [charge["invoice_id"]] = [link["invoice_id"] for link in links if link["charge_id"] == charge["id"]]
            charge["invoice"] = invoices[charge["invoice_id"]]
        return charges

    def assert_books(self, *, refunds: int = 0) -> None:
        """`regua check` clean, and what it does not count: one mail per (invoice, kind, step) sent, and at
        most one payment captured per charge in the gateway simulator's own records."""
        self.books.assert_clean(refunds=refunds)
        self.assert_the_simulator_captured_at_most_once_per_charge()
        check = subprocess.run(
            [sys.executable, "-m", "regua.cli", "check"],
            env=self.processes.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert check.returncode == 0, check.stdout + check.stderr

    def sim_state(self) -> dict[str, Any]:
        return dict(self.http.get(f"{self.sim}/sim/state").json())

    def assert_the_simulator_captured_at_most_once_per_charge(self) -> None:
        captured = Counter(
            payment["externalReference"]
            for payment in self.sim_state()["payments"]
            if payment["status"] in ("CONFIRMED", "RECEIVED")
        )
        assert [reference for reference, count in captured.items() if count > 1] == []


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def stack(e2e_database: str, redis_server: RedisServer, tmp_path: Path) -> Iterator[Stack]:
    smtp = SmtpSink()
    smtp.start()
    port, sim_port = e2e.free_port(), e2e.free_port()
    base, sim = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{sim_port}"
    env = {
        **{key: value for key, value in os.environ.items() if not key.startswith("REGUA_")},
        "REGUA_ENV": "test",
        "REGUA_DATABASE_URL": e2e_database,
        "REGUA_BROKER_URL": redis_server.url,
        "REGUA_API_TOKEN": "e2e-token",
        "REGUA_STANDARD_WEBHOOK_SECRETS": e2e.STANDARD_SECRET,
        "REGUA_ASAAS_WEBHOOK_TOKEN": e2e.ASAAS_TOKEN,
        "REGUA_PIX_WEBHOOK_SECRET": e2e.PIX_SECRET,
        "REGUA_ASAAS_API_URL": sim,
        "REGUA_ASAAS_API_KEY": "faults-asaas-key",
        "REGUA_SMTP_URL": smtp.url,
        "REGUA_TICK_SECONDS": "2",  # for the tests that run `regua scheduler`
    }
    processes = e2e.Processes(env=env, logs=tmp_path)
    engine = create_engine(make_url(e2e_database).set(drivername="postgresql+psycopg"))
    running = Stack(processes, redis_server, smtp, Books(engine), base, sim)
    try:
        processes.start(
            "gateway-sim", "gateway-sim", "--port", str(sim_port), "--webhook-url", f"{base}/webhooks/asaas"
        )
        processes.start("serve", "serve", "--port", str(port))
        running.start_worker()
        processes.wait_http(f"{sim}/sim/state")
        processes.wait_http(f"{base}/readyz")
        yield running
    finally:
        processes.stop()
        running.http.close()
        engine.dispose()
        smtp.stop()


def shuffled(items: list[Any], seed: int) -> list[Any]:
    """A fixed shuffle: a failure replays in the same order."""
    random.Random(seed).shuffle(items)
    return items
