"""Webhooks accepted per second by one `regua serve` process, against a bare Starlette endpoint.

Both run under the same uvicorn, loaded by the same wrk script (64 connections, ~1 KiB Asaas
bodies, each with a unique event id), one after the other in the same run. regua's figure is
durable: every 200 is a committed row in PostgreSQL and a job queued on Redis; the script checks
that the rows stored equal the requests answered.

    python -m bench.webhooks [--seconds 10] [--connections 64]

Needs wrk (Debian's package), PostgreSQL and Redis as in the README.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import uuid
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import httpx
import redis
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from regua.migrate import upgrade

HERE = Path(__file__).resolve().parent
POSTGRES = os.environ.get("REGUA_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS = os.environ.get("REGUA_BENCH_REDIS_URL", "redis://127.0.0.1:6379/13")
TOKEN = "bench-token"


@dataclass
class Result:
    name: str
    requests: int
    rate: float
    p50_ms: float
    p99_ms: float
    errors: int


def free_port() -> int:
    with closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_up(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"{url} never came up")


def millis(text_value: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text_value).groups()  # type: ignore[union-attr]
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def wrk(name: str, url: str, seconds: int, connections: int) -> Result:
    command = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(HERE / "asaas.lua"), url]
    env = {**os.environ, "ASAAS_TOKEN": TOKEN, "RUN_ID": uuid.uuid4().hex[:8]}
    output = subprocess.run(command, capture_output=True, text=True, env=env).stdout
    try:
        rate = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
        total = int(re.search(r"(\d+) requests in", output).group(1))  # type: ignore[union-attr]
        p50 = millis(re.search(r"^\s+50%\s+(\S+)\s*$", output, re.M).group(1))  # type: ignore[union-attr]
        p99 = millis(re.search(r"^\s+99%\s+(\S+)\s*$", output, re.M).group(1))  # type: ignore[union-attr]
    except AttributeError:
        raise SystemExit(f"could not read wrk's output:\n{output}") from None
    errors_match = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return Result(name, total, rate, p50, p99, int(errors_match.group(1)) if errors_match else 0)


def serve(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed: apt-get install wrk")

    database = f"regua_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(make_url(POSTGRES).set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{database}"'))
    database_url = make_url(POSTGRES).set(database=database).render_as_string(hide_password=False)
    upgrade(database_url)
    redis.Redis.from_url(REDIS).flushdb()
    results = []
    try:
        port = free_port()
        bare = serve(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "bench.bare_app:app",
                "--port",
                str(port),
                "--log-level",
                "warning",
                "--no-access-log",
            ],
            dict(os.environ),
        )
        try:
            wait_up(f"http://127.0.0.1:{port}/")
            wrk("warm-up", f"http://127.0.0.1:{port}/webhooks/asaas", 2, args.connections)
            results.append(
                wrk("bare Starlette", f"http://127.0.0.1:{port}/webhooks/asaas", args.seconds, args.connections)
            )
        finally:
            bare.terminate()
            bare.wait()

        port = free_port()
        env = {
            **os.environ,
            "REGUA_DATABASE_URL": database_url,
            "REGUA_BROKER_URL": REDIS,
            "REGUA_ASAAS_WEBHOOK_TOKEN": TOKEN,
            "REGUA_ENV": "test",
        }
        regua = serve([sys.executable, "-m", "regua.cli", "serve", "--port", str(port)], env)
        try:
            wait_up(f"http://127.0.0.1:{port}/healthz")
            wrk("warm-up", f"http://127.0.0.1:{port}/webhooks/asaas", 2, args.connections)
            engine = create_engine(make_url(database_url).set(drivername="postgresql+psycopg"))
            with engine.connect() as connection:
                before = connection.execute(text("SELECT count(*) FROM webhook_events")).scalar_one()
            result = wrk("regua serve", f"http://127.0.0.1:{port}/webhooks/asaas", args.seconds, args.connections)
            results.append(result)
            time.sleep(1)
            with engine.connect() as connection:
                stored = connection.execute(text("SELECT count(*) FROM webhook_events")).scalar_one() - before
            engine.dispose()
            messages = redis.Redis.from_url(REDIS).hvals("dramatiq:webhooks.msgs")
            queued_ids = [event_id for raw in messages for event_id in json.loads(raw)["args"][0]]
        finally:
            regua.terminate()
            regua.wait()
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
        admin.dispose()

    bare_result, regua_result = results
    print(f"{'':16} {'requests/s':>11} {'p50 ms':>8} {'p99 ms':>8} {'requests':>9} {'non-2xx':>8}")
    for r in results:
        print(f"{r.name:16} {r.rate:11.0f} {r.p50_ms:8.2f} {r.p99_ms:8.2f} {r.requests:9d} {r.errors:8d}")
    print(f"ratio regua / bare: {regua_result.rate / bare_result.rate:.2f}")
    answered = regua_result.requests - regua_result.errors
    print(f"durability: {answered} answered 200, {stored} rows stored")
    print(
        f"queued: {len(set(queued_ids))} distinct event ids ({len(queued_ids)} in all) in {len(messages)} job"
        f" messages on Redis, for the {before + stored} rows of the warm-up and the run"
    )
    if stored < answered:
        raise SystemExit("FAILED: fewer rows stored than requests answered 200")


if __name__ == "__main__":
    main()
