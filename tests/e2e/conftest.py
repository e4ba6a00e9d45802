"""regua's own processes, started as a user starts them, on real PostgreSQL and Redis."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import closing, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx
import pytest
import redis
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from regua.migrate import upgrade
from tests.conftest import ASAAS_TOKEN, PIX_SECRET, POSTGRES_ADMIN_URL, REDIS_URL, STANDARD_SECRET, service_missing

pytestmark = pytest.mark.e2e


def free_port() -> int:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Processes:
    env: dict[str, str]
    logs: Path
    running: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)
    files: list[IO[bytes]] = field(default_factory=list)
    cwd: Path | None = None
    """Where the commands run (a directory without a `.env`, for a first run as a new user's)."""

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        log = (self.logs / f"{name}.log").open("wb")
        self.files.append(log)
        process = subprocess.Popen(
            [sys.executable, "-m", "regua.cli", *args],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.cwd,
            start_new_session=True,  # a group of its own: stopping it stops the worker processes it forked
        )
        self.running.append((name, process))
        return process

    def run(self, *args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "regua.cli", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
            cwd=self.cwd,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    def wait_http(self, url: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, process in self.running:
                if process.poll() is not None:
                    raise AssertionError(f"{name} exited with {process.returncode}:\n{self.log(name)}")
            try:
                if httpx.get(url, timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"{url} never answered")

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        """SIGTERM to each process group, SIGKILL to the groups still there 15 s later: a worker's forked
        processes go with it even when it was killed (they would outlive the test otherwise)."""
        for _name, process in reversed(self.running):
            _signal_group(process, signal.SIGTERM)
        for _name, process in reversed(self.running):
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            _signal_group(process, signal.SIGKILL)
        for log in self.files:
            log.close()


def _signal_group(process: subprocess.Popen[bytes], signal_number: int) -> None:
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal_number)


@pytest.fixture
def e2e_database() -> Iterator[str]:
    name = f"regua_e2e_{uuid.uuid4().hex[:10]}"
    admin = create_engine(
        make_url(POSTGRES_ADMIN_URL).set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT"
    )
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as error:
        admin.dispose()
        service_missing("PostgreSQL", error)
    url = make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    upgrade(url)
    yield url
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def redis_url() -> str:
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.flushdb()
    except redis.RedisError as error:
        service_missing("Redis", error)
    finally:
        client.close()
    return REDIS_URL


@pytest.fixture
def processes(e2e_database: str, redis_url: str, tmp_path: Path) -> Iterator[Processes]:
    env = {
        **os.environ,
        "REGUA_ENV": "test",
        "REGUA_DATABASE_URL": e2e_database,
        "REGUA_BROKER_URL": redis_url,
        "REGUA_API_TOKEN": "e2e-token",
        "REGUA_STANDARD_WEBHOOK_SECRETS": STANDARD_SECRET,
        "REGUA_ASAAS_WEBHOOK_TOKEN": ASAAS_TOKEN,
        "REGUA_PIX_WEBHOOK_SECRET": PIX_SECRET,
    }
    env.pop("REGUA_NOW", None)
    running = Processes(env=env, logs=tmp_path)
    yield running
    running.stop()
    # Whatever the test did through the real processes, the books it leaves add up (`regua check`).
    check = subprocess.run(
        [sys.executable, "-m", "regua.cli", "check"], env=env, capture_output=True, text=True, timeout=120
    )
    assert check.returncode == 0, check.stdout + check.stderr
