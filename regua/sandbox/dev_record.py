"""Where a running `regua dev` listens, recorded beside its database for the commands of other shells.

`regua dev --port 18555` serves the simulated Asaas and catches mail on its own addresses; `regua clock`,
`regua tick` and `regua trigger` started in another shell run passes that charge at that simulator
and mail that sink. Unless REGUA_PUBLIC_URL is set explicitly, they read the addresses the running
dev recorded: in a file beside the SQLite database (`regua.db.dev.json`), or, on another database,
`.regua-dev.json` in the working directory, naming the database it is for. The dev process removes its
own when it stops on Ctrl-C; a record whose process is gone (killed) is ignored.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, replace
from pathlib import Path

from sqlalchemy.engine import make_url

from regua.sandbox.dev import SIMULATOR_PATH, simulated_gateway
from regua.settings import Settings

OTHER_DATABASES_RECORD = Path(".regua-dev.json")


@dataclass(frozen=True)
class DevAddresses:
    base_url: str
    smtp_url: str
    pid: int
    database: str
    """The database the dev process runs on, its password hidden."""


def record_path(database_url: str) -> Path:
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        return Path(f"{url.database}.dev.json")
    return OTHER_DATABASES_RECORD


def _database(database_url: str) -> str:
    return make_url(database_url).render_as_string(hide_password=True)


def record_dev(settings: Settings, base_url: str, smtp_url: str) -> Path:
    """Write this process's addresses (replacing any older record of the same database)."""
    path = record_path(settings.database_url)
    found = DevAddresses(base_url.rstrip("/"), smtp_url, os.getpid(), _database(settings.database_url))
    partial = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    partial.write_text(json.dumps(found.__dict__))
    partial.replace(path)
    return path


def forget_dev(settings: Settings) -> None:
    """Remove the record if it is this process's (another dev may have taken its place)."""
    path = record_path(settings.database_url)
    found = read_record(path)
    if found is not None and found.pid == os.getpid():
        path.unlink(missing_ok=True)


def read_record(path: Path) -> DevAddresses | None:
    try:
        data = json.loads(path.read_text())
        return DevAddresses(str(data["base_url"]), str(data["smtp_url"]), int(data["pid"]), str(data["database"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def running_dev(settings: Settings) -> DevAddresses | None:
    """The running dev of these settings' database, if one recorded its addresses and is still alive."""
    found = read_record(record_path(settings.database_url))
    if found is None or found.database != _database(settings.database_url) or not _alive(found.pid):
        return None
    return found


def with_running_dev(settings: Settings) -> Settings:
    """These settings aimed at the running dev's app, simulator and mail sink, unless REGUA_PUBLIC_URL
    (or REGUA_SMTP_URL, for mail) says where to go, or no dev is running."""
    if settings.production or "PUBLIC_URL" in settings.explicit:
        return settings
    found = running_dev(settings)
    if found is None:
        return settings
    aimed = replace(settings, public_url=found.base_url)
    if "SMTP_URL" not in settings.explicit:
        aimed = replace(aimed, smtp_url=found.smtp_url)
    if simulated_gateway(settings):
        aimed = replace(aimed, asaas_api_url=f"{found.base_url}{SIMULATOR_PATH}")
    return aimed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process, alive
    return True
