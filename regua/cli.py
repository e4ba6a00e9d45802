"""The `regua` command: serve, worker, scheduler, tick, migrate, dev, clock, trigger, demo, replay, check, refunds."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from billing.accounts import get_account
from billing.check import Report, check_books, snapshot
from billing.clock import SystemClock, parse_instant
from billing.errors import BillingError, NotFound
from billing.models import Refund
from billing.refunds import mark_refund_done, refunds_by_hand
from billing.shared_clock import (
    DEFAULT_CACHE,
    StoredClock,
    day_boundaries,
    parse_duration,
    parse_local_instant,
    store_instant,
    stored_instant,
)
from billing.tick import TickReport
from regua.assembly import (
    InProcessWorker,
    build_jobs,
    build_providers,
    lazy_context,
    worker_context,
)
from regua.logs import configure_logging
from regua.migrate import NotMigrated, ensure_migrated, upgrade
from regua.runtime import Runtime, build_runtime
from regua.sandbox.dev import SIMULATOR_PATH, build_sandbox, simulated_gateway, smtp_address, with_dev_defaults
from regua.sandbox.smtp_sink import MailSink, PortTaken
from regua.sandbox.trigger import EVENTS
from regua.settings import ConfigError, Settings
from workers.actors import Jobs
from workers.broker import QUEUES
from workers.processing import event_statuses, process_event, replay_events
from workers.tick import tick

log = logging.getLogger("regua")


class CommandError(Exception):
    """A command that cannot run; the message says why and what to do."""


def _runtime(settings: Settings, *, migrated: bool = True) -> Runtime:
    missing = missing_sqlite_file(settings.database_url)
    if missing is not None:
        raise CommandError(
            f"the database file {missing} does not exist (REGUA_DATABASE_URL={_redacted(settings.database_url)}): "
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


def cmd_migrate(settings: Settings, _args: argparse.Namespace) -> int:
    missing = missing_sqlite_file(settings.database_url)
    if missing is not None and not missing.parent.is_dir():
        raise CommandError(f"the directory {missing.parent} does not exist: create it, then migrate")
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
        print("--now moves this pass only: `regua clock set` moves every process's clock", file=sys.stderr)
    runtime = _runtime(settings)
    try:
        if settings.broker_url:
            report = tick(worker_context(runtime), build_jobs(settings, lazy_context(settings)), now)
        else:
            report = tick_once(runtime, now)
    finally:
        runtime.close()
    print(json.dumps(report.as_dict()) if args.json else "\n".join(report.lines()))
    return 0


@dataclass
class Scheduler:
    """Ticks every REGUA_TICK_SECONDS in a thread; a failed pass is logged and the next one catches up."""

    runtime: Runtime
    jobs: Jobs | None
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def run(self) -> None:
        context = self.jobs.context() if self.jobs is not None else worker_context(self.runtime)
        while not self._stop.is_set():
            try:
                report = tick(context, self.jobs)
                log.info("tick %s", " ".join(report.lines()))
            except Exception:
                log.exception("tick failed; the next pass will catch up")
            self._stop.wait(self.runtime.settings.tick_seconds)

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name="scheduler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)


def cmd_scheduler(settings: Settings, _args: argparse.Namespace) -> int:
    runtime = _runtime(settings)
    jobs = build_jobs(settings, lazy_context(settings)) if settings.broker_url else None
    try:
        Scheduler(runtime, jobs).run()
    except KeyboardInterrupt:
        pass
    finally:
        runtime.close()
    return 0


def _serve(
    settings: Settings,
    runtime: Runtime,
    host: str,
    port: int,
    *,
    with_scheduler: bool,
    sink: MailSink | None = None,
) -> None:
    """The HTTP app; on the in-process broker it runs its own worker (nothing else could consume).
    In dev it carries the sandbox too: the simulated gateway and, given a sink, the mail viewer."""
    import uvicorn

    from regua.app import Background, create_app

    context = worker_context(runtime)
    jobs = build_jobs(settings, lambda: context, runtime.clock)
    providers = context.providers
    background: list[Background] = []
    checks: dict[str, Callable[[], object]] = {}
    if settings.broker_url:
        checks["broker"] = jobs.broker.client.ping  # type: ignore[attr-defined]
    else:
        background.append(InProcessWorker(jobs.broker))
    if with_scheduler:
        background.append(Scheduler(runtime, jobs))
    sandbox = build_sandbox(settings, runtime.clock, f"http://{host}:{port}", sink)
    if sandbox.dispatcher is not None:
        background.append(sandbox.dispatcher)
    app = create_app(
        runtime,
        providers,
        jobs.enqueue_events,
        background,
        checks,
        context.gateway,
        jobs.broker,
        send_mails=jobs.mailing.queue,
        extra_routes=sandbox.routes,
    )
    runtime.clock.now()  # the shared clock's first read is made here, not on the event loop
    uvicorn.run(app, host=host, port=port, log_level="info", access_log=False, log_config=None)


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    try:
        settings.require("serve")
    except ConfigError as error:
        raise CommandError(str(error)) from None
    _serve(settings, _runtime(settings), args.host, args.port, with_scheduler=False)
    return 0


def cmd_worker(settings: Settings, args: argparse.Namespace) -> int:
    """Dramatiq's own worker processes, each importing regua.worker_process for its broker and actors."""
    try:
        settings.require("worker")
    except ConfigError as error:
        raise CommandError(str(error)) from None
    if not settings.broker_url:
        raise CommandError(
            "REGUA_BROKER_URL is empty: separate workers need Redis (redis://HOST:PORT/N); "
            "`regua serve` and `regua dev` run an in-process worker without it"
        )
    _runtime(settings).close()
    from dramatiq.cli import main as dramatiq_main
    from dramatiq.cli import make_argument_parser

    argv = ["regua.worker_process", "--processes", str(args.processes), "--threads", str(args.threads)]
    if args.queues:
        argv += ["--queues", *args.queues]
    return int(dramatiq_main(make_argument_parser().parse_args(argv)) or 0)  # type: ignore[no-untyped-call]


