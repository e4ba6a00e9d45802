"""The gateway's pace (a GCRA token bucket) and the Asaas client's answer to HTTP 429, at the HTTP seam with respx."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx

from billing.clock import FrozenClock
from billing.ports import CardCharge, GatewayUnavailable
from regua.gateway.asaas import AsaasGateway, throttled_backoff
from regua.gateway.throttle import LocalBucket, Pace, gateway_limiter, retry_after_seconds

BASE = "https://asaas.test"
FIXTURES = Path(__file__).parent.parent / "fixtures" / "asaas_api"
NOW = datetime(2026, 12, 1, 3, 5, tzinfo=UTC)


def card() -> CardCharge:
    return CardCharge(
        charge_id="chg_throttled1",
        customer_id="cus_000005113026",
        amount_cents=18990,
        due_date=date(2026, 12, 1),
        card_token="tok_ok",
        remote_ip="203.0.113.10",
        first_contact=True,
    )


def confirmed() -> httpx.Response:
    body = json.loads((FIXTURES / "payment_card_confirmed.json").read_text(encoding="utf-8"))
    body["externalReference"] = "chg_throttled1"
    return httpx.Response(200, json=body)


def throttled(**headers: str) -> httpx.Response:
    return httpx.Response(429, headers=headers, json={"errors": [{"code": "too_many_requests", "description": "..."}]})


class CountingLimiter:
    def __init__(self) -> None:
        self.tokens = 0

    def acquire(self) -> None:
        self.tokens += 1


@pytest.fixture
def asaas() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=f"{BASE}/v3", assert_all_called=False) as router:
        yield router


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def limiter() -> CountingLimiter:
    return CountingLimiter()


@pytest.fixture
def gateway(sleeps: list[float], limiter: CountingLimiter) -> Iterator[AsaasGateway]:
    client = AsaasGateway(
        BASE,
        "test-api-key",
        max_attempts=1,
        sleep=sleeps.append,
        limiter=limiter,
        throttle_patience=60,
        wall_clock=FrozenClock(NOW),
    )
    with client:
        yield client


# -- the client and HTTP 429


def test_a_429_with_retry_after_in_seconds_is_waited_out_and_the_card_charged_once(
    asaas: respx.MockRouter, gateway: AsaasGateway, sleeps: list[float]
) -> None:
    create = asaas.post("/payments").mock(side_effect=[throttled(**{"Retry-After": "3"}), confirmed()])

    payment = gateway.charge_card(card())

    assert payment.is_paid
    assert create.call_count == 2
    assert sleeps == [3.0]
    sent = [json.loads(call.request.content)["externalReference"] for call in create.calls]
    assert sent == ["chg_throttled1", "chg_throttled1"]


def test_a_retry_after_given_as_an_http_date_waits_until_that_instant_on_the_clock_given(
    asaas: respx.MockRouter, gateway: AsaasGateway, sleeps: list[float]
) -> None:
    later = "Tue, 01 Dec 2026 03:05:07 GMT"  # NOW + 7 s
    asaas.post("/payments").mock(side_effect=[throttled(**{"Retry-After": later}), confirmed()])

    gateway.charge_card(card())

    assert sleeps == [7.0]


def test_asaas_own_ratelimit_reset_header_is_honoured_when_retry_after_is_missing(
    asaas: respx.MockRouter, gateway: AsaasGateway, sleeps: list[float]
) -> None:
    reset = throttled(**{"RateLimit-Limit": "100", "RateLimit-Remaining": "0", "RateLimit-Reset": "12"})
    asaas.post("/payments").mock(side_effect=[reset, confirmed()])

    gateway.charge_card(card())

    assert sleeps == [12.0]


def test_429s_that_name_no_wait_back_off_exponentially_without_using_up_the_attempts(
    asaas: respx.MockRouter, gateway: AsaasGateway, sleeps: list[float]
) -> None:
    create = asaas.post("/payments").mock(side_effect=[throttled(), throttled(), throttled(), confirmed()])

    assert gateway.charge_card(card()).is_paid  # one attempt (max_attempts=1), three 429s inside it

    assert create.call_count == 4
    assert sleeps == [1.0, 2.0, 4.0]
    assert [throttled_backoff(n) for n in range(1, 8)] == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]


def test_a_gateway_throttling_past_the_patience_is_unavailable_with_nothing_created_never_a_decline(
    asaas: respx.MockRouter, gateway: AsaasGateway, sleeps: list[float]
) -> None:
    create = asaas.post("/payments").mock(return_value=throttled(**{"Retry-After": "25"}))

    with pytest.raises(GatewayUnavailable) as unavailable:
        gateway.charge_card(card())

    assert type(unavailable.value) is GatewayUnavailable
    assert unavailable.value.outcome_unknown is False
    assert "429" in str(unavailable.value)
    assert sleeps == [25.0, 25.0]  # a third wait would pass the 60 s of patience
    assert create.call_count == 3


def test_a_retry_after_longer_than_the_patience_gives_the_job_back_at_once(
    asaas: respx.MockRouter, gateway: AsaasGateway, sleeps: list[float]
) -> None:
    asaas.post("/payments").mock(return_value=throttled(**{"Retry-After": "3600"}))

    with pytest.raises(GatewayUnavailable):
        gateway.charge_card(card())

    assert sleeps == []


def test_every_request_the_client_sends_takes_a_token_first_retries_of_a_429_included(
    asaas: respx.MockRouter, gateway: AsaasGateway, limiter: CountingLimiter
) -> None:
    lookup = asaas.get("/payments").mock(return_value=httpx.Response(200, json={"data": []}))
    create = asaas.post("/payments").mock(side_effect=[throttled(**{"Retry-After": "1"}), confirmed()])

    gateway.find_by_reference("chg_throttled1")
    gateway.charge_card(card())

    assert limiter.tokens == lookup.call_count + create.call_count == 3


# -- Retry-After


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("5", 5.0),
        ("0", 0.0),
        ("1.5", 1.5),
        ("-3", 0.0),
        ("Tue, 01 Dec 2026 03:06:00 GMT", 60.0),
        ("Tue, 01 Dec 2026 03:00:00 GMT", 0.0),
        ("soon", None),
        ("", None),
        (None, None),
        ("nan", None),
    ],
)
def test_retry_after_is_read_as_seconds_or_an_http_date_from_now(header: str | None, seconds: float | None) -> None:
    assert retry_after_seconds(header, NOW) == seconds


# -- the bucket


def test_the_pace_spaces_reservations_one_interval_apart_after_the_burst() -> None:
    pace = Pace(rate=50, burst=2)
    tat, waits = 0, []
    for _ in range(5):
        tat, wait = pace.reserve(tat, 1_000_000)
        waits.append(wait)

    assert pace.interval_us == 20_000
    assert waits == [0, 0, 20_000, 40_000, 60_000]


def test_an_idle_bucket_does_not_save_up_more_than_its_burst() -> None:
    pace = Pace(rate=10)
    tat, _ = pace.reserve(0, 0)
    tat, wait = pace.reserve(tat, 60_000_000)  # a minute later
    assert wait == 0
    _, wait = pace.reserve(tat, 60_000_000)
    assert wait == 100_000


class FakeTime:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_a_local_bucket_lets_n_requests_through_in_n_over_the_rate_seconds() -> None:
    clock = FakeTime()
    bucket = LocalBucket(Pace(rate=25), monotonic=clock.monotonic, sleep=clock.sleep)

    for _ in range(101):
        bucket.acquire()

    assert clock.now - 100.0 == pytest.approx(100 / 25)


@pytest.mark.parametrize("rate", [0, -1, float("inf"), float("nan")])
def test_a_pace_refuses_a_rate_that_is_not_a_positive_number(rate: float) -> None:
    with pytest.raises(ValueError, match="positive number"):
        Pace(rate)


def test_without_a_broker_the_pace_is_kept_by_each_process_and_shared_by_its_clients() -> None:
    limiter: Any = gateway_limiter(12.5, "")

    assert isinstance(limiter, LocalBucket)
    assert limiter.pace == Pace(12.5)
    assert gateway_limiter(12.5, "") is limiter
