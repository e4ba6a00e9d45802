"""A payment the customer opened on the payment page and left pending neither doubles nor silently skips an
auto-debit retry: it holds the retry for an hour (the customer may be paying right now), then the retry
supersedes it, and it is canceled at the gateway before it can be paid as well."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from billing.charging import cancel_at_gateway
from billing.charging.planning import CUSTOMER_HOLD
from billing.clock import parse_instant
from billing.models import Charge
from billing.settlement import open_charge
from regua.gateway.asaas import AsaasGateway
from regua.runtime import Runtime
from tests.integration.asaas_fake import FakeAsaas
from tests.integration.test_charging import (  # the fixtures of the charging tests
    DAY_1,
    DAY_3,
    asaas,
    auto_debit,
    gateway,
    mark_sent,
    plan,
)

__all__ = ["asaas", "auto_debit", "gateway"]

SQLITE = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def declined_on_day_1(runtime: Runtime) -> str:
    [attempt] = plan(runtime, DAY_1)

    def declined(session: Session) -> None:
        charge = session.get(Charge, attempt)
        assert charge is not None
        charge.status, charge.failure_code, charge.failed_at = "failed", "insufficient_funds", DAY_1

    runtime.transaction(declined)
    return attempt


def page_payment(runtime: Runtime, invoice_id: str, at: datetime) -> str:
    """A card payment opened from the payment page (the gateway's own card page), never finished."""
    return runtime.transaction(lambda session: open_charge(session, [invoice_id], "card", at).id)


def charge(runtime: Runtime, charge_id: str) -> Charge:
    found = runtime.read(lambda session: session.scalar(select(Charge).where(Charge.id == charge_id)))
    assert found is not None
    return found


@SQLITE
def test_a_page_payment_left_pending_since_the_day_before_is_superseded_by_the_day_3_retry(
    runtime: Runtime, auto_debit: str
) -> None:
    declined_on_day_1(runtime)
    left_open = page_payment(runtime, auto_debit, parse_instant("2026-12-02T10:00:00-03:00"))
    [retry] = plan(runtime, DAY_3)
    assert charge(runtime, retry).regua_day == 3
    superseded = charge(runtime, left_open)
    assert (superseded.status, superseded.canceled_reason, superseded.superseded_by) == (
        "canceled",
        "auto_debit_retry",
        retry,
    )
    assert superseded.gateway_cancel_owed
    assert plan(runtime, DAY_3 + timedelta(minutes=5)) == []  # one retry, once


@SQLITE
def test_a_page_payment_opened_minutes_before_the_retry_holds_it_for_an_hour_then_the_retry_runs(
    runtime: Runtime, auto_debit: str
) -> None:
    declined_on_day_1(runtime)
    opened = DAY_3 - timedelta(minutes=10)
    fresh = page_payment(runtime, auto_debit, opened)
    assert plan(runtime, DAY_3) == []  # the customer may be typing the card right now
    assert charge(runtime, fresh).status == "pending"
    [retry] = plan(runtime, opened + CUSTOMER_HOLD)
    assert charge(runtime, retry).regua_day == 3
    assert charge(runtime, fresh).status == "canceled"


def test_the_superseded_page_payment_is_canceled_at_the_gateway(
    runtime: Runtime, auto_debit: str, asaas: FakeAsaas, gateway: AsaasGateway
) -> None:
    declined_on_day_1(runtime)
    left_open = page_payment(runtime, auto_debit, parse_instant("2026-12-02T10:00:00-03:00"))
    at_gateway = asaas.add(left_open, status="PENDING", kind="CREDIT_CARD")
    mark_sent(runtime, left_open, at_gateway)
    plan(runtime, DAY_3)
    assert cancel_at_gateway(runtime, gateway, left_open) == "canceled"
    assert asaas.delete.call_count == 1
    assert asaas.payments[at_gateway]["deleted"] is True