def cmd_dev(settings: Settings, args: argparse.Namespace) -> int:
    """Everything in one process on the embedded default (SQLite), migrated on start."""
    if settings.production:
        raise CommandError("`regua dev` is for development: unset REGUA_ENV=production")
    base = f"http://{args.host}:{args.port}"
    if simulated_gateway(settings):
        settings = replace(settings, asaas_api_url=f"{base}{SIMULATOR_PATH}")
    smtp_host, smtp_port = smtp_address(settings.smtp_url)
    if args.smtp_port is not None:
        smtp_port = args.smtp_port
        settings = replace(settings, smtp_url=f"smtp://{smtp_host}:{smtp_port}")
    upgrade(settings.database_url)
    runtime = _runtime(settings)
    sink = MailSink(smtp_host, smtp_port, runtime.clock)
    sink_note = f"caught here, shown at {base}/ops/mail"
    try:
        sink.start()
    except PortTaken as error:
        sink_note = f"NOT RUNNING: {error}; mails go to whatever listens there (set REGUA_SMTP_URL or --smtp-port)"
    try:
        print_banner(settings, runtime, base, sink.url, sink_note)
        _serve(settings, runtime, args.host, args.port, with_scheduler=True, sink=sink)
    finally:
        sink.stop()
    return 0


def print_banner(settings: Settings, runtime: Runtime, base: str, smtp_url: str, sink_note: str) -> None:
    now = runtime.clock.now()
    stored = isinstance(runtime.clock, StoredClock) and runtime.read(stored_instant) is not None
    clock_note = "set with `regua clock`" if stored else "follows the system time until `regua clock set`"
    auth = f" -H 'Authorization: Bearer {settings.api_token}'" if settings.api_token else ""
    open_api = "open in dev (REGUA_API_TOKEN is empty)" if not settings.api_token else "bearer REGUA_API_TOKEN"
    open_ops = "open in dev (REGUA_OPS_TOKEN is empty)" if not settings.ops_token else "user ops, REGUA_OPS_TOKEN"
    account = (
        '{"name": "Acme Ltda", "document": "11.222.333/0001-81", '
        '"contacts": [{"email": "financeiro@acme.example", "name": "Ana", "manage_payments": true}]}'
    )
    lines = [
        f"regua dev on {_redacted(settings.database_url)}",
        "  runs       the app, broker, worker, scheduler, gateway simulator and mail sink in this process",
        f"  clock      {runtime.calendar.local(now):%Y-%m-%d %H:%M %z} ({clock_note})",
        f"  API        {base}/api/accounts/{{id}}   {open_api}",
        f"  ops        {base}/ops   {base}/metrics   {open_ops}",
        f"  portal     {base}/portal/{{token}}   (`regua portal-link ACCOUNT` prints one)",
        f"  mail       {base}/ops/mail   {base}/ops/mail.json   {open_ops}",
        f"  smtp sink  {smtp_url}   {sink_note}",
        f"  webhooks   {base}/webhooks/standard   {base}/webhooks/asaas",
        f"             {base}/webhooks/pix?hmac={settings.pix_webhook_secret}",
        f"  gateway    {settings.asaas_api_url}"
        + (
            f"   (simulated Asaas; its state at {base}{SIMULATOR_PATH}/sim/state)"
            if simulated_gateway(settings)
            else ""
        ),
        f"  health     {base}/healthz   {base}/readyz",
        f"  scheduler  a tick every {settings.tick_seconds} s; `regua clock advance 6d` moves the shared clock",
        f"  secrets    standard {settings.standard_webhook_secrets[0]}",
        f"             asaas-access-token {settings.asaas_webhook_token}   pix ?hmac={settings.pix_webhook_secret}",
        f"  try        curl -X PUT {base}/api/accounts/acme -H 'Content-Type: application/json'{auth} -d '{account}'",
    ]
    if settings.public_url != base:
        lines.append(
            f"  note       REGUA_PUBLIC_URL is {settings.public_url}: "
            f"set it to {base} for `regua clock` and `regua trigger`"
        )
    print("\n".join(lines), flush=True)


