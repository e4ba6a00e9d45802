"""docker-compose.yml puts PgBouncer in transaction pooling between regua and PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy.engine import make_url

COMPOSE = Path(__file__).resolve().parents[2] / "docker-compose.yml"
THROUGH_THE_POOLER = ("serve", "worker", "worker-email", "scheduler")


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    document = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    return dict(document["services"])


def test_pgbouncer_pools_transactions_in_front_of_postgres_once_it_is_healthy(services: dict[str, Any]) -> None:
    bouncer = services["pgbouncer"]
    assert bouncer["environment"]["POOL_MODE"] == "transaction"
    assert bouncer["environment"]["DB_HOST"] == "postgres"
    assert bouncer["environment"]["LISTEN_PORT"] == "6432"
    assert bouncer["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    assert bouncer["healthcheck"]["test"]


def test_every_long_running_regua_process_reaches_the_database_through_pgbouncer_with_the_flag(
    services: dict[str, Any],
) -> None:
    for name in THROUGH_THE_POOLER:
        url = make_url(services[name]["environment"]["REGUA_DATABASE_URL"].replace("${", "").replace("}", ""))
        assert (url.host, url.port, url.query.get("pgbouncer")) == ("pgbouncer", 6432, "true"), name
        assert services[name]["depends_on"]["pgbouncer"] == {"condition": "service_healthy"}, name


def test_migrations_go_straight_to_postgres(services: dict[str, Any]) -> None:
    url = services["migrate"]["environment"]["REGUA_DATABASE_URL"]
    assert "@postgres:5432/regua" in url
    assert "pgbouncer" not in url
