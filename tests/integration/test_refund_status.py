"""Refunds regua sends follow the gateway's own status: only DONE is money back; denied or stuck goes to a person."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta

import pytest
from starlette.testclient import TestClient

from billing.charging import owed_refunds, send_refund
from billing.check import check_books
from billing.clock import FrozenClock
from billing.models import Invoice, Payment, Refund
from billing.refund_progress import STUCK_AFTER, refunds_for_a_person
from regua.gateway.asaas import AsaasGateway
from regua.runtime import Runtime
from regua.settings import Settings
from tests.integration.asaas_fake import FakeAsaas
from tests.integration.ops_helpers import OPS_TOKEN, basic, ops_app
from tests.integration.test_charging import (  # the fixtures of the charging tests
    asaas,
    auto_debit,
    gateway,
    paid_twice,
    rows,
)
from tests.integration.test_cli import regua
from webhooks.base import Provider
from workers.actors import Jobs

__all__ = ["asaas", "auto_debit", "gateway", "paid_twice"]

SQLITE = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return replace(settings, ops_token=OPS_TOKEN)


def the_refund(runtime: Runtime) -> Refund:
    [refund] = rows(runtime, Refund)
    return refund


def books_clean(runtime: Runtime) -> None:
    report = runtime.read(lambda session: check_books(session, runtime.clock.now()))
    assert report.clean, [violation.line() for violation in report.violations]


def test_a_refund_the_gateway_has_not_finished_is_pending_then_done_when_it_says_so(
    runtime: Runtime, clock: FrozenClock, gateway: AsaasGateway, asaas: FakeAsaas, paid_twice: tuple[str, str]
) -> None:
    _charge_id, duplicate = paid_twice
    asaas.refund_status = "AWAITING_CRITICAL_ACTION_AUTHORIZATION"
    [refund_id] = runtime.read(lambda session: owed_refunds(session, clock.now()))
    assert send_refund(runtime, gateway, refund_id) == "requested"
    refund = the_refund(runtime)
    assert (refund.status, refund.gateway_status, refund.refunded_at) == (
        "pending",
        "AWAITING_CRITICAL_ACTION_AUTHORIZATION",
        None,
    )
    assert refund.sent_at == clock.now()
    assert [payment.status for payment in rows(runtime, Payment)] == ["confirmed", "duplicate"]
    books_clean(runtime)

    clock.set(clock.now() + timedelta(minutes=10))
    assert runtime.read(lambda session: owed_refunds(session, clock.now())) == []  # asked again an hour later
    clock.set(clock.now() + timedelta(hours=1))
    assert send_refund(runtime, gateway, refund_id) == "requested"  # still not done: not sent a second time
    asaas.set_refund_status(duplicate, "DONE")
    clock.set(clock.now() + timedelta(hours=2))
    assert send_refund(runtime, gateway, refund_id) == "refunded"
    assert asaas.refund.call_count == 1
    refund = the_refund(runtime)
    assert (refund.status, refund.gateway_refund_id) == ("done", f"{duplicate}:refund1")
    assert [invoice.status for invoice in rows(runtime, Invoice)] == ["paid"]
    books_clean(runtime)


def test_a_refund_the_gateway_denied_is_owed_again_never_resent_and_shown_to_a_person(
    runtime: Runtime, clock: FrozenClock, gateway: AsaasGateway, asaas: FakeAsaas, paid_twice: tuple[str, str]
) -> None:
    _charge_id, duplicate = paid_twice
    asaas.refund_status = "PENDING"
    [refund_id] = runtime.read(lambda session: owed_refunds(session, clock.now()))
    send_refund(runtime, gateway, refund_id)
    assert runtime.read(lambda session: refunds_for_a_person(session, clock.now())) == []
    asaas.set_refund_status(duplicate, "CANCELLED")
    clock.set(clock.now() + timedelta(hours=2))
    assert send_refund(runtime, gateway, refund_id) == "refused"
    refund = the_refund(runtime)
    assert (refund.status, refund.gateway_status, refund.denied_at) == ("owed", "CANCELLED", clock.now())
    clock.set(clock.now() + timedelta(days=2))
    assert runtime.read(lambda session: owed_refunds(session, clock.now())) == []
    assert send_refund(runtime, gateway, refund_id) == "not_owed"
    assert asaas.refund.call_count == 1
    assert [r.id for r in runtime.read(lambda session: refunds_for_a_person(session, clock.now()))] == [refund_id]
    books_clean(runtime)


@SQLITE
def test_a_refund_still_not_done_after_three_days_is_shown_to_a_person(
    runtime: Runtime, clock: FrozenClock, gateway: AsaasGateway, asaas: FakeAsaas, paid_twice: tuple[str, str]
) -> None:
    asaas.refund_status = "AWAITING_CUSTOMER_EXTERNAL_AUTHORIZATION"
    [refund_id] = runtime.read(lambda session: owed_refunds(session, clock.now()))
    send_refund(runtime, gateway, refund_id)
    sent = clock.now()
    clock.set(sent + STUCK_AFTER - timedelta(minutes=1))
    assert runtime.read(lambda session: refunds_for_a_person(session, clock.now())) == []
    clock.set(sent + STUCK_AFTER)
    assert [r.id for r in runtime.read(lambda session: refunds_for_a_person(session, clock.now()))] == [refund_id]


@SQLITE
def test_a_denied_refund_is_listed_on_the_ops_page_and_by_regua_refunds(
    runtime: Runtime,
    clock: FrozenClock,
    gateway: AsaasGateway,
    asaas: FakeAsaas,
    paid_twice: tuple[str, str],
    database_url: str,
    providers: dict[str, Provider],
    jobs: Jobs,
) -> None:
    _charge_id, duplicate = paid_twice
    asaas.refund_status = "PENDING"
    [refund_id] = runtime.read(lambda session: owed_refunds(session, clock.now()))
    send_refund(runtime, gateway, refund_id)
    asaas.set_refund_status(duplicate, "CANCELLED")
    clock.set(clock.now() + timedelta(hours=2))
    send_refund(runtime, gateway, refund_id)

    with TestClient(ops_app(runtime, providers, jobs)) as client:
        page = client.get("/ops/person", headers=basic()).text
    assert f'data-refund="{refund_id}"' in page
    assert "denied (CANCELLED)" in page

    listed = regua(database_url, "refunds", "--json", env={"REGUA_NOW": clock.now().isoformat()})
    assert listed.returncode == 0, listed.stderr
    [row] = json.loads(listed.stdout)
    assert (row["id"], row["status"], row["gateway_status"]) == (refund_id, "owed", "CANCELLED")
