"""The webhook routes: read the request once, authenticate, parse, store, answer exactly 200."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from starlette.datastructures import QueryParams
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from billing.clock import Clock
from webhooks.base import Delivery, Provider, WebhookError, check_storable
from webhooks.intake import Intake, StoreUnavailable

log = logging.getLogger("regua.webhooks")

_DUPLICATE = Response(b'{"status": "duplicate"}', status_code=200, media_type="application/json")


def accepted(event_ids: list[str]) -> Response:
    """`{"status": "accepted", "event_ids": [...]}`, written by hand: the ids are ours (letters, digits, "_")."""
    listed = '", "'.join(event_ids)
    body = f'{{"status": "accepted", "event_ids": ["{listed}"]}}'.encode()
    return Response(body, status_code=200, media_type="application/json")


def error_response(status: int, code: str, message: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    """The one error shape of SPEC section 4: `{"error": {"code", "message"}}`."""
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


class BodyTooLarge(Exception):
    pass


async def read_limited(request: Request, limit: int) -> bytes:
    """The body, refused as soon as it passes `limit`, whether or not Content-Length announced it.

    Read from the ASGI messages themselves (what `request.stream()` does, without an async generator
    around each request); the request's body is read once, here.
    """
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await request.receive()
        if message["type"] == "http.request":
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise BodyTooLarge
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)
        elif message["type"] == "http.disconnect":
            raise ClientDisconnect


_NO_QUERY = QueryParams()


class WebhookEndpoint:
    def __init__(
        self, providers: Mapping[str, Provider], intake: Intake, wall_clock: Clock, max_body_bytes: int
    ) -> None:
        """`wall_clock` is the real time that signatures' tolerances protect the transport with, never the
        shared or frozen business clock: a delivery signed now is fresh whatever `regua clock set` did."""
        self.providers = providers
        self.intake = intake
        self.wall_clock = wall_clock
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The routes' ASGI app: Starlette's per-request wrapper left out, its exception handling being
        the app's own, which anything raised here reaches all the same."""
        response = await self.handle(Request(scope, receive))
        await response(scope, receive, send)

    async def handle(self, request: Request) -> Response:
        provider = self.providers.get(request.path_params.get("provider", "pix"))
        if provider is None:
            return error_response(404, "unknown_provider", "no such webhook provider")
        media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media_type != "application/json":
            return error_response(415, "unsupported_media_type", "webhook bodies must be application/json")
        try:
            body = await read_limited(request, self.max_body_bytes)
        except BodyTooLarge:
            return error_response(413, "too_large", f"the body is over {self.max_body_bytes} bytes")
        except ClientDisconnect:
            return error_response(400, "disconnected", "the body was cut short")
        query = request.query_params if request.scope["query_string"] else _NO_QUERY
        delivery = Delivery(headers=request.headers, query=query, body=body)
        try:
            provider.authenticate(delivery, self.wall_clock.now())
            events = provider.parse(delivery)
            check_storable(events)
        except WebhookError as error:
            return error_response(error.status, error.code, error.message)
        try:
            stored = await self.intake.submit(provider.name, events)
        except StoreUnavailable:
            return error_response(
                503, "unavailable", "the database is unreachable; deliver again", {"Retry-After": "5"}
            )
        # A duplicate's ids are those of the first delivery: finding them would cost a query per retry.
        return accepted(stored) if stored else _DUPLICATE


def webhook_routes(endpoint: WebhookEndpoint) -> list[Route]:
    return [
        Route("/webhooks/{provider}", endpoint, methods=["POST"]),  # does not match the next one's path
        Route("/webhooks/pix/pix", endpoint, methods=["POST"]),
    ]
