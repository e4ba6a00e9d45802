"""The payment page's link tokens: signed with REGUA_SECRET_KEY, naming one account, valid 60 days.

The expiry travels inside the signed payload and is checked against regua's clock (not the system's),
so the frozen test clock and virtual time move it like everything else.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from itsdangerous import BadSignature, URLSafeSerializer

TOKEN_LIFETIME = timedelta(days=60)
_SALT = "regua.portal.v1"


class InvalidToken(Exception):
    """The token was not signed by this service, or was changed: nothing in it can be trusted."""


class ExpiredToken(Exception):
    """A genuine token past its 60 days: the customer needs the link of a newer email."""


@dataclass(frozen=True)
class PortalToken:
    account_id: str
    expires_at: datetime


class PortalTokens:
    """Issues and reads tokens; one instance per secret key."""

    def __init__(self, secret_key: str, lifetime: timedelta = TOKEN_LIFETIME) -> None:
        if not secret_key:
            raise ValueError("the payment page needs REGUA_SECRET_KEY to sign its links")
        self._serializer = URLSafeSerializer(secret_key, salt=_SALT)
        self.lifetime = lifetime

    def issue(self, account_id: str, now: datetime) -> str:
        expires = int((now + self.lifetime).timestamp())
        return str(self._serializer.dumps({"a": account_id, "x": expires}))

    def read(self, token: str, now: datetime) -> PortalToken:
        """The account a token names; raises InvalidToken or ExpiredToken."""
        try:
            payload = self._serializer.loads(token)
        except BadSignature:
            raise InvalidToken("bad signature") from None
        if not (
            isinstance(payload, dict)
            and isinstance(payload.get("a"), str)
            and isinstance(payload.get("x"), int)
            and not isinstance(payload.get("x"), bool)
        ):
            raise InvalidToken("unexpected payload")
        expires_at = datetime.fromtimestamp(payload["x"], UTC)
        if now >= expires_at:
            raise ExpiredToken(f"expired at {expires_at.isoformat()}")
        return PortalToken(payload["a"], expires_at)
