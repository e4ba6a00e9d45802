"""The gateway never flooded: a throttled card charge on the real books, and the shared pace measured on Redis."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from billing.charging import make_card_charge, plan_auto_debits
from billing.invoicing import issue_due_invoices
from billing.models import Charge, Payment
from billing.ports import GatewayUnavailable
from billing.states import AttemptOutcome
from regua.gateway.asaas import AsaasGateway
from regua.gateway.throttle import LocalBucket, Pace, SharedBucket
from regua.runtime import Runtime
from tests.conftest import REDIS_URL, service_missing
from tests.integration.asaas_fake import BASE, FakeAsaas, fake_asaas
from tests.integration.conftest import Api

ACCOUNT = "padaria-central"


def throttled(retry_after: str) -> httpx.Response:
    return httpx.Response(429, headers={"Retry-After": retry_after})


@pytest.fixture
def asaas() -> Iterator[FakeAsaas]:
    with fake_asaas() as fake:
        yield fake


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def gateway(sleeps: list[float]) -> Iterator[AsaasGateway]:
    """As the workers build it (one attempt a job), with its sleeps recorded instead of slept."""
    with AsaasGateway(BASE, "asaas-test-key", max_attempts=1, sleep=sleeps.append, throttle_patience=10) as client:
        yield client


@pytest.fixture
def charge_id(api: Api, runtime: Runtime) -> str:
    """The day-1 charge of a card auto-debit customer's December invoice (R$ 189,90)."""
    api.put_account(ACCOUNT)
    api.subscribe(ACCOUNT, "platform", payment_method="card_auto_debit", card_token="tok_ok")
    now = runtime.clock.now()
    runtime.transaction(lambda session: issue_due_invoices(session, now, runtime.calendar))
    [planned] = runtime.transaction(lambda session: plan_auto_debits(session, now, runtime.calendar, runtime.policy))
    return str(planned)


def the_charge(runtime: Runtime, charge_id: str) -> Charge:
    query = select(Charge).options(selectinload(Charge.attempts)).where(Charge.id == charge_id)
    charge = runtime.read(lambda session: session.scalars(query).one())
    assert isinstance(charge, Charge)
    return charge


def test_a_429_then_an_approval_charges_the_card_once_after_the_wait_asked_for(
    runtime: Runtime, gateway: AsaasGateway, asaas: FakeAsaas, charge_id: str, sleeps: list[float]
) -> None:
    asaas.next_create = [throttled("2")]

    assert make_card_charge(runtime, gateway, charge_id).outcome == "settled"

    assert sleeps == [2.0]
    assert [sent["externalReference"] for sent in asaas.sent()] == [charge_id, charge_id]
    assert len(asaas.payments) == 1
    charge = the_charge(runtime, charge_id)
    assert [(a.outcome, a.decline_class) for a in charge.attempts] == [(AttemptOutcome.ANSWERED.value, None)]
    assert len(runtime.read(lambda session: list(session.scalars(select(Payment))))) == 1


def test_a_gateway_still_throttling_leaves_the_attempt_unavailable_and_the_next_job_charges_the_same_reference(
    runtime: Runtime, gateway: AsaasGateway, asaas: FakeAsaas, charge_id: str
) -> None:
    asaas.next_create = [throttled("4"), throttled("4"), throttled("4")]

    with pytest.raises(GatewayUnavailable):
        make_card_charge(runtime, gateway, charge_id)

    charge = the_charge(runtime, charge_id)
    assert charge.status == "pending"
    assert [(a.outcome, a.decline_class, a.decline_code) for a in charge.attempts] == [
        (AttemptOutcome.UNAVAILABLE.value, None, None)
    ]
    assert asaas.payments == {}

    assert make_card_charge(runtime, gateway, charge_id).outcome == "settled"  # Dramatiq's retry of the job
    charge = the_charge(runtime, charge_id)
    assert [a.outcome for a in sorted(charge.attempts, key=lambda a: a.number)] == ["unavailable", "answered"]
    assert {sent["externalReference"] for sent in asaas.sent()} == {charge_id}
    assert len(asaas.payments) == 1


# -- the shared pace, on Redis


@pytest.fixture
def redis_client() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as error:
        client.close()
        service_missing("Redis", error)
    yield client
    client.close()


def test_two_clients_on_one_redis_bucket_share_its_rate_n_requests_in_about_n_over_rps_seconds(
    redis_client: redis.Redis,
) -> None:
    rate, per_client = 50.0, 50
    key = f"regua:test:pace:{uuid.uuid4().hex}"
    buckets = [SharedBucket(redis.Redis.from_url(REDIS_URL), Pace(rate), key=key) for _ in range(2)]
    stamps: list[float] = []
    lock = threading.Lock()
    gate = threading.Barrier(2)

    def send(bucket: SharedBucket) -> None:
        gate.wait()
        for _ in range(per_client):
            bucket.acquire()
            with lock:
                stamps.append(time.monotonic())

    threads = [threading.Thread(target=send, args=(bucket,)) for bucket in buckets]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    elapsed = max(stamps) - started
    requests = 2 * per_client
    ideal = (requests - 1) / rate  # the first goes at once, then one every 1/rate seconds
    print(f"{requests} requests at {rate:.0f}/s from two clients: {elapsed:.3f} s, {elapsed / ideal:.3f} of the ideal")

    assert len(stamps) == requests
    assert 0.95 * ideal <= elapsed <= 1.25 * ideal
    window = sorted(stamps)
    # No second of the run saw more than the rate (with a little room for the threads' own jitter).
    assert max(sum(1 for t in window if s <= t < s + 1) for s in window) <= rate * 1.1
    redis_client.delete(key)


def test_with_redis_gone_a_shared_bucket_keeps_the_pace_alone_in_its_process() -> None:
    slept: list[float] = []
    unreachable = redis.Redis(port=1, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0))
    tries: list[str] = []
    connect = unreachable.connection_pool.get_connection

    def counted(*args: Any, **kwargs: Any) -> Any:
        tries.append("connect")
        return connect(*args, **kwargs)

    unreachable.connection_pool.get_connection = counted  # type: ignore[method-assign]
    now = [100.0]
    pace = Pace(10)
    alone = LocalBucket(pace, monotonic=lambda: now[0], sleep=slept.append)
    bucket = SharedBucket(unreachable, pace, fallback=alone, monotonic=lambda: now[0])

    for _ in range(3):
        bucket.acquire()

    assert slept == [0.1, 0.2]  # the local slots, 0.1 s apart from the first
    assert len(tries) == 1  # Redis asked once, then left alone for a few seconds
    now[0] += 10
    bucket.acquire()
    assert len(tries) == 2
