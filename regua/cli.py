"""The `regua` command: serve, tick, scheduler, migrate, dev."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import threading
from collections.abc import Callable, Sequence
from datetime import datetime

from billing.clock import parse_instant
from billing.tick import TickReport, run_tick
from regua.migrate import NotMigrated, ensure_migrated, upgrade
from regua.runtime import Runtime, build_runtime
from regua.settings import ConfigError, Settings

log = logging.getLogger("regua")


class CommandError(Exception):
    """A command that cannot run; the message says why and what to do."""


def _runtime(settings: Settings, *, migrated: bool = True) -> Runtime:
    runtime = build_runtime(settings)
    if migrated:
        try:
            ensure_migrated(runtime.engine)
        except NotMigrated as error:
            runtime.close()
            raise CommandError(str(error)) from None
    return runtime


def tick_once(runtime: Runtime, now: datetime | None = None) -> TickReport:
    return run_tick(runtime.sessions, now or runtime.clock.now(), runtime.calendar, runtime.clock)


def cmd_migrate(settings: Settings, _args: argparse.Namespace) -> int:
    upgrade(settings.database_url)
    print(f"migrated {_redacted(settings.database_url)} to the latest revision")
    return 0


def cmd_tick(settings: Settings, args: argparse.Namespace) -> int:
    now = None
    if args.now:
        if settings.production:
            raise CommandError("--now moves the clock: it is refused in production")
        try:
            now = parse_instant(args.now)
        except ValueError as error:
            raise CommandError(f"--now: {error}") from None
    runtime = _runtime(settings)
    try:
        report = tick_once(runtime, now)
    finally:
        runtime.close()
    if args.json:
        print(json.dumps(report.as_dict()))
    else:
        print("\n".join(report.lines()))
    return 0


def _scheduler_loop(runtime: Runtime, stop: threading.Event) -> None:
    """Tick every REGUA_TICK_SECONDS until stopped; a failed pass is logged and the next one retries."""
    while not stop.is_set():
        try:
            report = tick_once(runtime)
            log.info("tick %s", " ".join(report.lines()))
        except Exception:
            log.exception("tick failed; the next pass will catch up")
        stop.wait(runtime.settings.tick_seconds)


def cmd_scheduler(settings: Settings, _args: argparse.Namespace) -> int:
    runtime = _runtime(settings)
    stop = threading.Event()
    try:
        _scheduler_loop(runtime, stop)
    except KeyboardInterrupt:
        stop.set()
    finally:
        runtime.close()
    return 0


def _serve(runtime: Runtime, host: str, port: int) -> None:
    import uvicorn

    from regua.app import create_app

    uvicorn.run(create_app(runtime), host=host, port=port, log_level="info", access_log=False)


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    try:
        settings.require("serve")
    except ConfigError as error:
        raise CommandError(str(error)) from None
    _serve(_runtime(settings), args.host, args.port)
    return 0


def cmd_dev(settings: Settings, args: argparse.Namespace) -> int:
    """Everything in one process on the embedded default (SQLite), migrated on start."""
    if settings.production:
        raise CommandError("`regua dev` is for development: unset REGUA_ENV=production")
    upgrade(settings.database_url)
    runtime = _runtime(settings)
    stop = threading.Event()
    threading.Thread(target=_scheduler_loop, args=(runtime, stop), name="scheduler", daemon=True).start()
    base = f"http://{args.host}:{args.port}"
    print(f"regua dev on {_redacted(settings.database_url)}")
    print(f"  API      {base}/api/accounts/{{id}}   (no token needed in dev)")
    print(f"  health   {base}/healthz   {base}/readyz")
    print(f"  ticks    every {settings.tick_seconds} s in this process")
    try:
        _serve(runtime, args.host, args.port)
    finally:
        stop.set()
    return 0


def _redacted(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


COMMANDS: dict[str, Callable[[Settings, argparse.Namespace], int]] = {
    "serve": cmd_serve,
    "dev": cmd_dev,
    "tick": cmd_tick,
    "scheduler": cmd_scheduler,
    "migrate": cmd_migrate,
}


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="regua", description="Dunning and payment webhooks for card, boleto and PIX.")
    commands = root.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, help_text in (("serve", "run the HTTP app"), ("dev", "everything in one process on SQLite")):
        command = commands.add_parser(name, help=help_text)
        command.add_argument("--host", default="127.0.0.1")
        command.add_argument("--port", type=int, default=8000)
    tick = commands.add_parser("tick", help="one reconciliation pass, then exit")
    tick.add_argument("--now", help="the instant to reconcile at (ISO 8601 with offset); not in production")
    tick.add_argument("--json", action="store_true", help="print the counts as one JSON object")
    commands.add_parser("scheduler", help="tick every REGUA_TICK_SECONDS until stopped")
    commands.add_parser("migrate", help="apply the database migrations")
    return root


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parser().parse_args(argv)
    try:
        settings = Settings.from_env()
        return COMMANDS[args.command](settings, args)
    except (CommandError, ConfigError) as error:
        print(f"regua {args.command}: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
