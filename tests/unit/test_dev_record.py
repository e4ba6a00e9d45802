"""A running `regua dev` records its addresses beside its database; other shells' commands aim at them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from regua.sandbox.dev import with_dev_defaults
from regua.sandbox.dev_record import forget_dev, record_dev, record_path, running_dev, with_running_dev
from regua.settings import Settings

DEV = "http://127.0.0.1:18555"


def settings_for(tmp_path: Path, **variables: str) -> Settings:
    environ = {"REGUA_DATABASE_URL": f"sqlite:///{tmp_path / 'regua.db'}", **variables}
    return with_dev_defaults(Settings.from_env(environ, env_file=None))


def test_the_commands_of_another_shell_aim_at_the_running_dev_s_app_simulator_and_sink(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    path = record_dev(settings, DEV, "smtp://127.0.0.1:2025")

    aimed = with_running_dev(settings)

    assert path == tmp_path / "regua.db.dev.json"
    assert (aimed.public_url, aimed.smtp_url) == (DEV, "smtp://127.0.0.1:2025")
    assert aimed.asaas_api_url == f"{DEV}/gateway-sim"
    assert settings.public_url == "http://127.0.0.1:8000"  # what they would have used


def test_an_explicit_public_url_or_smtp_url_wins_over_the_record(tmp_path: Path) -> None:
    record_dev(settings_for(tmp_path), DEV, "smtp://127.0.0.1:2025")

    told = with_running_dev(settings_for(tmp_path, REGUA_PUBLIC_URL="http://127.0.0.1:9000"))
    mail_told = with_running_dev(settings_for(tmp_path, REGUA_SMTP_URL="smtp://mail.example:25"))

    assert (told.public_url, told.asaas_api_url) == ("http://127.0.0.1:9000", "http://127.0.0.1:9000/gateway-sim")
    assert (mail_told.public_url, mail_told.smtp_url) == (DEV, "smtp://mail.example:25")


def test_a_real_asaas_key_keeps_its_gateway_while_the_app_is_the_dev_s(tmp_path: Path) -> None:
    record_dev(settings_for(tmp_path), DEV, "smtp://127.0.0.1:2025")

    aimed = with_running_dev(settings_for(tmp_path, REGUA_ASAAS_API_KEY="a-real-sandbox-key"))

    assert (aimed.public_url, aimed.asaas_api_url) == (DEV, "https://api-sandbox.asaas.com")


def test_a_record_whose_process_is_gone_is_ignored(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    record_dev(settings, DEV, "smtp://127.0.0.1:2025")
    path = record_path(settings.database_url)
    path.write_text(path.read_text().replace(f'"pid": {os.getpid()}', f'"pid": {int(gone.stdout)}'))

    assert running_dev(settings) is None
    assert with_running_dev(settings) == settings


def test_another_database_s_record_is_not_this_one_s(tmp_path: Path) -> None:
    pg = Settings.from_env({"REGUA_DATABASE_URL": "postgresql://regua:secret@db:5432/one"}, env_file=None)
    other = Settings.from_env({"REGUA_DATABASE_URL": "postgresql://regua:secret@db:5432/two"}, env_file=None)
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(tmp_path)
        record_dev(pg, DEV, "smtp://127.0.0.1:2025")
        assert running_dev(pg) is not None
        assert running_dev(other) is None
        assert "secret" not in (tmp_path / ".regua-dev.json").read_text()


def test_the_dev_process_removes_its_own_record_when_it_stops(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    record_dev(settings, DEV, "smtp://127.0.0.1:2025")

    forget_dev(settings)

    assert not record_path(settings.database_url).exists()
    assert with_running_dev(settings) == settings
