"""The HTTP app, assembled from plain lists of routes: health, webhooks, API and docs, ops, metrics, payment page."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Protocol

import dramatiq
from sqlalchemy import text
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from billing.ports import Gateway
from regua.api import api_routes
from regua.docs import docs_routes
from regua.gateway.asaas import AsaasGateway
from regua.http import EXCEPTION_HANDLERS, SendMails, error_response
from regua.logs import RequestIdMiddleware
from regua.ops.metrics import Metrics
from regua.ops.routes import ops_routes
from regua.portal.routes import portal_routes
from regua.runtime import Runtime
from webhooks.base import Provider
from webhooks.intake import Enqueue, Intake
from webhooks.routes import WebhookEndpoint, webhook_routes

YOUNG_OBJECTS = 10_000
"""The collector's first threshold while the app serves (CPython's default is 700)."""


class Background(Protocol):
    """Something that runs beside the app for its lifetime (the in-process worker, the scheduler)."""

    def start(self) -> None: ...
    def stop(self) -> None: ...


def create_app(
    runtime: Runtime,
    providers: Mapping[str, Provider],
    enqueue: Enqueue,
    background: Sequence[Background] = (),
    checks: Mapping[str, Callable[[], object]] | None = None,
    gateway: Gateway | None = None,
    broker: dramatiq.Broker | None = None,
    send_mails: SendMails | None = None,
    extra_routes: Sequence[BaseRoute] = (),
) -> Starlette:
    """The app; `checks` are what /readyz pings besides the database (the broker).

    `broker` is the one the jobs run on: the ops pages and /metrics read its queues and job counts.
    `send_mails` queues the emails the payment page records (without it, the next tick sends them).
    `extra_routes` are the development sandbox's (the gateway simulator, the mail viewer), matched
    before the ops pages.
    """
    intake = Intake(runtime.engine, runtime.clock, enqueue)
    metrics = Metrics(runtime, broker)
    endpoint = WebhookEndpoint(providers, intake, runtime.wall_clock, runtime.settings.max_body_bytes)
    gateway = gateway or AsaasGateway(runtime.settings.asaas_api_url, runtime.settings.asaas_api_key)

    async def healthz(_request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    def ping_database() -> None:
        with runtime.engine.connect() as connection:
            connection.execute(text("SELECT 1"))

    all_checks: dict[str, Callable[[], object]] = {"database": ping_database, **(checks or {})}

    async def readyz(_request: Request) -> JSONResponse:
        for name, check in all_checks.items():
            try:
                await run_in_threadpool(check)
            except Exception:
                return error_response(503, "unavailable", f"the {name} is unreachable")
        return JSONResponse({"status": "ready", **dict.fromkeys(all_checks, "ok")})

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        await intake.start()
        for part in background:
            part.start()
        # What exists after start-up lives as long as the process: keep the collector off it.
        gc.freeze()
        # And look at the young objects less often: the requests in flight hold a few hundred, so
        # the default (a pass every 700 allocations) ran every twenty webhooks or so and, under
        # the intake's load, never found a cycle to free.
        threshold = gc.get_threshold()
        gc.set_threshold(YOUNG_OBJECTS, *threshold[1:])
        try:
            yield
        finally:
            gc.set_threshold(*threshold)
            for part in reversed(background):
                await run_in_threadpool(part.stop)
            await intake.stop()
            runtime.close()

    routes: list[BaseRoute] = [
        *webhook_routes(endpoint),  # first: the router tries each route in turn, and these take the load
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        *docs_routes(),
        *extra_routes,
        *ops_routes(runtime, broker, enqueue, gateway),
        metrics.route(),
    ]
    routes += [api_routes(runtime, gateway, send_mails), *portal_routes(runtime, gateway, send_mails)]
    return Starlette(
        routes=routes,
        middleware=[Middleware(RequestIdMiddleware), metrics.middleware()],
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=lifespan,
    )
