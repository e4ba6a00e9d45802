"""Asaas's transport: one request sent with the API key, paced by the limiter, retried by the policy.

A request that surely never reached Asaas (connection refused, connect timeout, a 429 waited out past
patience) is sent again; one that may have reached it (a read timeout, a 5xx) is retried only when the
caller says it may be (`retry_unclear`), and is told apart in the answer, so a create can look its charge
up by reference before posting again.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

import httpx

from billing.clock import Clock, SystemClock
from billing.ports import GatewayUnavailable
from regua.gateway.throttle import RateLimiter, Unlimited, retry_after_seconds

DEFAULT_TIMEOUT = httpx.Timeout(20.0, connect=5.0)


def default_backoff(attempt: int) -> float:
    """Seconds to wait after failed attempt number `attempt` (1, 2, ...): 0.5, 1, 2, 4, then 8."""
    return float(min(0.5 * 2 ** (attempt - 1), 8.0))


def throttled_backoff(times: int) -> float:
    """Seconds to wait after the `times`-th 429 in a row that named no wait: 1, 2, 4, 8, 16, then 30."""
    return float(min(2 ** (times - 1), 30))


class NotDelivered(Exception):
    """The request surely did not reach Asaas (or Asaas refused to look at it): safe to send again."""


class Unclear(Exception):
    """The request may have reached Asaas, but no answer we can read came back."""


class AsaasTransport:
    """Requests to `{base_url}/v3`, with the retry policy and the pace; thread-safe."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        client: httpx.Client | None,
        max_attempts: int,
        backoff: Callable[[int], float],
        sleep: Callable[[float], None] = time.sleep,
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
        user_agent: str = "regua",
        limiter: RateLimiter | None = None,
        throttle_patience: float = 60.0,
        wall_clock: Clock | None = None,
    ) -> None:
        base = base_url.rstrip("/").removesuffix("/v3")
        self._api = f"{base}/v3"
        self._headers = {"access_token": api_key, "User-Agent": user_agent, "Accept": "application/json"}
        self._owns_client = client is None
        self._client = client if client is not None else httpx.Client(timeout=timeout)
        self._max_attempts = max_attempts
        self._backoff = backoff
        self._sleep = sleep
        self._limiter: RateLimiter = limiter or Unlimited()
        self._throttle_patience = throttle_patience
        self._wall_clock = wall_clock or SystemClock()

    def close(self) -> None:
        if self._owns_client:
            self._client.close()

    def call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: bytes | None = None,
        retry_unclear: bool,
    ) -> tuple[httpx.Response, bool]:
        """Send with retries: Asaas's answer (below 500, not 429), and whether an attempt was unclear."""
        unclear: str | None = None
        for attempt in range(1, self._max_attempts + 1):
            if attempt > 1:
                self._sleep(self._backoff(attempt - 1))
            try:
                return self.send(method, path, params=params, body=body), unclear is not None
            except NotDelivered:
                continue
            except Unclear as error:
                unclear = str(error)
                if not retry_unclear:
                    raise GatewayUnavailable(f"{method} {path}: {error}", outcome_unknown=True) from None
        raise GatewayUnavailable(
            f"{method} {path}: no answer after {self._max_attempts} attempts ({unclear or 'not reachable'})",
            outcome_unknown=unclear is not None and method != "GET",
        )

    def send(
        self, method: str, path: str, *, params: Mapping[str, str] | None = None, body: bytes | None = None
    ) -> httpx.Response:
        headers = dict(self._headers)
        if body is not None:
            headers["Content-Type"] = "application/json"
        waited, throttled = 0.0, 0
        while (response := self._send_once(method, path, params, body, headers)).status_code == 429:
            throttled += 1
            wait = self._throttled_wait(response, throttled)
            if waited + wait > self._throttle_patience:
                raise NotDelivered(f"HTTP 429 (rate limited) {throttled} times, {waited:.1f} s waited")
            self._sleep(wait)
            waited += wait
        if response.status_code >= 500:
            raise Unclear(f"HTTP {response.status_code}")
        return response

    def _throttled_wait(self, response: httpx.Response, throttled: int) -> float:
        """How long Asaas asked us to wait (Retry-After, else RateLimit-Reset), else the exponential backoff."""
        now = self._wall_clock.now()
        for header in ("Retry-After", "RateLimit-Reset"):
            if (seconds := retry_after_seconds(response.headers.get(header), now)) is not None:
                return seconds
        return throttled_backoff(throttled)

    def _send_once(
        self,
        method: str,
        path: str,
        params: Mapping[str, str] | None,
        body: bytes | None,
        headers: Mapping[str, str],
    ) -> httpx.Response:
        self._limiter.acquire()
        try:
            return self._client.request(method, self._api + path, params=params, content=body, headers=headers)
        except (
            httpx.ConnectError,
            httpx.ConnectTimeout,
            httpx.PoolTimeout,
            httpx.UnsupportedProtocol,
        ) as error:
            raise NotDelivered(f"{type(error).__name__}: {error}") from error
        except httpx.TransportError as error:
            raise Unclear(f"{type(error).__name__}: {error}") from error

    def once(self, method: str, path: str, *, params: Mapping[str, str], timeout: float) -> httpx.Response:
        """One paced request within `timeout` seconds, no retry (a page asking the gateway as it renders)."""
        self._limiter.acquire()
        return self._client.request(method, self._api + path, params=params, headers=self._headers, timeout=timeout)
