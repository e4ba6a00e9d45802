"""regua through a real PgBouncer (Debian's package) in transaction pooling: card charges and webhook settlement
by two `regua worker` processes, each on its own broker connection, with fewer server connections than clients."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from billing.db import create_db_engine
from tests.conftest import service_missing
from tests.e2e.conftest import Processes, free_port

pytestmark = pytest.mark.e2e

API = {"Authorization": "Bearer e2e-token"}
SERVER_CONNECTIONS = 4
"""PgBouncer's pool per database and user: far fewer than the clients' connections, so that consecutive
transactions of one client land on different server connections."""


@dataclass
class PgBouncer:
    port: int
    database: str
    user: str
    password: str | None
    logs: Path

    def url(self, *, pooler_flag: bool = True) -> str:
        auth = self.user if self.password is None else f"{self.user}:{self.password}"
        query = "?pgbouncer=true" if pooler_flag else ""
        return f"postgresql://{auth}@127.0.0.1:{self.port}/{self.database}{query}"


def _config(directory: Path, port: int, server: Any, user: str, password: str | None) -> Path:
    (directory / "userlist.txt").write_text(f'"{user}" "{password or ""}"\n')
    ini = directory / "pgbouncer.ini"
    ini.write_text(
        "\n".join(
            [
                "[databases]",
                f"* = host={server.host or '127.0.0.1'} port={server.port or 5432}",
                "[pgbouncer]",
                "listen_addr = 127.0.0.1",
                f"listen_port = {port}",
                "unix_socket_dir =",
                f"auth_type = {'trust' if password is None else 'md5'}",
                f"auth_file = {directory / 'userlist.txt'}",
                "pool_mode = transaction",
                f"default_pool_size = {SERVER_CONNECTIONS}",
                "max_client_conn = 500",
                # psycopg and SQLAlchemy send none of these at connect; other clients may.
                "ignore_startup_parameters = extra_float_digits,options",
                "",
            ]
        )
    )
    for path in (directory, directory / "userlist.txt", ini):
        path.chmod(0o755 if path.is_dir() else 0o644)  # read by the unprivileged user PgBouncer runs as
    return ini


def _answers(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def pgbouncer(e2e_database: str, tmp_path: Path) -> Iterator[PgBouncer]:
    """Debian's `pgbouncer` on a free port in front of the test PostgreSQL; CI fails without it."""
    binary = shutil.which("pgbouncer") or next(
        (path for path in ("/usr/sbin/pgbouncer", "/usr/bin/pgbouncer") if os.access(path, os.X_OK)), None
    )
    if binary is None:
        service_missing("pgbouncer", FileNotFoundError("pgbouncer is not installed (apt-get install pgbouncer)"))
    assert binary is not None
    server = make_url(e2e_database)
    user = server.username or "postgres"
    port = free_port()
    directory = Path(tempfile.mkdtemp(prefix="regua-pgbouncer-"))
    ini = _config(directory, port, server, user, server.password)
    # PgBouncer refuses to run as root: it switches to an unprivileged user given with -u.
    command = [binary, *(["-u", "nobody"] if os.geteuid() == 0 else []), str(ini)]
    log = (tmp_path / "pgbouncer.log").open("wb")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while not _answers(port):
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"pgbouncer did not start:\n{(tmp_path / 'pgbouncer.log').read_text()}")
            time.sleep(0.05)
        yield PgBouncer(port, str(server.database), user, server.password, tmp_path)
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()
        shutil.rmtree(directory, ignore_errors=True)


def test_without_the_flag_psycopg_prepared_statements_collide_behind_pgbouncer_and_with_it_none_are_made(
    pgbouncer: PgBouncer,
) -> None:
    """Why `?pgbouncer=true` exists: psycopg prepares a query it ran five times, under a name the next
    client (on the same server connection) uses too; PgBouncer 1.18 does not keep them apart."""
    query = "SELECT count(*) FROM accounts WHERE id <> %s"
    plain = pgbouncer.url(pooler_flag=False)
    with psycopg.connect(plain, autocommit=True) as first, psycopg.connect(plain, autocommit=True) as second:
        for _ in range(6):
            first.execute(query, ("a",))
        # The second prepares under the same name on the server connection the first left it on (or runs
        # a statement prepared on another one): either way PostgreSQL refuses.

        def both_run_it_again() -> None:
            for _ in range(6):
                second.execute(query, ("b",))
                first.execute(query, ("a",))

        with pytest.raises((psycopg.errors.DuplicatePreparedStatement, psycopg.errors.InvalidSqlStatementName)):
            both_run_it_again()

    engine = create_db_engine(pgbouncer.url())
    assert "pgbouncer" not in engine.url.query  # libpq knows no such option: it never reaches it
    try:
        connections = [engine.connect() for _ in range(SERVER_CONNECTIONS + 2)]
        for _ in range(10):
            for connection in connections:
                connection.execute(text("SELECT count(*) FROM accounts WHERE id <> :id"), {"id": "x"})
                connection.commit()
        for connection in connections:
            connection.close()
    finally:
        engine.dispose()


