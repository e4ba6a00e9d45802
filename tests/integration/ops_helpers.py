"""What the ops tests share: the token, the app with its broker, a blocked invoice, a job that dies once."""

from __future__ import annotations

import base64
import re
import threading
from typing import Any

import dramatiq
from sqlalchemy import select, update
from starlette.applications import Starlette

from billing.clock import FrozenClock, parse_instant
from billing.models import Charge, Invoice
from billing.settlement import open_charge
from regua.app import create_app
from regua.assembly import InProcessWorker
from regua.cli import tick_once
from regua.runtime import Runtime
from tests.integration.conftest import Api
from webhooks.base import Provider
from workers.actors import Jobs

OPS_TOKEN = "ops-test-token-7f3a"
DAY_9 = parse_instant("2026-12-09T11:00:00-03:00")


def basic(user: str = "ops", password: str = OPS_TOKEN) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def ops_app(runtime: Runtime, providers: dict[str, Provider], jobs: Jobs, *, worker: bool = True) -> Starlette:
    background = [InProcessWorker(jobs.broker)] if worker else []
    return create_app(runtime, providers, jobs.enqueue_events, background, broker=jobs.broker)


def blocked_invoice(api: Api, runtime: Runtime, clock: FrozenClock, account: str = "padaria-central") -> str:
    """A boleto customer who did not pay December: blocked since 7/12, now on day 9."""
    api.put_account(account)
    api.subscribe(account, "platform", payment_method="boleto")
    tick_once(runtime)
    clock.set(DAY_9)
    tick_once(runtime)
    invoices = runtime.read(lambda s: list(s.scalars(select(Invoice.id).where(Invoice.account_id == account))))
    return str(invoices[0])


def charge_made_at_gateway(runtime: Runtime, invoice_id: str, gateway_payment_id: str) -> str:
    """The charge the gateway already knew when its webhook came: opened now, with the gateway's id."""

    def work(session: Any) -> str:
        charge = open_charge(session, [invoice_id], "pix", runtime.clock.now(), gateway="standard")
        session.flush()
        session.execute(update(Charge).where(Charge.id == charge.id).values(gateway_payment_id=gateway_payment_id))
        return charge.id

    return runtime.transaction(work)


class FlakyJob:
    """An actor on the email queue with no retries that fails until told to succeed: a job to kill and revive."""

    def __init__(self, broker: dramatiq.Broker) -> None:
        self.succeed = threading.Event()
        self.done = threading.Event()

        def flaky_job(label: str) -> None:
            if not self.succeed.is_set():
                raise RuntimeError(f"the mail server said no to {label}")
            self.done.set()

        self.actor = dramatiq.actor(actor_name="flaky_job", queue_name="email", max_retries=0, broker=broker)(flaky_job)


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "no CSRF token in the page"
    return found.group(1)
