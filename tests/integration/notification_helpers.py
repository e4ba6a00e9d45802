"""Helpers for the email tests: settings pointed at the SMTP sink, payments by webhook, notification rows."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from sqlalchemy import select
from starlette.testclient import TestClient

from billing.clock import FrozenClock, parse_instant
from billing.journal import Notification
from billing.models import Charge, Invoice
from billing.settlement import open_charge
from regua.runtime import Runtime
from regua.settings import Settings
from tests.integration.webhook_helpers import standard_body, standard_headers

PORTAL = "https://app.example.com.br/portal"
MAIL_FROM = "Financeiro Exemplo <financeiro@regua.example>"


def mail_settings(settings: Settings, smtp_url: str) -> Settings:
    return replace(settings, smtp_url=smtp_url, mail_from=MAIL_FROM, portal_url=PORTAL)


def move(clock: FrozenClock, local: str) -> None:
    """Set the clock to a wall-clock time in São Paulo: "2026-12-07T00:01"."""
    clock.set(parse_instant(f"{local}:00-03:00"))


def notifications(runtime: Runtime, **where: Any) -> list[Notification]:
    def work(session: Any) -> list[Notification]:
        query = select(Notification).order_by(Notification.created_at, Notification.kind)
        for name, value in where.items():
            query = query.where(getattr(Notification, name) == value)
        return list(session.scalars(query))

    return runtime.read(work)


def invoice_ids(runtime: Runtime, account_id: str) -> list[str]:
    return runtime.read(
        lambda session: list(
            session.scalars(select(Invoice.id).where(Invoice.account_id == account_id).order_by(Invoice.period_start))
        )
    )


def open_pending_charge(runtime: Runtime, ids: Sequence[str], method: str, **details: str) -> str:
    """A pending charge as a checkout opens it, with the payment codes the gateway gave (if any)."""
    now = runtime.clock.now()

    def work(session: Any) -> str:
        charge: Charge = open_charge(session, ids, method, now)
        for name, value in details.items():
            setattr(charge, name, value)
        return charge.id

    return runtime.transaction(work)


def deliver(
    client: TestClient, clock: FrozenClock, event_type: str, charge_id: str, message_id: str, **data: Any
) -> None:
    """A signed Standard Webhooks delivery, answered 200 (its job runs on the in-process worker)."""
    body = standard_body(event_type, charge_id, **data)
    response = client.post("/webhooks/standard", content=body, headers=standard_headers(body, message_id, clock.now()))
    assert response.status_code == 200, response.text


def wait_until(condition: Callable[[], bool], *, timeout: float = 15.0, what: str = "the condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")
