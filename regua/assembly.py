"""Assembling the parts: providers, gateway, postman, broker and actors, the in-process worker."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import dramatiq

from billing.clock import Clock
from regua.gateway.asaas import AsaasGateway
from regua.gateway.throttle import gateway_limiter
from regua.mailer import SmtpPostman
from regua.runtime import Runtime, build_runtime
from regua.settings import Settings
from webhooks.asaas import AsaasProvider
from webhooks.base import Provider
from webhooks.pix import PixProvider
from webhooks.standard import StandardProvider
from workers.actors import Jobs, declare_actors
from workers.broker import build_broker
from workers.context import WorkerContext

log = logging.getLogger("regua")


class GatewayPaymentSource:
    """The Asaas payment behind an unsigned webhook, as the gateway's API tells it now.

    One attempt per call: retrying is the job's business (Dramatiq's backoff), not a sleeping worker's.
    """

    def __init__(self, gateway: AsaasGateway) -> None:
        self._gateway = gateway

    def fetch_payment(self, payment_id: str) -> dict[str, Any]:
        return dict(self._gateway.get_payment(payment_id).raw)


def build_gateway(settings: Settings, *, max_attempts: int = 3) -> AsaasGateway:
    limiter = gateway_limiter(settings.gateway_max_rps, settings.broker_url)
    return AsaasGateway(settings.asaas_api_url, settings.asaas_api_key, max_attempts=max_attempts, limiter=limiter)


def build_providers(settings: Settings) -> dict[str, Provider]:
    payments = GatewayPaymentSource(build_gateway(settings, max_attempts=1))
    return {
        "standard": StandardProvider(settings.standard_webhook_secrets),
        "asaas": AsaasProvider(settings.asaas_webhook_token, payments),
        "pix": PixProvider(settings.pix_webhook_secret),
    }


def worker_context(runtime: Runtime) -> WorkerContext:
    """Jobs call the gateway once per attempt: retrying is Dramatiq's backoff, or the next tick's.

    Every create looks the charge up by our reference first, so a retry after an unclear outcome
    never charges twice.
    """
    settings = runtime.settings
    return WorkerContext(
        runtime,
        build_providers(settings),
        build_gateway(settings, max_attempts=1),
        postman=lambda: SmtpPostman(runtime),
    )


def lazy_context(settings: Settings) -> Callable[[], WorkerContext]:
    """The worker context, built on first use in each process (after Dramatiq forks its workers)."""
    built: list[WorkerContext] = []
    lock = threading.Lock()

    def context() -> WorkerContext:
        if not built:
            with lock:
                if not built:
                    built.append(worker_context(build_runtime(settings)))
        return built[0]

    return context


@dataclass
class InProcessWorker:
    """Dramatiq's worker inside this process: for `regua dev`, the demo and tests on the stub broker."""

    broker: dramatiq.Broker
    threads: int = 4
    _worker: Any = field(default=None, init=False)

    def start(self) -> None:
        self.broker.emit_after("process_boot")
        self._worker = dramatiq.Worker(self.broker, worker_threads=self.threads, worker_timeout=100)
        self._worker.start()

    def stop(self) -> None:
        if self._worker is not None:
            self._worker.stop()
            self._worker = None


class ContextClock:
    """The worker context's clock, read through the context (built after the fork, like it): jobs are
    counted at regua's instant, the shared one outside production, where the ops charts look for them."""

    def __init__(self, context: Callable[[], WorkerContext]) -> None:
        self._context = context

    def now(self) -> datetime:
        return self._context().runtime.clock.now()


def build_jobs(settings: Settings, context: Callable[[], WorkerContext], clock: Clock | None = None) -> Jobs:
    return declare_actors(build_broker(settings.broker_url, clock or ContextClock(context)), context)
