"""The `regua` command: serve, worker, scheduler, tick, migrate, dev, clock, trigger, demo, replay, check, refunds."""

from regua.cli.commands import main, parser
from regua.cli.common import CommandError, missing_sqlite_file, tick_once

__all__ = ["CommandError", "main", "missing_sqlite_file", "parser", "tick_once"]
