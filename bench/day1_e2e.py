"""Day 1 end to end: N card auto-debit subscriptions issued, charged at the simulator, settled, mailed.

A fresh PostgreSQL database gets N accounts (a gateway customer id, one contact who manages
payments) with a monthly `card_auto_debit` platform subscription on the card token `tok_ok`
(bulk-inserted, not timed). Then, as real processes, on a Redis database of the script's own:

- `regua gateway-sim`, posting its Asaas webhooks back to `regua serve`'s /webhooks/asaas;
- `regua serve`;
- `regua worker --processes 2 --threads T`, on every queue (webhooks, charges, email);
- an aiosmtpd sink in a process of its own, counting what it accepts by X-Regua-Kind.

Every process has the same REGUA_NOW (day 1, 00:05 in São Paulo): the clocks agree and stand still.
The clock starts as `regua tick` starts. It issues the invoices and queues one charge job each; the
workers ask the simulator for each card payment (a lookup by our reference, then the create), settle
the charge from its answer and send the payment_confirmed email; the simulator's PAYMENT_CONFIRMED
webhook comes back through `serve` and a webhook job (a no-op by then). The clock stops when every
invoice is paid, every charge confirmed, every payment_confirmed email received by the sink and
every webhook event processed.

The baseline, in the same run before regua starts: the simulator's bare rate, N card payments
created straight at a second `regua gateway-sim` (POST /v3/payments, webhooks off) by as many
concurrent clients as the workers have threads (2 processes of T threads, one httpx client each,
as the workers have); then how long one lookup by externalReference takes with N payments stored.

Checked after the run, exit status 1 otherwise: N invoices paid, N charges confirmed, N payments;
N payments at the simulator, one per externalReference, each one of our charges; N
payment_confirmed emails at the sink (one per invoice) and N notifications sent; every webhook
delivered and processed; `regua check` exits 0. Target: under 10 minutes for 100,000.

Every 10 s it prints how far the books are (counted then, and every second once the sink has every
email) and how long one simulator lookup takes; at `--deadline` it stops and says how far it got.
Then the CPU seconds each process used during the run (the PostgreSQL and Redis servers are the
machine's, shared with whatever else runs there).

    python -m bench.day1_e2e [--subscriptions 100000] [--threads 8] [--deadline 1800]

Needs PostgreSQL and Redis as in the README; uses Redis database 12 (flushed; REGUA_BENCH_REDIS_URL).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import re
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import redis
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from bench.day1 import populate
from bench.webhooks import free_port, wait_up
from regua.migrate import upgrade

POSTGRES = os.environ.get("REGUA_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS = os.environ.get("REGUA_BENCH_REDIS_URL", "redis://127.0.0.1:6379/12")
NOW = "2026-12-01T00:05:00-03:00"
DUE = "2026-12-01"
CHUNK = 10_000
WEBHOOK_TOKEN = "bench-asaas-webhook"
API_KEY = "bench-asaas-key"
TARGET_S = 600.0
TARGET_N = 100_000
PROCESSES = 2
SERVERS = ("postgres", "redis-server")
REPORT_S = 10.0


# -- small helpers -------------------------------------------------------------------------------------


def regua(name: str, args: list[str], env: dict[str, str], logs: Path) -> subprocess.Popen[bytes]:
    log = (logs / f"{name}.log").open("wb")
    return subprocess.Popen([sys.executable, "-m", "regua.cli", *args], env=env, stdout=log, stderr=subprocess.STDOUT)


def stop(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int, *, reaped: bool = False) -> float:
    """User + system CPU of one process (and of its children it has waited for, if `reaped`)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    used = int(fields[11]) + int(fields[12])  # utime, stime
    if reaped:
        used += int(fields[13]) + int(fields[14])  # cutime, cstime
    return used / TICKS


def tree(pid: int) -> list[int]:
    """The process and its descendants."""
    found = [pid]
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            for child in (task / "children").read_text().split():
                found += tree(int(child))
    except FileNotFoundError:
        pass
    return found