CLOCK_SEEN_AFTER_S = DEFAULT_CACHE.total_seconds() + 0.2
"""How long every other process takes to read a moved shared clock (it renews its read every second)."""


def cmd_clock(settings: Settings, args: argparse.Namespace) -> int:
    """Show or move the shared clock; moving it reconciles at every day boundary crossed, in order."""
    if settings.production:
        raise CommandError("the shared clock is refused in production, where only the system clock exists")
    if settings.now is not None and args.action != "show":
        raise CommandError("REGUA_NOW freezes this process's clock: unset it to move the shared clock")
    runtime = _runtime(settings)
    try:
        zone = runtime.calendar.zone
        current = runtime.clock.now()
        if args.action == "show":
            stored = runtime.read(stored_instant) is not None
            state = "REGUA_NOW" if settings.now is not None else ("set" if stored else "follows the system time")
            print(f"{runtime.calendar.local(current).isoformat()} ({state})")
            return 0
        try:
            if args.action == "set":
                target = parse_local_instant(args.instant, zone)
            else:
                target = current + parse_duration(args.duration)
        except ValueError as error:
            raise CommandError(str(error)) from None
        if target < current:
            print(f"the clock moves back from {runtime.calendar.local(current).isoformat()}: the books keep their past")
        steps = day_boundaries(current, target, zone) if target > current else []
        if target not in steps:
            steps.append(target)
        for instant in steps:
            _store(runtime, instant)
            if isinstance(runtime.clock, StoredClock):
                runtime.clock.forget()
            if settings.broker_url:
                # the workers read the clock again within a second: a job this pass queues must not
                # meet the instant before it (a mail claimed "in flight" at the old instant waits minutes)
                time.sleep(CLOCK_SEEN_AFTER_S)
                report = tick(worker_context(runtime), build_jobs(settings, lazy_context(settings)), instant)
            else:
                report = tick_once(runtime, instant)
            done = ", ".join(f"{name} {count}" for name, count in report.as_dict().items() if count)
            print(f"{runtime.calendar.local(instant).isoformat()}  {done or 'nothing to do'}", flush=True)
    finally:
        runtime.close()
    return 0


def _store(runtime: Runtime, instant: datetime) -> None:
    runtime.transaction(lambda session: store_instant(session, instant, SystemClock().now()))


def cmd_trigger(settings: Settings, args: argparse.Namespace) -> int:
    """Send the webhooks a gateway would post about an account's open charge to a running regua."""
    from regua.sandbox.trigger import Trigger, TriggerError

    if settings.production:
        raise CommandError("`regua trigger` sends test webhooks: it is refused in production")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # the trigger prints what it sends itself
    runtime = _runtime(settings)
    trigger = Trigger(runtime, args.url or settings.public_url)
    try:
        trigger.run(args.event, args.account, args.product)
    except TriggerError as error:
        raise CommandError(str(error)) from None
    finally:
        trigger.close()
        runtime.close()
    return 0


