"""The simulated Asaas saying HTTP 429 Too Many Requests to a share of the API's requests, and its control.

A share of 0.3 refuses 3 requests in every 10 to `/v3/`, evenly and deterministically (an accumulator,
not a die: a test sees the same share however its requests interleave), before they reach the ledger:
nothing is created or changed by a refused request, as with Asaas. The answer carries `Retry-After`
(seconds) and Asaas's own `RateLimit-Limit`, `RateLimit-Remaining: 0` and `RateLimit-Reset` with the
same wait, and Asaas's error body.

`POST /sim/throttle {"share": 0.3, "retry_after": 1}` sets it (share 0 turns it off); `GET /sim/throttle`
reads it with the count of requests refused and let through since it was set.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from regua.sandbox.simulator.common import AsaasJSONResponse, SimulatorError, error_response, json_body

CONTROL = "/sim/throttle"


@dataclass
class Throttle:
    """How much of the API the simulator refuses with a 429, and how long it asks clients to wait."""

    share: Decimal = Decimal(0)
    retry_after: int = 1
    throttled: int = 0
    passed: int = 0
    _owed: Decimal = Decimal(0)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def set(self, share: Decimal, retry_after: int) -> None:
        if not 0 <= share < 1:
            raise SimulatorError(400, "invalid_share", "share is a fraction of requests, from 0 up to (not) 1.")
        if retry_after < 0:
            raise SimulatorError(400, "invalid_retry_after", "retry_after is a whole number of seconds, 0 or more.")
        with self._lock:
            self.share, self.retry_after = share, retry_after
            self.throttled = self.passed = 0
            self._owed = Decimal(0)

    def refuse_next(self) -> bool:
        """Whether this request is one of the share refused."""
        with self._lock:
            self._owed += self.share
            if self._owed >= 1:
                self._owed -= 1
                self.throttled += 1
                return True
            self.passed += 1
            return False

    def state(self) -> dict[str, object]:
        return {
            "share": self.share,
            "retry_after": self.retry_after,
            "throttled": self.throttled,
            "passed": self.passed,
        }


class ThrottleMiddleware:
    """Refuses its share of `/v3/` with a 429, and serves the control at `/sim/throttle`."""

    def __init__(self, app: ASGIApp, throttle: Throttle) -> None:
        self.app = app
        self.throttle = throttle

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path, root = scope.get("path", ""), scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root) :]
        if path == CONTROL:
            await self._control(scope, receive, send)
        elif path.startswith("/v3/") and self.throttle.refuse_next():
            await self._refuse(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        wait = str(self.throttle.retry_after)
        response = error_response(
            SimulatorError(429, "too_many_requests", "Limite de requisições atingido. Tente novamente mais tarde.")
        )
        response.headers.update(
            {"Retry-After": wait, "RateLimit-Limit": "100", "RateLimit-Remaining": "0", "RateLimit-Reset": wait}
        )
        await response(scope, receive, send)

    async def _control(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] == "POST":
            try:
                body = await json_body(Request(scope, receive))
                self.throttle.set(_share(body.get("share", 0)), _seconds(body.get("retry_after", 1)))
            except SimulatorError as error:
                await error_response(error)(scope, receive, send)
                return
        await AsaasJSONResponse(self.throttle.state())(scope, receive, send)


def _share(value: object) -> Decimal:
    if isinstance(value, bool):
        raise SimulatorError(400, "invalid_share", f"share must be a number, not {value!r}.")
    try:
        share = Decimal(str(value))
    except InvalidOperation:
        raise SimulatorError(400, "invalid_share", f"share must be a number, not {value!r}.") from None
    if not share.is_finite():
        raise SimulatorError(400, "invalid_share", f"share must be a number, not {value!r}.")
    return share


def _seconds(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise SimulatorError(400, "invalid_retry_after", f"retry_after is a whole number of seconds, not {value!r}.")
    return value
