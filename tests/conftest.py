"""Shared fixtures: databases (SQLite and the real PostgreSQL), a runtime on a frozen clock, an API client."""

from __future__ import annotations

import base64
import logging
import os
import shutil
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from billing.clock import FrozenClock, parse_instant
from billing.models import Base
from regua.migrate import upgrade
from regua.runtime import Runtime, build_runtime
from regua.settings import Settings

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
POSTGRES_ADMIN_URL = os.environ.get("REGUA_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def _redis_databases() -> tuple[str, str]:
    """Two Redis databases of this test process's own, which its tests flush: 15 and 14 for a run in one
    process, 13 and 12 for pytest-xdist's second worker (gw1), and so on down."""
    url = os.environ.get("REGUA_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
    base, _, database = url.rpartition("/")
    worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
    first = int(database or 15) - 2 * worker
    if first < 1:
        raise RuntimeError(f"too many test workers for Redis's 16 databases below {database}")
    return f"{base}/{first}", f"{base}/{first - 1}"


REDIS_URL, SPARE_REDIS_URL = _redis_databases()


def service_missing(what: str, error: Exception) -> None:
    """In CI a missing service fails the test; on a laptop without it the test skips, saying why."""
    message = f"{what} is not reachable ({type(error).__name__}: {error})"
    if IN_CI:
        pytest.fail(f"{message}; CI must run these tests against the real service", pytrace=False)
    pytest.skip(f"{message}; start it to run this test")


def _pg_url(database: str) -> str:
    return make_url(POSTGRES_ADMIN_URL).set(database=database).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session, migrated to head, dropped at the end."""
    name = f"regua_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(
        make_url(POSTGRES_ADMIN_URL).set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT"
    )
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as error:
        admin.dispose()
        service_missing("PostgreSQL", error)
    url = _pg_url(name)
    upgrade(url)
    yield url
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(autouse=True)
def _logging_left_as_found() -> Iterator[None]:
    """`regua` commands run in-process set up the root logger on the stream of the moment: under
    `capsys`, one closed when the test ends, which any later log line (another test's thread) hits."""
    root = logging.getLogger()
    before = set(root.handlers)
    yield
    for handler in list(root.handlers):
        if handler not in before and type(handler) is logging.StreamHandler:
            root.removeHandler(handler)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite") / "template.db"
    upgrade(f"sqlite:///{path}")
    return path


def _truncate_all(url: str) -> None:
    engine = create_engine(make_url(url).set(drivername="postgresql+psycopg"))
    tables = ", ".join(f'"{table.name}"' for table in Base.metadata.sorted_tables)
    with engine.begin() as connection:
        connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The same test on the embedded default and on real PostgreSQL, each starting empty."""
    if request.param == "sqlite":
        path = tmp_path / "regua.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite:///{path}"
    url: str = request.getfixturevalue("postgres_database")
    _truncate_all(url)
    return url


@pytest.fixture
def start() -> datetime:
    """Where the frozen clock starts: tests move it with clock.set()."""
    return parse_instant("2026-12-01T00:05:00-03:00")


@pytest.fixture
def clock(start: datetime) -> FrozenClock:
    return FrozenClock(start)


STANDARD_SECRET = "whsec_" + base64.b64encode(b"regua-test-secret-0123456789abcd").decode()
ASAAS_TOKEN = "asaas-test-token"
PIX_SECRET = "pix-test-hmac"
ASAAS_API_URL = "https://asaas.test"


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(
        env="test",
        database_url=database_url,
        api_token="test-token",
        standard_webhook_secrets=(STANDARD_SECRET,),
        asaas_webhook_token=ASAAS_TOKEN,
        asaas_api_url=ASAAS_API_URL,
        asaas_api_key="asaas-test-key",
        pix_webhook_secret=PIX_SECRET,
        smtp_url="smtp://127.0.0.1:1",  # closed: a test that mails says so with its own sink
    )


@pytest.fixture
def runtime(settings: Settings, clock: FrozenClock) -> Iterator[Runtime]:
    runtime = build_runtime(settings, clock=clock)
    yield runtime
    runtime.close()