def cmd_replay(settings: Settings, args: argparse.Namespace) -> int:
    """Put unmatched or failed webhook events back in line, then process them."""
    runtime = _runtime(settings)
    try:
        wanted = list(dict.fromkeys(args.event_ids))
        statuses = runtime.read(lambda session: event_statuses(session, wanted))
        unknown = [event_id for event_id in wanted if event_id not in statuses]
        if unknown:
            # All or nothing: a mistyped id stops the command before any event is touched.
            raise CommandError(f"no webhook event {', '.join(unknown)}: nothing replayed")
        ids = runtime.transaction(lambda session: replay_events(session, wanted))
        for event_id in wanted:
            if event_id not in ids:
                print(f"{event_id} is {statuses[event_id]}: only unmatched or failed events are replayed")
        if settings.broker_url and ids:
            build_jobs(settings, lazy_context(settings)).enqueue_events(ids)
        providers = build_providers(settings)
        for event_id in ids if not settings.broker_url else []:
            print(f"{event_id} {process_event(runtime, providers, event_id)}")
    finally:
        runtime.close()
    print(f"events_replayed {len(ids)}")
    return 0


def cmd_check(settings: Settings, args: argparse.Namespace) -> int:
    """The books' invariants over the whole database, read-only: exit 0 when clean, 1 listing what is broken."""
    runtime = _runtime(settings)
    try:

        def work(session: Session) -> Report:
            snapshot(session)
            return check_books(session, runtime.clock.now())

        report = runtime.read(work)
    finally:
        runtime.close()
    if args.json:
        print(json.dumps(report.as_dict(), default=str))
    elif report.clean:
        print(f"books clean: {len(report.counts)} invariants hold")
    else:
        for violation in report.violations:
            print(violation.line())
        broken = {name: count for name, count in report.counts.items() if count}
        print("broken: " + " ".join(f"{name}={count}" for name, count in broken.items()))
    return 0 if report.clean else 1


def cmd_refunds(settings: Settings, args: argparse.Namespace) -> int:
    """The refunds owed that no gateway can make for regua; `done ID` records one made by hand."""
    runtime = _runtime(settings)
    try:
        if args.action == "done":
            if not args.refund_id:
                raise CommandError("usage: regua refunds done REFUND_ID [--note TEXT]")
            who = os.environ.get("USER") or "cli"

            def record(session: Session) -> Refund:
                return mark_refund_done(session, args.refund_id, by=who, note=args.note, now=runtime.clock.now())

            try:
                refund = runtime.transaction(record)
            except BillingError as error:
                raise CommandError(error.message) from None
            print(f"{refund.id} done {refund.amount_cents} by {who}")
            return 0
        owed = [
            {
                "id": refund.id,
                "account": refund.account_id,
                "payment": refund.payment_id,
                "amount_cents": refund.amount_cents,
                "reason": refund.reason,
                "since": refund.created_at.isoformat(),
            }
            for refund in runtime.read(refunds_by_hand)
        ]
    finally:
        runtime.close()
    if args.json:
        print(json.dumps(owed))
    else:
        for item in owed:
            print(" ".join(f"{key}={value}" for key, value in item.items()))
        print(f"refunds_to_make_by_hand {len(owed)}")
    return 0


def cmd_demo(settings: Settings, args: argparse.Namespace) -> int:
    """December in virtual time on a fresh embedded database, told as it happens."""
    if settings.production:
        raise CommandError("`regua demo` plays in virtual time: unset REGUA_ENV=production")
    from regua.sandbox.demo import run_demo
    from regua.sandbox.demo_stage import DemoFailed

    if not args.verbose:
        logging.getLogger().setLevel(logging.ERROR)
    try:
        return run_demo(settings, sys.stdout, keep=args.keep, year=args.year, smtp_url=args.smtp_url)
    except (FileExistsError, DemoFailed) as error:
        raise CommandError(str(error)) from None


def cmd_gateway_sim(settings: Settings, args: argparse.Namespace) -> int:
    """The Asaas API subset regua uses, with scripted outcomes, posting webhooks back to regua."""
    from regua.sandbox.simulator import run_simulator

    runtime = _shared_clock_runtime(settings)
    try:
        run_simulator(
            args.host,
            args.port,
            args.webhook_url,
            settings.asaas_webhook_token,
            timeout_delay_s=args.timeout_delay,
            clock=None if runtime is None else runtime.clock,
        )
    finally:
        if runtime is not None:
            runtime.close()
    return 0


