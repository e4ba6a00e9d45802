"""Who may see /ops and /metrics (HTTP Basic or bearer, the ops token), and the forms' CSRF tokens."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time

from starlette.requests import Request

from regua.settings import Settings

CSRF_LIFETIME_S = 12 * 3600
REALM = 'Basic realm="regua ops", charset="UTF-8"'


def operator(request: Request, settings: Settings) -> str | None:
    """The person making the request, or None when the credentials are missing or wrong.

    The password is the ops token; the Basic user name is recorded on every action (`ops`, or a
    person's own name). With no token configured the pages are open in dev only: production refuses
    to start without one, and any other environment refuses every request.
    """
    token = settings.ops_token
    if not token:
        return "dev" if settings.env == "dev" else None
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer":
        return "ops" if hmac.compare_digest(value.strip().encode(), token.encode()) else None
    if scheme.lower() != "basic":
        return None
    try:
        user, _, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    if not hmac.compare_digest(password.encode(), token.encode()):
        return None
    name = " ".join(user.split())[:100]
    return name or "ops"


def _signature(secret_key: str, who: str, issued: int) -> str:
    message = f"ops-csrf:{who}:{issued}".encode()
    return hmac.new(secret_key.encode(), message, hashlib.sha256).hexdigest()[:32]


def csrf_token(secret_key: str, who: str, now: float | None = None) -> str:
    """A token bound to the person and signed with REGUA_SECRET_KEY; valid for 12 hours."""
    issued = int(time.time() if now is None else now)
    return f"{issued}.{_signature(secret_key, who, issued)}"


def csrf_valid(secret_key: str, who: str, token: str, now: float | None = None) -> bool:
    issued_text, _, signature = token.partition(".")
    if not issued_text.isdigit():
        return False
    issued = int(issued_text)
    age = int(time.time() if now is None else now) - issued
    if age < 0 or age > CSRF_LIFETIME_S:
        return False
    return hmac.compare_digest(signature.encode(), _signature(secret_key, who, issued).encode())