def _processes() -> Iterator[tuple[int, str, int]]:
    """(pid, command name, parent pid) of every process on the machine."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            content = stat.read_text()
        except OSError:
            continue
        name = content[content.find("(") + 1 : content.rfind(")")]
        yield int(stat.parent.name), name, int(content.rsplit(")", 1)[1].split()[1])


def server_cpu(name: str) -> float:
    """The CPU of every process called `name` (and what its parent-most ones reaped from exited children):
    the PostgreSQL server's backends come and go. The servers are shared: other work counts too."""
    found = {pid: parent for pid, command, parent in _processes() if command == name}
    return sum(cpu_seconds(pid, reaped=parent not in found) for pid, parent in found.items())


# -- the SMTP sink, in its own process -----------------------------------------------------------------

KIND = re.compile(rb"^X-Regua-Kind: *(\S+)", re.M | re.I)
INVOICE = re.compile(rb"^X-Regua-Invoice: *(\S+)", re.M | re.I)


class _Counting:
    def __init__(self, total: Any, confirmed: Any, invoices: Any) -> None:
        self.total, self.confirmed, self.invoices = total, confirmed, invoices
        self.seen: set[bytes] = set()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        content: bytes = envelope.content
        head = content[: content.find(b"\r\n\r\n")]
        kind = KIND.search(head)
        invoice = INVOICE.search(head)
        with self.total.get_lock():
            self.total.value += 1
        if kind is not None and kind.group(1) == b"payment_confirmed":
            with self.confirmed.get_lock():
                self.confirmed.value += 1
            if invoice is not None and invoice.group(1) not in self.seen:
                self.seen.add(invoice.group(1))
                with self.invoices.get_lock():
                    self.invoices.value += 1
        return "250 OK"


def _sink(port: int, counts: tuple[Any, Any, Any], ready: Any, done: Any) -> None:
    from aiosmtpd.controller import Controller

    controller = Controller(_Counting(*counts), hostname="127.0.0.1", port=port, server_hostname="sink.bench")
    controller.start()
    ready.set()
    done.wait()
    controller.stop()


@dataclass
class Sink:
    port: int
    total: Any
    confirmed: Any
    invoices: Any

    def counts(self) -> tuple[int, int, int]:
        return int(self.total.value), int(self.confirmed.value), int(self.invoices.value)


@contextmanager
def smtp_sink() -> Iterator[tuple[Sink, int]]:
    spawn = multiprocessing.get_context("spawn")
    counts = (spawn.Value("q", 0), spawn.Value("q", 0), spawn.Value("q", 0))
    port, ready, done = free_port(), spawn.Event(), spawn.Event()
    process = spawn.Process(target=_sink, args=(port, counts, ready, done), daemon=True)
    process.start()
    if not ready.wait(timeout=30):
        raise SystemExit("the SMTP sink did not start")
    try:
        assert process.pid is not None
        yield Sink(port, *counts), process.pid
    finally:
        done.set()
        process.join(timeout=10)


# -- the database ------------------------------------------------------------------------------------


PROGRESS = text(
    """
    SELECT (SELECT count(*) FROM invoices) AS issued,
           (SELECT count(*) FROM invoices WHERE status = 'paid') AS paid,
           (SELECT count(*) FROM charges WHERE status = 'confirmed') AS confirmed,
           (SELECT count(*) FROM notifications WHERE kind = 'payment_confirmed' AND status = 'sent') AS mailed,
           (SELECT count(*) FROM webhook_events) AS events,
           (SELECT count(*) FROM webhook_events WHERE status IN ('processed', 'ignored', 'unmatched')) AS settled
    """
)


def progress(engine: Engine) -> dict[str, int]:
    with engine.connect() as connection:
        return dict(connection.execute(PROGRESS).mappings().one())


# -- the baseline: the simulator alone ----------------------------------------------------------------


