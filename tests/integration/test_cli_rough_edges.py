"""The command line's rough edges as a new user met them in the sandbox: each answer says what is true.

Commands run through the real entry point, `regua.cli.main`, in this process (or as a process where
what is checked is the process's own output), on a migrated SQLite file holding one boleto customer.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from billing.shared_clock import stored_instant
from regua.cli import main
from regua.runtime import build_runtime
from regua.sandbox.simulator import create_simulator_app
from regua.settings import Settings
from tests.conftest import ASAAS_TOKEN
from tests.integration.test_charging_simulator import bound_socket, serve
from tests.integration.test_cli import START, database_url, migrated, regua  # noqa: F401  (fixtures: an SQLite file)

REPOSITORY = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Ran:
    code: int
    out: str
    err: str


Regua = Callable[..., Ran]


@pytest.fixture
def cli(
    migrated: str,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> Regua:
    """`regua ARGS` in this process, on the migrated file, with no REGUA_* or `.env` from outside."""
    for name in [name for name in os.environ if name.startswith("REGUA_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("REGUA_ENV", "test")
    monkeypatch.setenv("REGUA_DATABASE_URL", migrated)
    monkeypatch.chdir(tmp_path)

    def run(*args: str) -> Ran:
        capsys.readouterr()
        try:
            code = main(list(args))
        except SystemExit as stopped:  # --help and argparse's own errors
            code = int(stopped.code or 0)
        captured = capsys.readouterr()
        return Ran(code, captured.out, captured.err)

    return run


def shared_clock(url: str) -> str | None:
    runtime = build_runtime(Settings(env="test", database_url=url))
    try:
        stored = runtime.read(stored_instant)
        return None if stored is None else runtime.calendar.local(stored).isoformat()
    finally:
        runtime.close()


def test_trigger_for_an_account_that_does_not_exist_says_so_and_sends_nothing(cli: Regua) -> None:
    ran = cli("trigger", "payment", "--account", "nope", "--url", "http://127.0.0.1:1")

    assert ran.code == 2
    assert "no account nope" in ran.err
    assert "subscription" not in ran.err
    assert ran.out == ""


def test_receipts_of_an_account_that_does_not_exist_exit_non_zero_naming_it(cli: Regua) -> None:
    missing = cli("receipts", "--account", "nope")
    known = cli("receipts", "--account", "padaria-central")

    assert (missing.code, missing.out) == (2, "")
    assert "no account nope" in missing.err
    assert (known.code, known.out) == (0, "receipts 0\n")


@pytest.mark.parametrize("words", [("-1d",), ("--json", "-1d"), ("-1d", "--json"), ("--", "-36h")], ids=" ".join)
def test_advancing_the_clock_by_a_negative_duration_says_durations_go_forward_only(
    cli: Regua,
    migrated: str,  # noqa: F811
    words: tuple[str, ...],
) -> None:
    assert cli("clock", "set", START).code == 0
    ran = cli("clock", "advance", *words)

    assert ran.code == 2
    assert "durations are forward only" in ran.err
    assert "usage:" not in ran.err, "not argparse's answer"
    assert ran.out == ""
    assert shared_clock(migrated) == START, "the clock did not move"


def test_setting_the_clock_with_json_prints_one_object_with_the_counts_of_its_pass(cli: Regua) -> None:
    ran = cli("clock", "set", "2026-12-01T00:05", "--json")

    assert ran.code == 0
    moved = json.loads(ran.out)  # the whole output is one JSON object
    assert moved["to"] == START
    [only] = moved["passes"]
    assert only["at"] == START
    assert (only["counts"]["invoices_issued"], only["counts"]["blocks_applied"]) == (1, 0)


def test_advancing_the_clock_with_json_prints_one_object_with_a_pass_per_midnight_crossed(cli: Regua) -> None:
    assert cli("clock", "set", START).code == 0
    ran = cli("clock", "advance", "6d", "--json")

    assert ran.code == 0
    moved = json.loads(ran.out)
    assert (moved["from"], moved["to"]) == (START, "2026-12-07T00:05:00-03:00")
    midnights = [f"2026-12-{day:02d}T00:00:00-03:00" for day in range(2, 8)]
    assert [each["at"] for each in moved["passes"]] == [*midnights, moved["to"]]
    blocked = [each["at"] for each in moved["passes"] if each["counts"]["blocks_applied"]]
    assert blocked == ["2026-12-07T00:00:00-03:00"], "the boleto unpaid by day 6 blocks from 00:00 of day 7"
    assert cli("clock", "advance", "1d", "--json").out.count("\n") == 1


def test_moving_the_clock_back_with_json_keeps_the_notice_off_the_json(cli: Regua) -> None:
    assert cli("clock", "set", "2026-12-03T00:05").code == 0
    ran = cli("clock", "set", START, "--json")

    assert json.loads(ran.out)["from"] == "2026-12-03T00:05:00-03:00"
    assert "the clock moves back" in ran.err


def test_the_clock_command_prints_no_alembic_or_httpx_lines_among_its_own(migrated: str) -> None:  # noqa: F811
    sock = bound_socket()
    simulator = create_simulator_app("", ASAAS_TOKEN)
    env = {"REGUA_ASAAS_API_URL": f"http://127.0.0.1:{sock.getsockname()[1]}", "REGUA_ASAAS_API_KEY": "k"}
    with serve(simulator, sock):  # the pass creates the month's boleto there: HTTP requests httpx would log
        moved = regua(migrated, "clock", "set", "2026-12-01T00:05", env=env)
        shown = regua(migrated, "clock", "show", env=env)

    assert (moved.returncode, shown.returncode) == (0, 0)
    assert f"{START}  invoices_issued 1" in moved.stdout
    assert "manual_charges_started 1" in moved.stdout
    for output in (moved.stdout, moved.stderr, shown.stdout, shown.stderr):
        assert "alembic" not in output
        assert "httpx" not in output


def test_dev_help_shows_the_default_port_and_address(cli: Regua) -> None:
    ran = cli("dev", "--help")

    assert ran.code == 0
    assert "(default: 8000)" in ran.out
    assert "(default: 127.0.0.1)" in ran.out


@pytest.mark.parametrize(("given", "port"), [((), "8000"), (("PORT=8010",), "8010")], ids=["default", "PORT=8010"])
def test_make_dev_passes_its_port_to_regua_dev(given: tuple[str, ...], port: str) -> None:
    environ = {name: value for name, value in os.environ.items() if name != "PORT"}
    planned = subprocess.run(
        ["make", "--dry-run", "dev", *given], cwd=REPOSITORY, env=environ, capture_output=True, text=True, check=True
    )

    [command] = [line for line in planned.stdout.splitlines() if "regua dev" in line]
    assert command.endswith(f"regua dev --port {port}")
