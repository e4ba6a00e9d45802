"""The webhook routes: read the request once, authenticate, parse, store, answer exactly 200."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

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
    """The body, refused as soon as it passes `limit`, whether or not Content-Length announced it."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


class WebhookEndpoint:
    def __init__(self, providers: Mapping[str, Provider], intake: Intake, clock: Clock, max_body_bytes: int) -> None:
        self.providers = providers
        self.intake = intake
        self.clock = clock
        self.max_body_bytes = max_body_bytes

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
        delivery = Delivery(headers=request.headers, query=request.query_params, body=body)
        try:
            provider.authenticate(delivery, self.clock.now())
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
        Route("/webhooks/pix/pix", endpoint.handle, methods=["POST"]),
        Route("/webhooks/{provider}", endpoint.handle, methods=["POST"]),
    ]
