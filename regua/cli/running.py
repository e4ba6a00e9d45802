"""`regua serve`, `worker`, `scheduler` and `dev`: the long-running processes and the dev banner."""

from __future__ import annotations

import argparse
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from billing.shared_clock import StoredClock, stored_instant
from regua.assembly import InProcessWorker, build_jobs, lazy_context, worker_context
from regua.cli.common import CommandError, command_runtime, redacted
from regua.migrate import upgrade
from regua.runtime import Runtime
from regua.sandbox.dev import SIMULATOR_PATH, build_sandbox, simulated_gateway, smtp_address
from regua.sandbox.dev_record import forget_dev, record_dev
from regua.sandbox.smtp_sink import MailSink, PortTaken
from regua.settings import ConfigError, Settings
from workers.actors import Jobs
from workers.tick import tick

log = logging.getLogger("regua")


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
    runtime = command_runtime(settings)
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
    # The payment page sends the client's address to the gateway as the buyer's IP: X-Forwarded-For is believed
    # only from the proxies named in FORWARDED_ALLOW_IPS (uvicorn's own variable), from none by default.
    proxies = os.environ.get("FORWARDED_ALLOW_IPS", "").strip()
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level="info",
        access_log=False,
        log_config=None,
        proxy_headers=bool(proxies),
        forwarded_allow_ips=proxies or None,
    )


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    try:
        settings.require("serve")
    except ConfigError as error:
        raise CommandError(str(error)) from None
    _serve(settings, command_runtime(settings), args.host, args.port, with_scheduler=False)
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
    command_runtime(settings).close()
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
    runtime = command_runtime(settings)
    sink = MailSink(smtp_host, smtp_port, runtime.clock)
    sink_note = f"caught here, shown at {base}/ops/mail"
    try:
        sink.start()
    except PortTaken as error:
        sink_note = f"NOT RUNNING: {error}; mails go to whatever listens there (set REGUA_SMTP_URL or --smtp-port)"
    # `regua clock`, `tick` and `trigger` in another shell find this process's simulator and sink by it.
    record_dev(settings, base, sink.url if sink.running else settings.smtp_url)
    try:
        print_banner(settings, runtime, base, sink.url, sink_note)
        _serve(settings, runtime, args.host, args.port, with_scheduler=True, sink=sink)
    finally:
        forget_dev(settings)
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
        f"regua dev on {redacted(settings.database_url)}",
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
    if "PUBLIC_URL" in settings.explicit and settings.public_url != base:
        lines.append(
            f"  note       REGUA_PUBLIC_URL is {settings.public_url}: "
            f"set it to {base} for `regua clock` and `regua trigger`"
        )
    print("\n".join(lines), flush=True)
