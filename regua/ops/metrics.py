"""GET /metrics: Prometheus text, read at scrape time from the database, the broker and the workers' counts.

The books are the truth, so counts of events, emails and charges are read from the database on each
scrape (the same number whichever process answers). The workers' job outcomes reach this scrape
through the counts they keep in Redis (workers.stats), so no per-process files or ports are needed.
Only the webhook latency histogram is observed here, by the process that answers the webhooks.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import product

import dramatiq
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.orm import InstrumentedAttribute, Session
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from billing.dunning import NotificationKind
from billing.journal import Notification, TickRun, WebhookEvent
from billing.models import Block, Charge
from billing.states import ChargeStatus, EventStatus, NotificationStatus, Product
from regua.ops.broker import read_queues
from regua.ops.routes import OpsAuthMiddleware
from regua.runtime import Runtime
from workers.stats import OUTCOMES, job_counts

WEBHOOK_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
PROVIDERS = ("standard", "asaas", "pix")
CHARGE_METHODS = ("card", "boleto", "pix")
KnownLabels = tuple[Sequence[str], Sequence[str]]
"""Every value of a family's two labels that regua can write: each pair is exported from the first
scrape, at 0 until it happens, so that a rate or an alert on it sees a series ("avoid missing metrics")."""
WEBHOOK_LABELS: KnownLabels = (PROVIDERS, tuple(EventStatus))
EMAIL_LABELS: KnownLabels = (tuple(NotificationKind), tuple(NotificationStatus))
CHARGE_LABELS: KnownLabels = (CHARGE_METHODS, tuple(ChargeStatus))


class BooksCollector(Collector):
    """Every series but the latency histogram, computed when Prometheus asks."""

    def __init__(self, runtime: Runtime, broker: dramatiq.Broker | None) -> None:
        self.runtime = runtime
        self.broker = broker

    def collect(self) -> Iterator[Metric]:
        books = self.runtime.read(_counts)
        families = (
            ("regua_webhooks", "Webhook events, by provider and outcome.", ["provider", "outcome"], books.webhooks,
             WEBHOOK_LABELS),
            ("regua_emails", "Emails decided, by kind and outcome.", ["kind", "outcome"], books.emails, EMAIL_LABELS),
            ("regua_charges", "Charges opened, by method and outcome.", ["method", "outcome"], books.charges,
             CHARGE_LABELS),
        )  # fmt: skip
        for name, documentation, labels, rows, known in families:
            family = CounterMetricFamily(name, documentation, labels=labels)
            counts = dict.fromkeys(product(*known), 0) | {(first, second): count for first, second, count in rows}
            for (first, second), count in counts.items():
                family.add_metric([first, second], count)
            yield family
        blocked = GaugeMetricFamily("regua_blocked_accounts", "Accounts blocked now, by product.", labels=["product"])
        for name in Product:
            blocked.add_metric([name.value], books.blocked.get(name.value, 0))
        yield blocked
        if books.last_tick is not None:
            yield GaugeMetricFamily(
                "regua_last_tick_timestamp_seconds", "When the last tick finished (Unix time).", value=books.last_tick
            )
        if self.broker is not None:
            yield from self._broker_series(self.broker)

    def _broker_series(self, broker: dramatiq.Broker) -> Iterator[Metric]:
        view = read_queues(broker, self.runtime.clock.now())
        queue = GaugeMetricFamily("regua_queue_messages", "Messages per queue and state.", labels=["queue", "state"])
        for counts in view.queues:
            for state, value in counts.as_states().items():
                queue.add_metric([counts.queue, state], value)
        yield queue
        yield GaugeMetricFamily(
            "regua_workers_alive", "Worker processes with a recent heartbeat.", value=view.workers_alive
        )
        jobs = job_counts(broker)
        if jobs is not None:
            family = CounterMetricFamily("regua_jobs", "Jobs run by every worker, by outcome.", labels=["outcome"])
            for outcome, value in (dict.fromkeys(OUTCOMES, 0) | jobs.totals()).items():
                family.add_metric([outcome], value)
            yield family


@dataclass(frozen=True)
class BookCounts:
    webhooks: list[tuple[str, str, int]]
    emails: list[tuple[str, str, int]]
    charges: list[tuple[str, str, int]]
    blocked: dict[str, int]
    last_tick: float | None


def _counts(session: Session) -> BookCounts:
    def grouped(first: InstrumentedAttribute[str], second: InstrumentedAttribute[str]) -> list[tuple[str, str, int]]:
        query = select(first, second, func.count()).group_by(first, second)
        return [(a, b, n) for a, b, n in session.execute(query)]

    finished = session.scalar(select(TickRun.finished_at).order_by(TickRun.id.desc()).limit(1))
    blocked = session.execute(
        select(Block.product, func.count()).where(Block.lifted_at.is_(None)).group_by(Block.product)
    )
    return BookCounts(
        webhooks=grouped(WebhookEvent.provider, WebhookEvent.status),
        emails=grouped(Notification.kind, Notification.status),
        charges=grouped(Charge.method, Charge.status),
        blocked=dict(blocked.all()),
        last_tick=finished.timestamp() if finished is not None else None,
    )


class WebhookTimingMiddleware:
    """Observes how long each webhook request took to answer, into `regua_webhook_seconds`.

    Timed around the app, not by wrapping every message it sends: a webhook's answer is whole when
    the app returns (nothing is sent after it), and an exception that escapes it is answered outside
    this layer, as before, without an observation.
    """

    def __init__(self, app: ASGIApp, histogram: Histogram) -> None:
        self.app = app
        self.observe = histogram.observe

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/webhooks/"):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        await self.app(scope, receive, send)
        self.observe(time.perf_counter() - started)


class Metrics:
    def __init__(self, runtime: Runtime, broker: dramatiq.Broker | None) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.webhook_seconds = Histogram(
            "regua_webhook_seconds",
            "Time to answer a webhook delivery.",
            buckets=WEBHOOK_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(BooksCollector(runtime, broker))
        self.runtime = runtime

    def middleware(self) -> Middleware:
        return Middleware(WebhookTimingMiddleware, histogram=self.webhook_seconds)

    async def endpoint(self, _request: Request) -> Response:
        body = await run_in_threadpool(generate_latest, self.registry)
        return Response(body, headers={"Content-Type": CONTENT_TYPE_LATEST, "Cache-Control": "no-store"})

    def route(self) -> Route:
        return Route(
            "/metrics",
            self.endpoint,
            methods=["GET"],
            middleware=[Middleware(OpsAuthMiddleware, runtime=self.runtime)],
        )