def cmd_portal_link(settings: Settings, args: argparse.Namespace) -> int:
    """A fresh link to an account's payment page, as the emails carry (for support and development)."""
    from regua.mailer import portal_link

    runtime = _runtime(settings)
    try:
        runtime.read(lambda session: get_account(session, args.account))
        print(portal_link(replace(settings, portal_url=""), args.account, runtime.clock.now()))
    except NotFound as error:
        raise CommandError(str(error)) from None
    finally:
        runtime.close()
    return 0


_EXTENSIONS = {"application/pdf": ".pdf", "image/png": ".png", "image/jpeg": ".jpg"}


def cmd_receipts(settings: Settings, args: argparse.Namespace) -> int:
    """The receipts customers sent from the payment page, newest first; --save writes their files."""
    from pathlib import Path

    from sqlalchemy import select

    from billing.models import Invoice
    from billing.records import Receipt

    runtime = _runtime(settings)
    try:
        query = (
            select(Receipt, Invoice.status)
            .join(Invoice, Invoice.id == Receipt.invoice_id)
            .order_by(Receipt.received_at.desc())
            .limit(args.limit)
        )
        if args.account:
            query = query.where(Receipt.account_id == args.account)
        rows = runtime.read(lambda session: [(r, status) for r, status in session.execute(query)])
    finally:
        runtime.close()
    listed = [
        {
            "id": receipt.id,
            "account_id": receipt.account_id,
            "invoice_id": receipt.invoice_id,
            "invoice_status": status,
            "filename": receipt.filename,
            "content_type": receipt.content_type,
            "size_bytes": receipt.size_bytes,
            "sha256": receipt.sha256,
            "received_at": receipt.received_at.isoformat(),
        }
        for receipt, status in rows
    ]
    if args.save:
        directory = Path(args.save)
        directory.mkdir(parents=True, exist_ok=True)
        for receipt, _status in rows:
            (directory / f"{receipt.id}{_EXTENSIONS.get(receipt.content_type, '')}").write_bytes(receipt.content)
    if args.json:
        print(json.dumps(listed, ensure_ascii=False))
    else:
        for item in listed:
            print(
                f"{item['received_at']}  {item['id']}  {item['account_id']}  {item['invoice_id']} "
                f"({item['invoice_status']})  {item['content_type']}  {item['size_bytes']} B  {item['filename']}"
            )
        print(f"receipts {len(listed)}")
    return 0


def _shared_clock_runtime(settings: Settings) -> Runtime | None:
    """A runtime whose clock the standalone simulator dates by, when regua's database is there to
    read it from (outside production); None means the system clock. A missing SQLite file stays missing."""
    from sqlalchemy.engine import make_url

    url = make_url(settings.database_url)
    if settings.production or (url.get_backend_name() == "sqlite" and not Path(url.database or "").is_file()):
        return None
    try:
        return _runtime(settings)
    except (CommandError, SQLAlchemyError):
        return None


def _redacted(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


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
        command.add_argument("--host", default="127.0.0.1")
        command.add_argument("--port", type=int, default=8000)
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
    moves.add_parser("set", help="set it to INSTANT, reconciling at each day boundary crossed").add_argument(
        "instant", metavar="INSTANT", help="ISO 8601; without an offset, read in REGUA_TIMEZONE (2026-12-01T00:05)"
    )
    moves.add_parser("advance", help="move it forward by DURATION, reconciling at each day boundary").add_argument(
        "duration", metavar="DURATION", help="6d, 36h, 90m or 1d12h"
    )
    trigger = commands.add_parser("trigger", help="send a gateway's webhooks about an account's charge")
    trigger.add_argument("event", metavar="EVENT", choices=EVENTS, help=", ".join(EVENTS))
    trigger.add_argument("--account", required=True, help="the account's id")
    trigger.add_argument("--product", choices=("platform", "mentorship"), help="default: the account's first")
    trigger.add_argument("--url", help="the running regua (default REGUA_PUBLIC_URL, http://127.0.0.1:8000)")
    replay = commands.add_parser("replay", help="process unmatched or failed webhook events again")
    replay.add_argument("event_ids", nargs="+", metavar="EVENT_ID")
    return root


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parser().parse_args(argv)
    try:
        settings = with_dev_defaults(Settings.from_env())
        configure_logging(settings)
        return COMMANDS[args.command](settings, args)
    except (CommandError, ConfigError) as error:
        print(f"regua {args.command}: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
