"""With the shared clock moved a month ahead of the real time: signatures are checked on the wall clock, while
the events' instants and the ops overview's windows follow regua's clock."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import pytest
import respx
from starlette.testclient import TestClient

from billing.clock import FrozenClock, SystemClock, parse_instant
from billing.shared_clock import StoredClock, store_instant
from regua.app import create_app
from regua.assembly import build_jobs, build_providers
from regua.runtime import Runtime, build_runtime
from regua.sandbox.trigger_wire import ChargeRef, Wire
from regua.settings import Settings
from tests.integration.ops_helpers import OPS_TOKEN, basic
from tests.integration.webhook_helpers import event_rows, fixture, pix_url, standard_body, standard_headers
from webhooks.base import Delivery
from webhooks.standard import StandardProvider
from workers.stats import JobStats

AHEAD = timedelta(days=30)


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return replace(settings, ops_token=OPS_TOKEN)


@pytest.fixture
def shared(settings: Settings) -> Iterator[Runtime]:
    """A runtime on the shared clock, as every process outside production has, set a month ahead."""
    runtime = build_runtime(settings)
    assert isinstance(runtime.clock, StoredClock)
    move(runtime, SystemClock().now() + AHEAD)
    yield runtime
    runtime.close()


def move(runtime: Runtime, instant: datetime) -> None:
    runtime.transaction(lambda session: store_instant(session, instant, SystemClock().now()))
    assert isinstance(runtime.clock, StoredClock)
    runtime.clock.forget()


@pytest.fixture
def client(shared: Runtime) -> Iterator[TestClient]:
    app = create_app(shared, build_providers(shared.settings), lambda _ids: None)
    with TestClient(app) as test_client:
        yield test_client


def post_standard(client: TestClient, message_id: str, signed_at: datetime) -> int:
    body = standard_body("payment.pending", "chg_unknown")
    response = client.post("/webhooks/standard", content=body, headers=standard_headers(body, message_id, signed_at))
    return response.status_code


def test_after_the_shared_clock_moves_a_month_a_delivery_signed_with_the_real_time_is_accepted(
    client: TestClient, shared: Runtime
) -> None:
    assert post_standard(client, "msg_real_time", SystemClock().now()) == 200

    [event] = event_rows(shared)
    received = event.received_at.replace(tzinfo=event.received_at.tzinfo or shared.clock.now().tzinfo)
    assert abs(received - shared.clock.now()) < timedelta(minutes=1)  # stored at regua's instant


@pytest.mark.parametrize("off", [timedelta(minutes=10), -timedelta(minutes=10)])
def test_a_delivery_signed_ten_minutes_off_the_real_time_is_401_whatever_the_shared_clock_says(
    client: TestClient, shared: Runtime, off: timedelta
) -> None:
    assert post_standard(client, "msg_off", SystemClock().now() + off) == 401
    assert post_standard(client, "msg_shared", shared.clock.now()) == 401  # the moved clock signs nothing
    assert event_rows(shared) == []


def test_regua_trigger_stamps_its_standard_deliveries_with_the_real_time_and_the_event_with_regua_s(
    shared: Runtime,
) -> None:
    with respx.mock(assert_all_called=True) as network:
        route = network.post("http://regua.test/webhooks/standard").respond(200, json={"status": "accepted"})
        wire = Wire(shared, "http://regua.test", lambda _line: None)
        try:
            wire.standard("payment.pending", ChargeRef("chg_1", "platform", "pix", 19990, "pending"))
        finally:
            wire.close()

    request = route.calls.last.request
    headers = dict(request.headers)
    signed_at = datetime.fromtimestamp(int(headers["webhook-timestamp"]), tz=SystemClock().now().tzinfo)
    assert abs(signed_at - SystemClock().now()) < timedelta(minutes=1)
    occurred = parse_instant(json.loads(request.content)["data"]["occurred_at"])
    assert abs(occurred - shared.clock.now()) < timedelta(minutes=1)
    provider = StandardProvider(shared.settings.standard_webhook_secrets)
    provider.authenticate(Delivery(headers=request.headers, query={}, body=request.content), SystemClock().now())


def pix_body(number: int) -> bytes:
    body: dict[str, Any] = copy.deepcopy(fixture("pix/single.json"))
    body["pix"][0]["endToEndId"] = f"E8765432120261207{number:014d}"
    body["pix"][0]["txid"] = f"unknowntxid{number:021d}"
    return json.dumps(body).encode()


def test_the_overview_counts_the_last_24_hours_of_regua_s_clock_not_of_the_wall_clock(
    client: TestClient, shared: Runtime
) -> None:
    moved = shared.clock.now()
    headers = {"content-type": "application/json"}
    for number, at in enumerate((moved - timedelta(days=2), moved - timedelta(hours=1))):
        move(shared, at)
        assert client.post(pix_url(), content=pix_body(number), headers=headers).status_code == 200
    move(shared, moved)

    page = client.get("/ops", headers=basic()).text

    # Both events are in the wall clock's future: a window on the wall clock would count them both.
    counts = re.search(r'<tr><th scope="row">pix</th>((?:<td class="num">\d+</td>)+)</tr>', page)
    assert counts is not None, page
    assert re.findall(r"\d+", counts.group(1)) == ["1", "0", "0", "0", "0"]  # received, processed, ...
    assert f"· {shared.calendar.local(moved):%Y-%m-%d %H:%M}" in page  # the page's own time is regua's


def test_worker_processes_count_their_jobs_at_regua_s_instant(settings: Settings) -> None:
    frozen = FrozenClock(parse_instant("2027-01-15T10:00:00-03:00"))
    runtime = build_runtime(settings, clock=frozen)
    try:
        context = type("Context", (), {"runtime": runtime})()
        jobs = build_jobs(replace(settings, broker_url=""), lambda: context)
        [stats] = [middleware for middleware in jobs.broker.middleware if isinstance(middleware, JobStats)]
        assert stats.clock.now() == frozen.now()
    finally:
        runtime.close()
