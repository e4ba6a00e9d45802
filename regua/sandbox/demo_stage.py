"""The demo's stage: regua's app and the Asaas simulator on sockets, an SMTP sink, one frozen clock.

Everything is real but the calendar: a migrated SQLite file, regua's app and the simulator each on a
socket of their own (the simulator posts its webhooks to regua over HTTP), the in-process broker and
worker, and an SMTP server that receives every email. `Stage.settle` waits until all of it is at rest.
"""

from __future__ import annotations

import contextlib
import email
import email.policy
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from aiosmtpd.controller import Controller
from dramatiq.common import dq_name
from dramatiq.errors import QueueJoinTimeout
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.types import ASGIApp

from billing.clock import FrozenClock
from billing.journal import Notification, WebhookEvent
from billing.models import Charge, EventStatus, NotificationStatus
from billing.outbox import LEASE
from billing.policy import Policy
from regua.app import create_app
from regua.assembly import InProcessWorker, build_providers
from regua.gateway.asaas import AsaasGateway
from regua.mailer import SmtpPostman
from regua.migrate import upgrade
from regua.runtime import Runtime, build_runtime
from regua.sandbox.simulator import create_simulator_app
from regua.settings import Settings
from workers.actors import Jobs, declare_actors
from workers.broker import QUEUES, build_broker
from workers.context import WorkerContext
from workers.tick import tick

API_TOKEN = "demo-api-token"
ASAAS_TOKEN = "demo-asaas-token"
ASAAS_KEY = "demo-asaas-key"
SETTLE_TIMEOUT_S = 20.0


class DemoFailed(Exception):
    """The demo's world did not behave as the script needs (a job stuck, a refused request)."""


FINAL_EVENTS = (EventStatus.PROCESSED.value, EventStatus.IGNORED.value, EventStatus.UNMATCHED.value)


def _bound_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def _served(app: ASGIApp, sock: socket.socket) -> Iterator[str]:
    """`app` under uvicorn on a bound socket, in a thread; yields its base URL."""
    config = uvicorn.Config(app, lifespan="on", log_level="warning", http="h11", ws="none")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="demo-server", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise DemoFailed("a demo server did not start")
            time.sleep(0.01)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@dataclass(frozen=True)
class Mail:
    to: tuple[str, ...]
    kind: str
    account: str
    subject: str


