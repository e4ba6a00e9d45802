"""The `regua` command line: every command's arguments, and `main`, which runs the one asked for."""

from __future__ import annotations

import argparse
import logging
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from regua.cli.books import cmd_check, cmd_portal_link, cmd_receipts, cmd_refunds, cmd_replay
from regua.cli.common import CommandError, missing_sqlite_file, redacted
from regua.cli.passes import cmd_clock, cmd_tick
from regua.cli.running import cmd_dev, cmd_scheduler, cmd_serve, cmd_worker
from regua.cli.sandbox import cmd_demo, cmd_gateway_sim, cmd_trigger
from regua.logs import configure_logging
from regua.migrate import upgrade
from regua.sandbox.dev import with_dev_defaults
from regua.sandbox.trigger import EVENTS
from regua.settings import ConfigError, Settings
from workers.broker import QUEUES


def cmd_migrate(settings: Settings, _args: argparse.Namespace) -> int:
    missing = missing_sqlite_file(settings.database_url)
    if missing is not None and not missing.parent.is_dir():
        raise CommandError(f"the directory {missing.parent} does not exist: create it, then migrate")
    upgrade(settings.database_url)
    print(f"migrated {redacted(settings.database_url)} to the latest revision")
    return 0


COMMANDS: dict[str, Callable[[Settings, argparse.Namespace], int]] = {
    "serve": cmd_serve,
    "worker": cmd_worker,
    "dev": cmd_dev,
    "tick": cmd_tick,
    "scheduler": cmd_scheduler,
    "migrate": cmd_migrate,
    "clock": cmd_clock,
    "trigger": cmd_trigger,
    "replay": cmd_replay,
    "gateway-sim": cmd_gateway_sim,
    "check": cmd_check,
    "refunds": cmd_refunds,
    "portal-link": cmd_portal_link,
    "receipts": cmd_receipts,
    "demo": cmd_demo,
}


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="regua", description="Dunning and payment webhooks for card, boleto and PIX.")
    commands = root.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, help_text in (("serve", "run the HTTP app"), ("dev", "everything in one process on SQLite")):
        command = commands.add_parser(name, help=help_text)
        command.add_argument("--host", default="127.0.0.1", help="the address to listen on (default: %(default)s)")
        command.add_argument("--port", type=int, default=8000, help="the port to listen on (default: %(default)s)")
        if name == "dev":
            command.add_argument("--smtp-port", type=int, help="the mail sink's port (default: REGUA_SMTP_URL's, 1025)")
    worker = commands.add_parser("worker", help="run Dramatiq workers for the queues (needs Redis)")
    worker.add_argument("--processes", type=int, default=2)
    worker.add_argument("--threads", type=int, default=8)
    worker.add_argument("--queues", nargs="*", choices=QUEUES, help="a subset of the queues (default: all)")
    tick = commands.add_parser("tick", help="one reconciliation pass, then exit")
    tick.add_argument("--now", help="the instant to reconcile at (ISO 8601 with offset); not in production")
    tick.add_argument("--json", action="store_true", help="print the counts as one JSON object")
    commands.add_parser("scheduler", help="tick every REGUA_TICK_SECONDS until stopped")
    commands.add_parser("migrate", help="apply the database migrations")
    sim = commands.add_parser("gateway-sim", help="a gateway simulator speaking the Asaas API subset regua uses")
    sim.add_argument("--host", default="127.0.0.1")
    sim.add_argument("--port", type=int, default=8001)
    sim.add_argument("--webhook-url", default="http://127.0.0.1:8000/webhooks/asaas")
    sim.add_argument("--timeout-delay", type=float, default=25.0, help="seconds tok_timeout holds its answer")
    check = commands.add_parser("check", help="verify the books (read-only); exit 1 listing what is broken")
    check.add_argument("--json", action="store_true", help="print the report as one JSON object")
    refunds = commands.add_parser("refunds", help="refunds owed that no gateway can make; `done ID` records one")
    refunds.add_argument("action", nargs="?", choices=["list", "done"], default="list")
    refunds.add_argument("refund_id", nargs="?", metavar="REFUND_ID")
    refunds.add_argument("--note", help="what was done (bank, transfer id...)")
    refunds.add_argument("--json", action="store_true", help="print the list as JSON")
    link = commands.add_parser("portal-link", help="print a fresh link to an account's payment page")
    link.add_argument("account", help="the account id")
    receipts = commands.add_parser("receipts", help="the receipts customers sent from the payment page")
    receipts.add_argument("--account", help="only this account's")
    receipts.add_argument("--limit", type=int, default=100, help="at most this many, newest first (100)")
    receipts.add_argument("--json", action="store_true", help="print them as one JSON array")
    receipts.add_argument("--save", metavar="DIRECTORY", help="also write each file there, named by its id")
    demo = commands.add_parser("demo", help="a scripted December in virtual time, told as it happens")
    demo.add_argument("--keep", type=Path, metavar="DIR", help="leave the demo's SQLite database in DIR")
    demo.add_argument("--year", type=int, help="the December to play (default: this year's)")
    demo.add_argument("--smtp-url", help="send the emails to this server (e.g. Mailpit) instead of the demo's own")
    demo.add_argument("--verbose", action="store_true", help="show the service's log lines too")
    clock = commands.add_parser("clock", help="show or move the shared test clock (not in production)")
    moves = clock.add_subparsers(dest="action", required=True, metavar="ACTION")
    moves.add_parser("show", help="the clock's instant, and whether it was set")
    set_clock = moves.add_parser("set", help="set it to INSTANT, reconciling at each day boundary crossed")
    set_clock.add_argument(
        "instant", metavar="INSTANT", help="ISO 8601; without an offset, read in REGUA_TIMEZONE (2026-12-01T00:05)"
    )
    advance = moves.add_parser("advance", help="move it forward by DURATION, reconciling at each day boundary")
    advance.add_argument("duration", metavar="DURATION", help="6d, 36h, 90m or 1d12h (forward only)")
    for move in (set_clock, advance):
        move.add_argument("--json", action="store_true", help="print the counts of each pass as one JSON object")
    trigger = commands.add_parser("trigger", help="send a gateway's webhooks about an account's charge")
    trigger.add_argument("event", metavar="EVENT", choices=EVENTS, help=", ".join(EVENTS))
    trigger.add_argument("--account", required=True, help="the account's id")
    trigger.add_argument("--product", choices=("platform", "mentorship"), help="default: the account's first")
    trigger.add_argument("--url", help="the running regua (default REGUA_PUBLIC_URL, http://127.0.0.1:8000)")
    replay = commands.add_parser("replay", help="process unmatched or failed webhook events again")
    replay.add_argument("event_ids", nargs="+", metavar="EVENT_ID")
    return root


_BACKWARD_DURATION = re.compile(r"-\d\w*")


def _durations_as_positionals(argv: Sequence[str]) -> list[str]:
    """`clock advance -1d`: argparse would take `-1d` for an unknown option and answer with its usage;
    moved behind `--`, it reaches the command, which says that durations go forward only."""
    words = list(argv)
    if words[:2] != ["clock", "advance"]:
        return words
    backward = [word for word in words[2:] if _BACKWARD_DURATION.fullmatch(word)]
    if not backward or "--" in words:
        return words
    return [word for word in words if word not in backward] + ["--", *backward]


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parser().parse_args(_durations_as_positionals(sys.argv[1:] if argv is None else argv))
    try:
        settings = with_dev_defaults(Settings.from_env())
        configure_logging(settings)
        return COMMANDS[args.command](settings, args)
    except (CommandError, ConfigError) as error:
        print(f"regua {args.command}: {error}", file=sys.stderr)
        return 2