def payment_body(number: int) -> bytes:
    return json.dumps(
        {
            "customer": f"cus_{number:012d}",
            "billingType": "CREDIT_CARD",
            "dueDate": DUE,
            "externalReference": f"bench_{number:07d}",
            "creditCardToken": "tok_ok",
            "remoteIp": "203.0.113.10",
            "value": 209.9,
            "description": "Mensalidade 12/2026",
        }
    ).encode()


def _create_payments(base: str, numbers: range, threads: int, start: Any, failures: Any) -> None:
    """One client process: `threads` threads sharing one httpx client, as a worker process shares its gateway's."""
    headers = {"access_token": API_KEY, "Content-Type": "application/json", "User-Agent": "regua"}
    lock = threading.Lock()
    todo = iter(numbers)
    failed = 0

    def run(client: httpx.Client) -> None:
        nonlocal failed
        while True:
            with lock:
                number = next(todo, None)
            if number is None:
                return
            response = client.post(f"{base}/v3/payments", content=payment_body(number), headers=headers)
            if response.status_code != 200 or response.json().get("status") != "CONFIRMED":
                with lock:
                    failed += 1

    with httpx.Client(timeout=60) as client:
        workers = [threading.Thread(target=run, args=(client,)) for _ in range(threads)]
        start.wait()
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
    with failures.get_lock():
        failures.value += failed


@dataclass
class Baseline:
    seconds: float
    failed: int
    lookup_ms: float


def baseline(count: int, threads: int, env: dict[str, str], logs: Path) -> Baseline:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    sim = regua("baseline-sim", ["gateway-sim", "--port", str(port), "--webhook-url", ""], env, logs)
    try:
        wait_up(f"{base}/sim/state", timeout=60)
        spawn = multiprocessing.get_context("spawn")
        start, failures = spawn.Event(), spawn.Value("q", 0)
        share = -(-count // PROCESSES)
        clients = [
            spawn.Process(
                target=_create_payments,
                args=(base, range(n * share, min(count, (n + 1) * share)), threads, start, failures),
            )
            for n in range(PROCESSES)
        ]
        for client in clients:
            client.start()
        time.sleep(2)  # the clients' imports, before the clock starts
        started = time.perf_counter()
        start.set()
        for client in clients:
            client.join()
        seconds = time.perf_counter() - started
        lookup_ms = lookup_time(base, f"bench_{count // 2:07d}")
    finally:
        stop([sim])
    return Baseline(seconds, int(failures.value), lookup_ms)


def lookup_time(base: str, reference: str, rounds: int = 5) -> float:
    """Milliseconds of one GET /v3/payments?externalReference= (what regua's client asks before each create)."""
    headers = {"access_token": API_KEY}
    with httpx.Client(timeout=60) as client:
        started = time.perf_counter()
        for _ in range(rounds):
            client.get(f"{base}/v3/payments", params={"externalReference": reference}, headers=headers)
        return (time.perf_counter() - started) / rounds * 1000


# -- the run ---------------------------------------------------------------------------------------------


@dataclass
class Run:
    seconds: float = 0.0
    tick_seconds: float = 0.0
    finished: bool = False
    phases: dict[str, float] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)
    last: dict[str, int] = field(default_factory=dict)
    mails: tuple[int, int, int] = (0, 0, 0)
    database: dict[str, int] = field(default_factory=dict)
    """What PostgreSQL counted for the bench's database during the run (transactions, rows written)."""


DATABASE_COUNTS = (
    "SELECT xact_commit + xact_rollback AS transactions, tup_inserted AS inserted, tup_updated AS updated, "
    "tup_deleted AS deleted, tup_returned + tup_fetched AS read FROM pg_stat_database WHERE datname = :name"
)


STATEMENTS = (
    "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid "
    "WHERE d.datname = current_database() AND s.query NOT LIKE '%pg_stat_%'"
)
BUSIEST = (
    "SELECT calls, rows, round(total_exec_time) AS ms, left(regexp_replace(query, '\\s+', ' ', 'g'), 110) AS query "
    "FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = current_database() "
    "AND s.query NOT LIKE '%pg_stat_%' ORDER BY total_exec_time DESC LIMIT 12"
)


