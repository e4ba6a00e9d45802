"""The ops dashboard through HTTP: who may see it, what it shows, and its confirmed, logged actions."""

from __future__ import annotations

import html
import json
import re
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import select
from starlette.testclient import TestClient

from billing.clock import FrozenClock
from billing.journal import WebhookEvent
from billing.models import Invoice, Refund
from billing.records import OpsAction
from regua.runtime import Runtime
from regua.settings import Settings
from tests.integration.conftest import Api
from tests.integration.ops_helpers import (
    OPS_TOKEN,
    FlakyJob,
    basic,
    blocked_invoice,
    charge_made_at_gateway,
    csrf_of,
    ops_app,
)
from tests.integration.test_webhook_settlement import charge_for, deliver_standard, settle_jobs
from webhooks.base import Provider
from workers.actors import Jobs

AUTH = basic()


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return replace(settings, ops_token=OPS_TOKEN)


@pytest.fixture
def client(runtime: Runtime, providers: dict[str, Provider], jobs: Jobs) -> Iterator[TestClient]:
    with TestClient(ops_app(runtime, providers, jobs), raise_server_exceptions=True) as test_client:
        yield test_client


def confirm(client: TestClient, page: str, action: str, **fields: str | list[str]) -> str:
    """Press an action's button on `page`, then confirm it; returns the page it lands on."""
    token = csrf_of(client.get(page, headers=AUTH).text)
    form = {"csrf": token, "next": page, **fields}
    asked = client.post(f"/ops/actions/{action}", data=form, headers=AUTH)
    assert asked.status_code == 200, asked.text
    assert "Confirm:" in asked.text
    done = client.post(f"/ops/actions/{action}", data={**form, "confirm": "yes"}, headers=AUTH, follow_redirects=False)
    assert done.status_code == 303, done.text
    return str(done.headers["location"])


def test_the_ops_pages_and_metrics_need_the_ops_token(client: TestClient) -> None:
    for path in ("/ops", "/ops/person", "/ops/events", "/ops/queues/email", "/ops/accounts", "/metrics"):
        assert client.get(path).status_code == 401
        assert client.get(path, headers=basic(password="wrong")).status_code == 401
        assert client.get(path, headers=AUTH).status_code == 200, path
    assert client.get("/ops").headers["www-authenticate"].startswith("Basic")
    assert client.get("/metrics", headers={"Authorization": f"Bearer {OPS_TOKEN}"}).status_code == 200


def test_the_mail_viewer_paths_are_left_to_the_mail_viewer(client: TestClient) -> None:
    assert client.get("/ops/mail", headers=AUTH).status_code == 404
    assert client.get("/ops/mail.json", headers=AUTH).status_code == 404


def test_an_action_without_a_valid_csrf_token_is_refused_and_not_logged(client: TestClient, runtime: Runtime) -> None:
    response = client.post(
        "/ops/actions/replay", data={"ids": "evt_x", "confirm": "yes", "csrf": "1.abc"}, headers=AUTH
    )
    assert response.status_code == 403
    assert runtime.read(lambda s: list(s.scalars(select(OpsAction)))) == []


def test_an_unmatched_event_is_found_replayed_after_its_charge_exists_and_pays_the_invoice(
    client: TestClient, api: Api, runtime: Runtime, clock: FrozenClock, jobs: Jobs
) -> None:
    invoice_id = blocked_invoice(api, runtime, clock)
    deliver_standard(client, clock, "payment.confirmed", "chg_unknown", "msg_early", payment_id="gw_early")
    settle_jobs(jobs, runtime)
    overview = client.get("/ops", headers=AUTH).text
    assert 'data-queue="webhooks"' in overview
    unmatched = client.get("/ops/events?status=unmatched", headers=AUTH).text
    [event_id] = runtime.read(lambda s: list(s.scalars(select(WebhookEvent.id))))
    assert f'data-event="{event_id}"' in unmatched
    assert "gw_early" in client.get(f"/ops/events/{event_id}", headers=AUTH).text

    charge_made_at_gateway(runtime, invoice_id, "gw_early")
    landed = confirm(client, f"/ops/events/{event_id}", "replay", ids=[event_id])
    assert landed.startswith(f"/ops/events/{event_id}?done=replayed+1+of+1")
    settle_jobs(jobs, runtime)

    assert runtime.read(lambda s: s.get(Invoice, invoice_id)).status == "paid"
    [action] = runtime.read(lambda s: list(s.scalars(select(OpsAction))))
    assert (action.by, action.action, action.targets) == ("ops", "replay", [event_id])
    assert "replayed 1 of 1" in client.get("/ops/actions", headers=AUTH).text


def test_replay_all_acts_only_on_the_failed_or_unmatched_events_of_the_filter(
    client: TestClient, api: Api, runtime: Runtime, clock: FrozenClock, jobs: Jobs
) -> None:
    invoice_id = blocked_invoice(api, runtime, clock)
    paid = charge_for(runtime, [invoice_id])
    deliver_standard(client, clock, "payment.confirmed", "chg_nope_1", "msg_1", payment_id="gw_1")
    deliver_standard(client, clock, "payment.confirmed", "chg_nope_2", "msg_2", payment_id="gw_2")
    deliver_standard(client, clock, "payment.confirmed", paid, "msg_3", payment_id="gw_3")
    settle_jobs(jobs, runtime)
    confirm(client, "/ops/events", "replay-filter", provider="standard")
    [action] = runtime.read(lambda s: list(s.scalars(select(OpsAction))))
    assert action.result == "replayed 2 of 2 event(s)"
    assert len(action.targets) == 2