def test_charges_and_webhook_settlement_run_through_pgbouncer_with_two_worker_processes(
    pgbouncer: PgBouncer, processes: Processes
) -> None:
    port, sim_port = free_port(), free_port()
    base, sim = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{sim_port}"
    processes.env.update(
        {
            "REGUA_DATABASE_URL": pgbouncer.url(),
            "REGUA_ASAAS_API_URL": sim,
            "REGUA_ASAAS_API_KEY": "e2e-asaas-key",
        }
    )
    processes.start("gateway-sim", "gateway-sim", "--port", str(sim_port), "--webhook-url", f"{base}/webhooks/asaas")
    processes.start("serve", "serve", "--port", str(port))
    # Two hosts' worth of workers: separate processes, each with its own broker and database connections.
    processes.start("worker-a", "worker", "--processes", "1", "--threads", "4")
    processes.start("worker-b", "worker", "--processes", "1", "--threads", "4")
    processes.wait_http(f"{sim}/sim/state")
    processes.wait_http(f"{base}/readyz")

    first = datetime.now(ZoneInfo("America/Sao_Paulo")).date().replace(day=1)
    methods = {f"card{n}": "card_auto_debit" for n in range(6)} | {f"boleto{n}": "boleto" for n in range(6)}
    with httpx.Client(base_url=base, headers=API, timeout=10) as api:
        for number, (account, method) in enumerate(methods.items()):
            body = {
                "name": f"Cliente {account}",
                "document": "11.222.333/0001-81",
                "contacts": [{"email": f"{account}@cliente.example", "name": "Ana", "manage_payments": True}],
                "gateway_customer_id": f"cus_{number:012d}",
            }
            assert api.put(f"/api/accounts/{account}", json=body).is_success
            subscription: dict[str, Any] = {
                "plan": "pro",
                "monthly_price_cents": 10_000 + number,
                "frequency": "monthly",
                "payment_method": method,
                "starts_on": first.isoformat(),
            }
            if method == "card_auto_debit":
                subscription |= {"card_token": "tok_ok", "remote_ip": "203.0.113.10"}
            response = api.put(f"/api/accounts/{account}/subscriptions/platform", json=subscription)
            assert response.is_success, response.text

        tick = json.loads(processes.run("tick", "--now", f"{first.isoformat()}T00:05:00-03:00", "--json"))
        assert (tick["invoices_issued"], tick["charges_started"]) == (12, 6)

        def sim_payments(kind: str) -> list[dict[str, Any]]:
            state = httpx.get(f"{sim}/sim/state").json()
            return [p for p in state["payments"] if p["billingType"] == kind]

        # The charge path: each card charged by a worker, its answer settled.
        wait_until(lambda: len(sim_payments("BOLETO")) == 6, "six boletos issued at the gateway")
        # The settlement path: each boleto paid at the gateway, its webhook stored by serve and settled by a worker.
        for payment in sim_payments("BOLETO"):
            assert httpx.post(f"{sim}/sim/payments/{payment['id']}/pay", json={}).status_code == 200

        def statuses() -> dict[str, str]:
            return {
                account: api.get(f"/api/accounts/{account}/invoices").json()["invoices"][0]["status"]
                for account in methods
            }

        wait_until(lambda: set(statuses().values()) == {"paid"}, lambda: f"every invoice paid: {statuses()}")

    captured = [p["externalReference"] for p in sim_payments("CREDIT_CARD") if p["status"] == "CONFIRMED"]
    assert len(captured) == len(set(captured)) == 6
    for name in ("worker-a", "worker-b", "serve"):
        assert "prepared statement" not in processes.log(name), processes.log(name)
    processes.run("check")  # the books add up, read through PgBouncer too
    # Many clients (serve's pool and intake writers, two workers, tick, check), few server connections.
    said = (pgbouncer.logs / "pgbouncer.log").read_text()
    clients, servers = said.count("login attempt"), said.count("new connection to server")
    assert 0 < servers <= SERVER_CONNECTIONS < clients


def wait_until(check: Any, what: Any, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"after {timeout:.0f} s, still not: {what if isinstance(what, str) else what()}")