def database_counts(engine: Engine) -> dict[str, int]:
    """PostgreSQL's own counters of this database (every session's, flushed within a second of their work), and
    its statements when the server loads pg_stat_statements (`shared_preload_libraries`)."""
    with engine.connect() as connection:
        name = connection.exec_driver_sql("SELECT current_database()").scalar_one()
        row = connection.execute(text(DATABASE_COUNTS), {"name": name}).mappings().one()
        counts = {key: int(value) for key, value in row.items()}
        if statements_counted(connection):
            counts["statements"] = int(connection.execute(text(STATEMENTS)).scalar_one())
    return counts


def statements_counted(connection: Any) -> bool:
    loaded = connection.exec_driver_sql("SHOW shared_preload_libraries").scalar_one()
    if "pg_stat_statements" not in loaded:
        return False
    connection.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    connection.commit()
    return True


def busiest_statements(engine: Engine) -> list[Any]:
    """The statements PostgreSQL spent the most time on in this database (empty without pg_stat_statements)."""
    with engine.connect() as connection:
        return list(connection.execute(text(BUSIEST))) if statements_counted(connection) else []


def jobs_done(queue: redis.Redis) -> int:
    """Messages the workers took off the broker (every actor's, processed or failed: `workers.stats`)."""
    return sum(int(value) for value in queue.hgetall("regua:jobs:total").values())