def test_a_dead_job_is_listed_with_its_error_and_requeued_until_it_succeeds(
    client: TestClient, runtime: Runtime, jobs: Jobs
) -> None:
    flaky = FlakyJob(jobs.broker)
    flaky.actor.send("invoice-42")
    deadline = time.monotonic() + 10
    while not jobs.broker.dead_letters_by_queue["email"] and time.monotonic() < deadline:
        time.sleep(0.02)
    page = html.unescape(client.get("/ops/queues/email", headers=AUTH).text)
    assert "flaky_job" in page
    assert "RuntimeError: the mail server said no to invoice-42" in page
    assert '["invoice-42"]' in page
    [letter] = jobs.broker.dead_letters_by_queue["email"]

    flaky.succeed.set()
    confirm(client, "/ops/queues/email", "requeue", queue="email", ids=[letter.message_id])
    assert flaky.done.wait(10)
    assert jobs.broker.dead_letters_by_queue["email"] == []
    failed_in_last_hour = client.get("/ops", headers=AUTH).text
    assert "1 failed" in failed_in_last_hour


def test_a_refund_no_gateway_can_make_is_marked_done_by_a_named_person(
    client: TestClient, api: Api, runtime: Runtime, clock: FrozenClock, jobs: Jobs
) -> None:
    invoice_id = blocked_invoice(api, runtime, clock)
    first, second = charge_for(runtime, [invoice_id]), charge_for(runtime, [invoice_id], "boleto")
    deliver_standard(client, clock, "payment.confirmed", first, "msg_a", payment_id="gw_a")
    settle_jobs(jobs, runtime)
    deliver_standard(client, clock, "payment.confirmed", second, "msg_b", payment_id="gw_b", method="boleto")
    settle_jobs(jobs, runtime)
    [refund] = runtime.read(lambda s: list(s.scalars(select(Refund))))
    assert f'data-refund="{refund.id}"' in client.get("/ops/person", headers=AUTH).text

    ana = basic(user="ana")
    token = csrf_of(client.get("/ops/person", headers=ana).text)
    form = {"csrf": token, "ids": refund.id, "next": "/ops/person", "note": "PIX from our bank", "confirm": "yes"}
    assert client.post("/ops/actions/refund-done", data=form, headers=ana, follow_redirects=False).status_code == 303

    done = runtime.read(lambda s: s.get(Refund, refund.id))
    assert (done.status, done.refunded_at, done.done_by, done.note) == ("done", clock.now(), "ana", "PIX from our bank")
    [action] = runtime.read(lambda s: list(s.scalars(select(OpsAction))))
    assert (action.by, action.action, action.targets, action.at) == ("ana", "refund-done", [refund.id], clock.now())
    assert f'data-refund="{refund.id}"' not in client.get("/ops/person", headers=AUTH).text


def test_the_account_page_shows_access_invoices_and_timeline(
    client: TestClient, api: Api, runtime: Runtime, clock: FrozenClock
) -> None:
    invoice_id = blocked_invoice(api, runtime, clock)
    found = client.get("/ops/accounts?q=Padaria", headers=AUTH).text
    assert "/ops/accounts/padaria-central" in found
    page = client.get("/ops/accounts/padaria-central", headers=AUTH).text
    assert f'data-invoice="{invoice_id}"' in page
    assert "blocked" in page
    assert "11.222.333/0001-81" not in page
    assert "11222333000181" not in page
    assert client.get("/ops/accounts/nobody", headers=AUTH).status_code == 404


def test_metrics_name_the_series_by_prometheus_conventions(
    client: TestClient, api: Api, runtime: Runtime, clock: FrozenClock, jobs: Jobs
) -> None:
    blocked_invoice(api, runtime, clock)
    deliver_standard(client, clock, "payment.confirmed", "chg_unknown", "msg_m", payment_id="gw_m")
    settle_jobs(jobs, runtime)
    text = client.get("/metrics", headers=AUTH).text
    assert 'regua_webhooks_total{outcome="unmatched",provider="standard"} 1.0' in text
    assert 'regua_blocked_accounts{product="platform"} 1.0' in text
    assert 'regua_queue_messages{queue="webhooks",state="dead"} 0.0' in text
    assert "regua_last_tick_timestamp_seconds " in text
    assert "regua_webhook_seconds_count 1.0" in text
    assert 'regua_jobs_total{outcome="processed"}' in text
    assert "regua_charges_total{" in text
    dashboard = json.loads((Path(__file__).resolve().parents[2] / "docs" / "grafana.json").read_text())
    charted = {
        re.sub(r"_(total|bucket)$", "", name)
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"regua_[a-z_]+", target["expr"])
    }
    exported = {re.sub(r"_total$", "", n) for n in re.findall(r"^# TYPE (regua_[a-z_]+) ", text, re.MULTILINE)}
    assert len(charted) == 9
    assert charted <= exported, charted - exported
