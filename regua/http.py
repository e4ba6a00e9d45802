"""HTTP plumbing shared by every route: the JSON error shape, JSON bodies, bearer authentication."""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy.exc import DBAPIError, OperationalError
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from billing.errors import BillingError, Conflict, InvalidInput, NotFound
from webhooks.routes import BodyTooLarge, read_limited
from webhooks.routes import error_response as error_response

log = logging.getLogger("regua.http")

_STATUS = {NotFound: 404, InvalidInput: 422, Conflict: 409}


async def billing_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, BillingError)
    return error_response(_STATUS.get(type(exc), 400), exc.code, exc.message)


async def http_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    codes = {404: "not_found", 405: "method_not_allowed", 401: "unauthorized", 413: "too_large"}
    # Keeps the headers the router set, such as `Allow` on a 405.
    return error_response(exc.status_code, codes.get(exc.status_code, "http_error"), str(exc.detail), exc.headers)


async def database_error(_request: Request, exc: Exception) -> Response:
    log.error("database unreachable: %s", type(exc).__name__)
    return error_response(503, "unavailable", "the database is unreachable; try again", {"Retry-After": "5"})


async def server_error(_request: Request, exc: Exception) -> Response:
    log.exception("unhandled error", exc_info=exc)
    return error_response(500, "internal_error", "something went wrong on our side")


class HTTPStatusError(BillingError):
    """An error that is about the HTTP request itself, with its own status."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


async def http_status_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPStatusError)
    return error_response(exc.status, exc.code, exc.message)


EXCEPTION_HANDLERS: dict[Any, Any] = {
    HTTPStatusError: http_status_error,
    BillingError: billing_error,
    HTTPException: http_error,
    OperationalError: database_error,
    DBAPIError: database_error,
    Exception: server_error,
}


async def json_body(request: Request, max_bytes: int) -> dict[str, Any]:
    """The request's JSON object, or a 415/413/400/422 naming what is wrong with it.

    Bodies are limited as webhook bodies are: refused as soon as they pass `max_bytes`, streamed or not.
    """
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != "application/json":
        raise HTTPStatusError(415, "unsupported_media_type", "the body must be application/json")
    try:
        raw = await read_limited(request, max_bytes)
    except BodyTooLarge:
        raise HTTPStatusError(413, "too_large", f"the body is over {max_bytes} bytes") from None
    except ClientDisconnect:
        raise HTTPStatusError(400, "disconnected", "the body was cut short") from None
    try:
        payload = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise HTTPStatusError(400, "invalid_json", "the body is not valid JSON") from None
    if not isinstance(payload, dict):
        raise InvalidInput("body", "must be a JSON object")
    return payload


class BearerAuthMiddleware:
    """Requires `Authorization: Bearer <token>`; an empty token (dev only) lets everyone in."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.token = token.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.token:
            await self.app(scope, receive, send)
            return
        header = dict(scope["headers"]).get(b"authorization", b"")
        scheme, _, given = header.partition(b" ")
        if scheme.lower() != b"bearer" or not hmac.compare_digest(given.strip(), self.token):
            response = error_response(
                401, "unauthorized", "a valid bearer token is required", {"WWW-Authenticate": "Bearer"}
            )
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


SendMails = Callable[[Sequence[str]], object]
"""Queues the emails a request just recorded (their notification ids), so they go out at once, not at the next tick."""
