"""What every `regua` command shares: its error, its runtime on a migrated database, one inline pass."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from billing.tick import TickReport
from regua.assembly import worker_context
from regua.migrate import NotMigrated, ensure_migrated
from regua.runtime import Runtime, build_runtime
from regua.settings import Settings
from workers.tick import tick


class CommandError(Exception):
    """A command that cannot run; the message says why and what to do."""


def command_runtime(settings: Settings, *, migrated: bool = True) -> Runtime:
    """The runtime of a command, on a database that exists and, unless told otherwise, is migrated."""
    missing = missing_sqlite_file(settings.database_url)
    if missing is not None:
        raise CommandError(
            f"the database file {missing} does not exist (REGUA_DATABASE_URL={redacted(settings.database_url)}): "
            "run `regua migrate` to create it, or point REGUA_DATABASE_URL at the right file"
        )
    runtime = build_runtime(settings)
    if migrated:
        try:
            ensure_migrated(runtime.engine)
        except NotMigrated as error:
            runtime.close()
            raise CommandError(str(error)) from None
    return runtime


def missing_sqlite_file(url: str) -> Path | None:
    """The file an SQLite URL names when it does not exist: opening it would create an empty database.

    Only `migrate` and `dev` create one; every other command says so and leaves the disk alone.
    """
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    if parsed.database.startswith("file:") or parsed.query.get("mode") == "memory":
        return None
    path = Path(parsed.database)
    return None if path.exists() else path.resolve()


def tick_once(runtime: Runtime, now: datetime | None = None) -> TickReport:
    """One pass on this runtime, its follow-up work done inline (no broker needed)."""
    return tick(worker_context(runtime), None, now)


LIBRARY_CHATTER = ("alembic", "httpx", "httpcore")
"""Loggers whose INFO lines (a migration check's context, each HTTP request) say nothing to a person
reading a command's own output."""


@contextmanager
def library_chatter_quieted() -> Iterator[None]:
    """Only warnings from those libraries while a command that prints what it does runs; their levels
    are given back after (a command run in-process leaves its host's logging as it found it)."""
    loggers = [logging.getLogger(name) for name in LIBRARY_CHATTER]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def redacted(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)