@dataclass
class MailSink:
    """An SMTP server on a free local port that keeps the headers of every message it accepts."""

    port: int = field(default_factory=_free_port)
    mails: list[Mail] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    async def handle_DATA(self, _server: Any, _session: Session, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        mail = Mail(
            to=tuple(envelope.rcpt_tos),
            kind=str(message["X-Regua-Kind"] or ""),
            account=str(message["X-Regua-Account"] or ""),
            subject=str(message["Subject"] or ""),
        )
        with self._lock:
            self.mails.append(mail)
        return "250 Message accepted for delivery"

    def received(self) -> list[Mail]:
        with self._lock:
            return list(self.mails)

    @contextlib.contextmanager
    def running(self) -> Iterator[MailSink]:
        controller = Controller(self, hostname="127.0.0.1", port=self.port, ready_timeout=5)
        controller.start()
        try:
            yield self
        finally:
            controller.stop()


@dataclass
class Stage:
    """The running parts the script acts on."""

    runtime: Runtime
    clock: FrozenClock
    context: WorkerContext
    jobs: Jobs
    api: httpx.Client
    sim: httpx.Client
    sink: MailSink | None
    """The demo's own SMTP server; None when the mail goes to another one (`--smtp-url`)."""
    smtp_url: str

    def tick(self) -> None:
        tick(self.context, self.jobs)
        self.settle()

    def settle(self) -> None:
        """Wait until the queues are quiet, every webhook the simulator sent is processed, and every
        email is out. An email that waits for its PIX code holds its lease for a minute of clock time:
        when only emails wait, the clock moves a minute on, as it would while a worker sleeps."""
        deadline = time.monotonic() + SETTLE_TIMEOUT_S
        quiet = 0
        while time.monotonic() < deadline:
            for queue in QUEUES:
                with contextlib.suppress(QueueJoinTimeout):
                    self.jobs.broker.join(queue, timeout=200)
            state = self._state()
            quiet = quiet + 1 if state == "quiet" else 0
            if quiet == 2:
                return
            if state == "mail":
                self.clock.set(self.clock.now() + LEASE + timedelta(seconds=1))
                self.jobs.mailing.kick()
            time.sleep(0.02)
        raise DemoFailed(f"the demo's world never came to rest: {self._unrest()}")

    def _unrest(self) -> str:
        deliveries = [d for d in self.sim.get("/sim/state").json()["webhooks"] if d["status"] != "delivered"]

        def stuck(session: Session) -> list[str]:
            events = session.scalars(select(WebhookEvent).where(WebhookEvent.status.not_in(FINAL_EVENTS)))
            mails = session.scalars(select(Notification).where(Notification.status == NotificationStatus.PENDING.value))
            return [f"event {e.id} {e.event_type} {e.status} {e.outcome}" for e in events] + [
                f"email {n.kind} for {n.account_id} pending ({n.last_error})" for n in mails
            ]

        told = [f"webhook {d['event']} {d['status']} {d['last_error']}" for d in deliveries]
        return "; ".join(told + self.runtime.read(stuck)) or "the queues"

    def _state(self) -> str:
        """ "quiet", "mail" (only emails wait), or "busy"."""
        deliveries = self.sim.get("/sim/state").json()["webhooks"]
        if any(delivery["status"] != "delivered" for delivery in deliveries):
            return "busy"

        def stored(session: Session) -> tuple[list[str], int]:
            events = list(session.scalars(select(WebhookEvent.status)))
            pending = session.scalars(
                select(Notification.id).where(Notification.status == NotificationStatus.PENDING.value)
            ).all()
            return events, len(pending)

        events, pending_mail = self.runtime.read(stored)
        if len(events) < len(deliveries) or any(status not in FINAL_EVENTS for status in events):
            return "busy"
        queues = self.jobs.broker.queues
        if any(queues[name].unfinished_tasks for queue in ("webhooks", "charges") for name in (queue, dq_name(queue))):
            return "busy"
        if pending_mail:
            return "mail"
        return "busy" if any(queues[name].unfinished_tasks for name in ("email", dq_name("email"))) else "quiet"

    def call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        response = self.api.request(method, path, headers={"Authorization": f"Bearer {API_TOKEN}"}, **kwargs)
        if response.status_code >= 300:
            raise DemoFailed(f"{method} {path}: HTTP {response.status_code} {response.text}")
        return dict(response.json())

    def gateway_payment(self, account_id: str, product: str) -> str:
        """The gateway's id of the account's newest pending charge for `product`."""

        def find(session: Session) -> str | None:
            return session.scalar(
                select(Charge.gateway_payment_id)
                .where(
                    Charge.account_id == account_id,
                    Charge.product == product,
                    Charge.status == "pending",
                    Charge.gateway_payment_id.is_not(None),
                )
                .order_by(Charge.created_at.desc())
                .limit(1)
            )

        found = self.runtime.read(find)
        if found is None:
            raise DemoFailed(f"{account_id} has no pending {product} charge at the gateway")
        return found

    def simulate(self, path: str) -> dict[str, Any]:
        response = self.sim.post(path)
        if response.status_code >= 300:
            raise DemoFailed(f"simulator {path}: HTTP {response.status_code} {response.text}")
        return dict(response.json())


@contextlib.contextmanager
def staged(settings: Settings, database: Path, clock: FrozenClock, smtp_url: str | None = None) -> Iterator[Stage]:
    """Migrate the database, start the SMTP sink (unless `smtp_url` names another server), the simulator
    and regua's app; tear them down after."""
    url = f"sqlite:///{database}"
    upgrade(url)
    regua_sock, sim_sock = _bound_socket(), _bound_socket()
    regua_url = f"http://127.0.0.1:{regua_sock.getsockname()[1]}"
    sim_url = f"http://127.0.0.1:{sim_sock.getsockname()[1]}"
    sink = None if smtp_url else MailSink()
    mail_to = sink.url if sink is not None else str(smtp_url)
    settings = replace(
        settings,
        database_url=url,
        broker_url="",
        smtp_url=mail_to,
        public_url=regua_url,
        now=None,
        api_token=API_TOKEN,
        asaas_webhook_token=ASAAS_TOKEN,
        asaas_api_url=sim_url,
        asaas_api_key=ASAAS_KEY,
        # The script says "retried on day 3" and "72 hours of verification": the contract's defaults.
        policy=Policy(),
    )
    runtime = build_runtime(settings, clock=clock)
    providers = build_providers(settings)
    gateway = AsaasGateway(sim_url, ASAAS_KEY, max_attempts=1)
    context = WorkerContext(runtime, providers, gateway, postman=lambda: SmtpPostman(runtime))
    jobs = declare_actors(build_broker(""), lambda: context)
    # Virtual days pass in a fraction of a second: an email waiting for its PIX code is tried again
    # within a moment, not a minute.
    jobs.mailing.min_backoff_ms, jobs.mailing.max_backoff_ms, jobs.mailing.kick_delay_ms = 100, 1_000, 100
    app = create_app(runtime, providers, jobs.enqueue_events, [InProcessWorker(jobs.broker)], gateway=gateway)
    simulator = create_simulator_app(
        f"{regua_url}/webhooks/asaas",
        ASAAS_TOKEN,
        api_key=ASAAS_KEY,
        clock=clock,
        webhook_retry_delays=(0.2, 0.5, 1.0),
        # Virtual days pass in a fraction of a second: a refund is made at once, not 0.2 s of wall time
        # later, so the story never depends on how fast the machine is (refunds that take time are the
        # lifecycle tests' business).
        refund_delay_s=0,
    )
    with (
        sink.running() if sink is not None else contextlib.nullcontext(),
        _served(simulator, sim_sock),
        _served(app, regua_sock),
        httpx.Client(base_url=regua_url, timeout=30) as api,
        httpx.Client(base_url=sim_url, timeout=10) as sim,
    ):
        yield Stage(runtime, clock, context, jobs, api, sim, sink, settings.smtp_url)
    gateway.close()