def workers_ready(log: Path, processes: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log.read_text(errors="replace").count("Worker process is ready for action") >= processes:
            return
        time.sleep(0.2)
    raise SystemExit(f"the worker processes did not start: see {log}")


def run_day1(
    count: int,
    env: dict[str, str],
    engine: Engine,
    sink: Sink,
    pids: dict[str, int],
    sim: str,
    deadline_s: float,
    logs: Path,
) -> Run:
    run = Run()
    before = {name: sum(cpu_seconds(p) for p in tree(pid)) for name, pid in pids.items()}
    before |= {f"{server} (shared server)": server_cpu(server) for server in SERVERS}
    with engine.connect() as connection:
        if statements_counted(connection):
            connection.exec_driver_sql("SELECT pg_stat_statements_reset()")
    counted = database_counts(engine)
    started = time.perf_counter()
    # Files, not pipes: the tick logs as it goes, and a pipe nobody reads until it ends would stop it.
    with (logs / "tick.json").open("wb") as out, (logs / "tick.log").open("wb") as err:
        tick = subprocess.Popen([sys.executable, "-m", "regua.cli", "tick", "--json"], env=env, stdout=out, stderr=err)
    tick_cpu = 0.0
    next_report = REPORT_S
    wanted = {"paid": count, "confirmed": count, "mailed": count, "settled": count}
    state: dict[str, int] = {}
    while True:
        time.sleep(1)
        elapsed = time.perf_counter() - started
        if tick.poll() is not None and not run.tick_seconds:
            run.tick_seconds = elapsed
            if tick.returncode != 0:
                raise SystemExit(f"regua tick failed: see {logs / 'tick.log'}")
            print(f"  {elapsed:6.1f} s  tick done: {(logs / 'tick.json').read_text().strip()}", flush=True)
        elif tick.poll() is None:
            tick_cpu = cpu_seconds(tick.pid)
        run.mails = sink.counts()
        if run.mails[1] >= count and "every email received" not in run.phases:
            run.phases["every email received"] = elapsed
        # The books are counted every REPORT_S seconds, and every second once the sink has every email:
        # counting 100,000 rows every second would load the server the run is measuring.
        report = elapsed >= next_report or elapsed > deadline_s
        if not (report or run.mails[1] >= count):
            continue
        run.last = progress(engine)
        state = dict(run.last, sink=run.mails[1])
        for name, reached in (
            ("every charge confirmed", state["confirmed"] >= count),
            ("every invoice paid", state["paid"] >= count),
            ("every webhook processed", state["settled"] >= count),
        ):
            if reached and name not in run.phases:
                run.phases[name] = elapsed
        done = bool(run.tick_seconds) and all(state[key] >= n for key, n in wanted.items())
        if done or report:
            lookup = lookup_time(sim, "chg_probe", rounds=1)
            print(
                f"  {elapsed:6.1f} s  invoices {state['issued']:,} issued, {state['paid']:,} paid; "
                f"{state['confirmed']:,} charges confirmed; {state['sink']:,} emails; "
                f"webhooks {state['events']:,} stored, {state['settled']:,} processed; "
                f"simulator lookup {lookup:.0f} ms",
                flush=True,
            )
            next_report = elapsed + REPORT_S
        if done:
            run.seconds, run.finished = elapsed, True
            break
        if elapsed > deadline_s:
            run.seconds = elapsed
            print(f"  stopped at the deadline ({deadline_s:.0f} s)", flush=True)
            break
    if tick.poll() is None:
        tick.terminate()
        tick.wait()
    run.cpu = {name: sum(cpu_seconds(p) for p in tree(pid)) - before[name] for name, pid in pids.items()}
    run.cpu["regua tick"] = tick_cpu
    time.sleep(1.5)  # the last sessions' counters reach pg_stat_database
    run.database = {key: value - counted[key] for key, value in database_counts(engine).items()}
    run.cpu |= {
        f"{server} (shared server)": server_cpu(server) - before[f"{server} (shared server)"] for server in SERVERS
    }
    return run


def verify(count: int, engine: Engine, sink: Sink, sim: str, env: dict[str, str]) -> list[str]:
    """What must be true after the run; each line that is not is returned."""
    problems: list[str] = []
    with engine.connect() as connection:
        books = dict(
            connection.execute(
                text(
                    """
                    SELECT (SELECT count(*) FROM invoices) AS invoices,
                           (SELECT count(*) FROM invoices WHERE status = 'paid') AS paid,
                           (SELECT count(*) FROM charges) AS charges,
                           (SELECT count(*) FROM charges WHERE status = 'confirmed') AS confirmed,
                           (SELECT count(*) FROM payments WHERE status = 'confirmed') AS payments,
                           (SELECT count(*) FROM webhook_events) AS events,
                           (SELECT count(*) FROM webhook_events
                             WHERE status IN ('processed', 'ignored', 'unmatched')) AS settled
                    """
                )
            )
            .mappings()
            .one()
        )
        charge_ids = set(connection.execute(text("SELECT id FROM charges")).scalars())
        notifications = Counter(
            {
                (kind, status): n
                for kind, status, n in connection.execute(
                    text("SELECT kind, status, count(*) FROM notifications GROUP BY kind, status")
                )
            }
        )
    print(f"  books: {books}")
    print(f"  notifications: {dict(sorted(notifications.items()))}")
    for name in ("invoices", "paid", "charges", "confirmed", "payments", "events", "settled"):
        if books[name] != count:
            problems.append(f"{name}: {books[name]:,}, not {count:,}")
    if notifications[("payment_confirmed", "sent")] != count:
        problems.append(f"payment_confirmed notifications sent: {notifications[('payment_confirmed', 'sent')]:,}")

    total, confirmed, invoices = sink.counts()
    print(f"  sink: {total:,} emails, {confirmed:,} payment_confirmed, for {invoices:,} distinct invoices")
    if not total == confirmed == invoices == count:
        problems.append(f"sink: {total:,} emails, {confirmed:,} payment_confirmed, {invoices:,} invoices")

    state = httpx.get(f"{sim}/sim/state", timeout=300).json()
    references = Counter(payment["externalReference"] for payment in state["payments"])
    statuses = Counter(payment["status"] for payment in state["payments"])
    deliveries = Counter(delivery["status"] for delivery in state["webhooks"])
    print(
        f"  simulator: {len(state['payments']):,} payments {dict(statuses)}, "
        f"{len(references):,} externalReferences, webhooks {dict(deliveries)}"
    )
    if len(state["payments"]) != count or len(references) != count or set(references) != charge_ids:
        problems.append("the simulator does not hold exactly one payment per charge")
    if statuses != Counter({"CONFIRMED": count}):
        problems.append(f"simulator payment statuses: {dict(statuses)}")
    if deliveries != Counter({"delivered": count}):
        problems.append(f"simulator webhook deliveries: {dict(deliveries)}")

    started = time.perf_counter()
    check = subprocess.run([sys.executable, "-m", "regua.cli", "check"], env=env, capture_output=True, text=True)
    print(f"  regua check: exit {check.returncode} in {time.perf_counter() - started:.1f} s")
    if check.returncode != 0:
        problems.append(f"regua check exited {check.returncode}: {(check.stdout + check.stderr)[-1500:]}")
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscriptions", type=int, default=100_000)
    parser.add_argument("--threads", type=int, default=8, help="threads per worker process (regua's default 8)")
    parser.add_argument("--deadline", type=float, default=1800, help="give up after this many seconds")
    parser.add_argument("--keep-logs", action="store_true", help="keep the processes' logs (kept anyway on failure)")
    args = parser.parse_args()
    n, threads = args.subscriptions, args.threads

    database = f"regua_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(make_url(POSTGRES).set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{database}"'))
    database_url = make_url(POSTGRES).set(database=database).render_as_string(hide_password=False)
    engine = create_engine(make_url(database_url).set(drivername="postgresql+psycopg"))
    queue = redis.Redis.from_url(REDIS)
    logs = Path(os.environ.get("TMPDIR", "/tmp")) / f"regua-bench-{database}"
    logs.mkdir()
    running: list[subprocess.Popen[bytes]] = []
    problems: list[str] = ["did not finish"]
    try:
        upgrade(database_url)
        loading = time.perf_counter()
        populate(engine, n, contacts=True)
        print(f"{n:,} card_auto_debit subscriptions bulk-loaded in {time.perf_counter() - loading:.1f} s (not timed)")
        queue.flushdb()
        env = {key: value for key, value in os.environ.items() if not key.startswith("REGUA_")}
        env |= {
            "REGUA_ENV": "test",
            "REGUA_NOW": NOW,
            "REGUA_DATABASE_URL": database_url,
            "REGUA_ASAAS_API_KEY": API_KEY,
            "REGUA_ASAAS_WEBHOOK_TOKEN": WEBHOOK_TOKEN,
            "REGUA_GATEWAY_MAX_RPS": "100000",  # the bench measures regua, not the pace kept for a real gateway
        }

        print(f"baseline: {n:,} card payments at a bare simulator, {PROCESSES} processes x {threads} threads ...")
        bare = baseline(n, threads, env, logs)
        print(
            f"  {bare.seconds:.1f} s, {n / bare.seconds:,.0f} payments/s ({bare.failed} failed); "
            f"then one lookup by externalReference among {n:,}: {bare.lookup_ms:.1f} ms",
            flush=True,
        )

        with smtp_sink() as (sink, sink_pid):
            port, sim_port = free_port(), free_port()
            base, sim = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{sim_port}"
            env |= {
                "REGUA_BROKER_URL": REDIS,
                "REGUA_ASAAS_API_URL": sim,
                "REGUA_SMTP_URL": f"smtp://127.0.0.1:{sink.port}",
                "REGUA_MAIL_FROM": "Financeiro <financeiro@regua.example>",
            }
            webhook_url = f"{base}/webhooks/asaas"
            simulator = regua(
                "gateway-sim", ["gateway-sim", "--port", str(sim_port), "--webhook-url", webhook_url], env, logs
            )
            running.append(simulator)
            serve = regua("serve", ["serve", "--port", str(port)], env, logs)
            running.append(serve)
            worker_args = ["worker", "--processes", str(PROCESSES), "--threads", str(threads)]
            worker = regua("worker", worker_args, env, logs)
            running.append(worker)
            wait_up(f"{sim}/sim/state", timeout=60)
            wait_up(f"{base}/readyz", timeout=60)
            workers_ready(logs / "worker.log", PROCESSES)
            pids = {"gateway-sim": simulator.pid, "regua serve": serve.pid, "regua worker": worker.pid}
            pids["smtp sink"] = sink_pid
            print(
                f"day 1 at {NOW}: `regua tick`, then {PROCESSES} worker processes x {threads} threads ...", flush=True
            )
            load_before = os.getloadavg()
            result = run_day1(n, env, engine, sink, pids, sim, args.deadline, logs)
            messages = jobs_done(queue)
            problems = verify(n, engine, sink, sim, env) if result.finished else [f"not done in {args.deadline:.0f} s"]

        print(f"\n$ python -m bench.day1_e2e --subscriptions {n} --threads {threads}")
        print(
            f"{n:,} card auto-debit subscriptions, day 1; {os.cpu_count()} cores; "
            f"load average {load_before[0]:.1f} before the run, {os.getloadavg()[0]:.1f} after\n"
        )
        print("| | seconds | per second |\n|---|---:|---:|")
        print(
            f"| baseline: {n:,} payments created at the bare simulator | {bare.seconds:.1f} | {n / bare.seconds:,.0f} |"
        )
        done = result.last.get("confirmed", 0)
        print(f"| day 1 end to end | {result.seconds:.1f} | {done / result.seconds:,.0f} |")
        print(f"|   `regua tick` (issue {n:,} invoices, queue the charges) | {result.tick_seconds:.1f} | |")
        for name, seconds in sorted(result.phases.items(), key=lambda item: item[1]):
            print(f"|   {name} | {seconds:.1f} | {n / seconds:,.0f} |")
        print(
            f"\nemails per second {result.mails[1] / result.seconds:,.0f}; regua's charges per second "
            f"{done / result.seconds:,.0f} = {done / result.seconds / (n / bare.seconds):.2f} of the bare simulator's; "
            f"one simulator lookup among {n:,} payments {bare.lookup_ms:.1f} ms"
        )
        print("\n| process | CPU seconds in the run | ms per charge |\n|---|---:|---:|")
        for name, seconds in sorted(result.cpu.items(), key=lambda item: -item[1]):
            print(f"| {name} | {seconds:.1f} | {seconds / max(done, 1) * 1000:.1f} |")
        if result.database:
            per = {key: value / max(done, 1) for key, value in result.database.items()}
            statements = f"{per['statements']:.1f} statements in " if "statements" in per else ""
            print(
                f"\nPostgreSQL per charge (the tick, the workers, the intake, every session of the run): "
                f"{statements}{per['transactions']:.1f} transactions, {per['inserted']:.1f} rows inserted, "
                f"{per['updated']:.1f} updated, {per['deleted']:.1f} deleted, {per['read']:.0f} read"
            )
            print(f"broker messages per charge (every actor's, taken off the queues): {messages / max(done, 1):.2f}")
            busiest = busiest_statements(engine)
            if busiest:
                print("\n| calls | rows | ms | statement (the busiest in PostgreSQL's time) |\n|---:|---:|---:|---|")
                for row in busiest:
                    print(f"| {row.calls:,} | {row.rows:,} | {row.ms:,} | `{row.query.replace('|', '/')}` |")
        rate = done / result.seconds
        if n >= TARGET_N and result.finished:
            verdict = "met" if result.seconds < TARGET_S else "MISSED"
            print(f"\ntarget, {TARGET_N:,} in under {TARGET_S / 60:.0f} minutes: {verdict}")
        else:
            print(
                f"\ntarget, {TARGET_N:,} in under {TARGET_S / 60:.0f} minutes ({TARGET_N / TARGET_S:.0f} charges/s): "
                f"at this run's rate {TARGET_N:,} would take {TARGET_N / max(rate, 0.001) / 60:.0f} minutes"
            )
    finally:
        stop(running)
        engine.dispose()
        queue.flushdb()
        queue.close()
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
        admin.dispose()
    if problems:
        print(f"logs: {logs}")
        raise SystemExit("FAILED:\n  " + "\n  ".join(problems))
    if not args.keep_logs:
        for log in logs.iterdir():
            log.unlink()
        logs.rmdir()


if __name__ == "__main__":
    main()
