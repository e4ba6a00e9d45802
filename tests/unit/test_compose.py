"""docker-compose.yml and the Dockerfile: the services of the design, their health and order, known settings."""

from __future__ import annotations

import inspect
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from regua.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
REGUA_SERVICES = ("migrate", "serve", "worker", "worker-email", "scheduler")
# What `docker compose config` needs to interpolate the file: the secrets it refuses to start without.
SECRETS = {
    "POSTGRES_PASSWORD": "pg-secret",
    "REGUA_SECRET_KEY": "secret-key",
    "REGUA_API_TOKEN": "api-token",
    "REGUA_OPS_TOKEN": "ops-token",
    "REGUA_ASAAS_WEBHOOK_TOKEN": "asaas-token",
    "REGUA_ASAAS_API_KEY": "asaas-key",
}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(document, dict)
    return document


def known_settings() -> set[str]:
    """Every REGUA_* variable Settings.from_env reads."""
    return {f"REGUA_{name}" for name in re.findall(r'get\("([A-Z_]+)"', inspect.getsource(Settings.from_env))}


def test_compose_has_the_services_of_the_design(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"postgres", "pgbouncer", "redis", "mailpit", *REGUA_SERVICES}
    assert services["migrate"]["command"] == ["regua", "migrate"]
    assert services["migrate"]["restart"] == "no"
    assert services["serve"]["command"][:2] == ["regua", "serve"]
    assert services["scheduler"]["command"] == ["regua", "scheduler"]
    worker = services["worker"]["command"]
    assert worker[:2] == ["regua", "worker"]
    assert worker[worker.index("--queues") + 1 : worker.index("--queues") + 3] == ["webhooks", "charges"]
    email = services["worker-email"]["command"]
    assert email[email.index("--queues") + 1] == "email"
    assert email[email.index("--threads") + 1] == "32"
    assert "8025:8025" in services["mailpit"]["ports"]


def test_every_long_running_service_waits_for_healthy_dependencies_and_migrations(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in ("postgres", "redis", "mailpit", "serve"):
        assert services[name]["healthcheck"]["test"], name
    assert services["migrate"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    for name in ("serve", "worker", "worker-email", "scheduler"):
        depends = services[name]["depends_on"]
        assert depends["postgres"] == {"condition": "service_healthy"}, name
        assert depends["redis"] == {"condition": "service_healthy"}, name
        assert depends["migrate"] == {"condition": "service_completed_successfully"}, name
    assert services["worker-email"]["depends_on"]["mailpit"] == {"condition": "service_healthy"}
    for name, service in services.items():
        for dependency, rule in service.get("depends_on", {}).items():
            if rule["condition"] == "service_healthy":
                assert "healthcheck" in services[dependency], f"{name} waits for {dependency}, which has no healthcheck"


def test_regua_services_run_in_production_with_only_known_settings(compose: dict[str, Any]) -> None:
    known = known_settings()
    assert {"REGUA_DATABASE_URL", "REGUA_BROKER_URL", "REGUA_MAX_BODY_BYTES"} <= known
    for name in REGUA_SERVICES:
        environment = compose["services"][name]["environment"]
        assert environment["REGUA_ENV"] == "production", name
        assert environment["REGUA_DATABASE_URL"].startswith("postgresql://"), name
        assert environment["REGUA_BROKER_URL"].startswith("redis://redis:"), name
        unknown = {variable for variable in environment if variable.startswith("REGUA_")} - known
        assert unknown == set(), f"{name} sets settings regua does not read: {sorted(unknown)}"


def test_the_dockerfile_is_slim_python_non_root_and_installs_the_lockfile() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert re.search(r"^FROM python:3\.11-slim", dockerfile, re.MULTILINE)
    lock = dockerfile.index("--requirement requirements.lock")
    assert lock < dockerfile.index("pip install --no-deps")
    users = re.findall(r"^USER (\S+)", dockerfile, re.MULTILINE)
    assert users
    assert users[-1] not in ("root", "0")


def compose_command() -> list[str] | None:
    """`docker compose` where the plugin exists, else a standalone `docker-compose`, else nothing."""
    docker = shutil.which("docker")
    if docker is not None:
        plugin = subprocess.run([docker, "compose", "version"], capture_output=True, text=True, check=False)
        if plugin.returncode == 0:
            return [docker, "compose"]
    standalone = shutil.which("docker-compose")
    return [standalone] if standalone is not None else None


def test_docker_compose_config_accepts_the_file_and_names_a_missing_secret() -> None:
    command = compose_command()
    if command is None:
        pytest.skip("neither the docker compose plugin nor docker-compose is installed: the file is only parsed")
    config = [*command, "--file", str(COMPOSE), "config", "--quiet"]
    environment = {**os.environ, **SECRETS}
    result = subprocess.run(config, capture_output=True, text=True, env=environment, check=False)
    assert result.returncode == 0, result.stderr
    missing = subprocess.run(
        config, capture_output=True, text=True, env={**environment, "REGUA_API_TOKEN": ""}, check=False
    )
    assert missing.returncode != 0
    assert "REGUA_API_TOKEN" in missing.stderr
