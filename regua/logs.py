"""Logging for every regua process: readable lines or one JSON object per line, ids named, secrets never.

Each record names what it concerns: the HTTP request (a request id per request, echoed in the
`X-Request-Id` header) and the event, charge, invoice, account... ids, taken from `extra=` or
recognised by their prefix among the message's arguments. Before a line is written, every
configured secret and anything shaped like a CPF or CNPJ is replaced by `[redacted]`.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import sys
from collections import deque
from collections.abc import Iterable
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from regua.settings import Settings

request_id: ContextVar[str | None] = ContextVar("request_id", default=None)

ID_FIELDS = (
    "request_id",
    "event_id",
    "charge_id",
    "invoice_id",
    "account_id",
    "payment_id",
    "refund_id",
    "notification_id",
    "subscription_id",
    "block_id",
    "targets",
)
PREFIXES = {
    "evt": "event_id",
    "chg": "charge_id",
    "inv": "invoice_id",
    "pay": "payment_id",
    "ref": "refund_id",
    "ntf": "notification_id",
    "sub": "subscription_id",
    "blk": "block_id",
}
ID_PATTERN = re.compile(r"^(evt|chg|inv|pay|ref|ntf|sub|blk)_[0-9a-f]{8,32}$")
# CPF (11 digits) and CNPJ (14 digits), bare or punctuated; not inside a longer word (an id's hex, a number).
DOCUMENT = re.compile(r"(?<!\w)(\d{3}\.?\d{3}\.?\d{3}-?\d{2}|\d{2}\.?\d{3}\.?\d{3}/?\d{4}-?\d{2})(?!\w)")
REDACTED = "[redacted]"


def secrets_of(settings: Settings) -> list[str]:
    """Every value a log line must never show, longest first (so a secret inside another goes too)."""
    values = [
        settings.api_token,
        settings.ops_token,
        settings.secret_key,
        settings.asaas_webhook_token,
        settings.asaas_api_key,
        settings.pix_webhook_secret,
        *settings.standard_webhook_secrets,
        *(secret.removeprefix("whsec_") for secret in settings.standard_webhook_secrets),
    ]
    password = _password(settings.database_url) or _password(settings.broker_url) or _password(settings.smtp_url)
    values.append(password or "")
    return sorted({value for value in values if len(value) >= 4}, key=len, reverse=True)


def _password(url: str) -> str | None:
    found = re.match(r"^[a-z0-9+]+://[^:/@]*:([^@]+)@", url)
    return found.group(1) if found else None


class RedactingFilter(logging.Filter):
    """Renders the message once, scrubbed, so no handler can print a secret or a document number."""

    def __init__(self, hidden: Iterable[str]) -> None:
        super().__init__()
        self.hidden = list(hidden)

    def scrub(self, text: str) -> str:
        for value in self.hidden:
            text = text.replace(value, REDACTED)
        return DOCUMENT.sub(REDACTED, text)

    def filter(self, record: logging.LogRecord) -> bool:
        found = _ids(record)
        for name, value in found.items():
            if not hasattr(record, name):
                setattr(record, name, value)
        current = request_id.get()
        if current is not None and not hasattr(record, "request_id"):
            record.request_id = current
        record.msg = self.scrub(record.getMessage())
        record.args = None
        if record.exc_info:
            record.exc_text = self.scrub(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        if record.stack_info:
            record.stack_info = self.scrub(record.stack_info)
        return True


def _ids(record: logging.LogRecord) -> dict[str, str]:
    args = record.args if isinstance(record.args, tuple) else ()
    found: dict[str, str] = {}
    for arg in args:
        if isinstance(arg, str) and ID_PATTERN.match(arg):
            found.setdefault(PREFIXES[arg[:3]], arg)
    return found


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the ids it concerns, the error if any."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in ID_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                line[name] = value
        if record.exc_text:
            line["error"] = record.exc_text
        elif record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """The readable line, with the ids appended as key=value."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        ids = " ".join(f"{name}={getattr(record, name)}" for name in ID_FIELDS if getattr(record, name, None))
        return f"{text} [{ids}]" if ids else text


def configure_logging(settings: Settings, stream: Any = None) -> None:
    """The root logger for this process: one handler, the chosen format, secrets scrubbed."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if settings.log_format == "json" else TextFormatter())
    handler.addFilter(RedactingFilter(secrets_of(settings)))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    # uvicorn and Dramatiq install handlers of their own; theirs go through ours instead.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "dramatiq"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True


SANE_REQUEST_ID = re.compile(rb"[A-Za-z0-9._-]{8,64}")
"""An `X-Request-Id` kept as given; any other value is replaced by one of ours."""

_request_ids: deque[str] = deque()
os.register_at_fork(after_in_child=_request_ids.clear)  # a forked child never hands out its parent's


def new_request_id() -> str:
    """`req_` and 16 hex digits from the system's randomness, read for 512 ids at a time, not once a request."""
    try:
        return _request_ids.popleft()
    except IndexError:
        entropy = secrets.token_hex(8 * 512)
        _request_ids.extend(f"req_{entropy[start : start + 16]}" for start in range(0, len(entropy), 16))
        return _request_ids.popleft()


class RequestIdMiddleware:
    """Gives each HTTP request an id (or keeps a sane `X-Request-Id`), for its log lines and its answer.

    Pure ASGI and as cheap as it can be: every request crosses it.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = b""
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                given = value  # the last one, if it came twice
        if SANE_REQUEST_ID.fullmatch(given):
            current = given.decode("latin-1")
            header = (b"x-request-id", given)
        else:
            current = new_request_id()
            header = (b"x-request-id", current.encode())
        token = request_id.set(current)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), header]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            request_id.reset(token)
