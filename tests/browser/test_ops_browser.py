"""The ops dashboard in a real browser: log in, read the counts, replay, requeue, refund, and accessibility."""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from billing.clock import FrozenClock
from billing.journal import WebhookEvent
from billing.models import Invoice, Refund
from billing.records import OpsAction
from regua.runtime import Runtime
from regua.settings import Settings
from tests.browser.conftest import SCREENSHOTS, LiveServer
from tests.integration.conftest import Api
from tests.integration.ops_helpers import (
    OPS_TOKEN,
    FlakyJob,
    blocked_invoice,
    charge_made_at_gateway,
    ops_app,
)
from tests.integration.test_webhook_settlement import charge_for
from tests.integration.webhook_helpers import standard_body, standard_headers
from webhooks.base import Provider
from workers.actors import Jobs

pytestmark = pytest.mark.browser

WRITE_SCREENSHOTS = os.environ.get("REGUA_WRITE_SCREENSHOTS") == "1"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return replace(settings, ops_token=OPS_TOKEN)


@dataclass
class Ops:
    server: LiveServer
    runtime: Runtime
    clock: FrozenClock
    jobs: Jobs

    def deliver(self, charge_id: str, message_id: str, payment_id: str, **data: Any) -> None:
        body = standard_body("payment.confirmed", charge_id, payment_id=payment_id, **data)
        headers = standard_headers(body, message_id, self.clock.now())
        response = httpx.post(f"{self.server.url}/webhooks/standard", content=body, headers=headers)
        assert response.status_code == 200, response.text

    def wait(self, condition: Any, seconds: float = 15) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if condition():
                return
            time.sleep(0.05)
        raise AssertionError("the condition never held")

    def events(self) -> list[WebhookEvent]:
        return self.runtime.read(lambda s: list(s.scalars(select(WebhookEvent))))

    def settled(self) -> bool:
        return all(event.status not in ("received", "failed") for event in self.events())


@pytest.fixture
def ops(runtime: Runtime, providers: dict[str, Provider], jobs: Jobs, clock: FrozenClock, api: Api) -> Iterator[Ops]:
    """The app on a live port; its jobs run on the worker the `api` fixture's app already runs."""
    with LiveServer(ops_app(runtime, providers, jobs, worker=False)) as server:
        yield Ops(server, runtime, clock, jobs)


@pytest.fixture
def signed_in(chromium: Any) -> Iterator[Any]:
    """A page whose browser answers the Basic challenge as `ops` with the token."""
    context = chromium.new_context(
        viewport={"width": 1280, "height": 800}, http_credentials={"username": "ops", "password": OPS_TOKEN}
    )
    yield context.new_page()
    context.close()


def press_and_confirm(page: Any, button: str) -> None:
    page.get_by_role("button", name=button).first.click()
    page.get_by_role("heading", name=re.compile("^Confirm:")).wait_for()
    page.get_by_role("button", name=re.compile("^Yes, ")).click()
    page.get_by_role("status").wait_for()


def test_without_the_token_the_browser_is_refused_and_with_it_sees_the_counts(
    ops: Ops, page: Any, signed_in: Any, api: Api
) -> None:
    assert page.request.get(f"{ops.server.url}/ops").status == 401
    blocked_invoice(api, ops.runtime, ops.clock)
    response = signed_in.goto(f"{ops.server.url}/ops")
    assert response.status == 200
    assert signed_in.locator("#queues tr[data-queue='webhooks'] td").count() == 4
    assert signed_in.locator(".card", has_text="platform").locator(".big").inner_text() == "1"


def test_an_unmatched_webhook_is_replayed_once_its_charge_exists_and_the_invoice_is_paid(
    ops: Ops, signed_in: Any, api: Api
) -> None:
    invoice_id = blocked_invoice(api, ops.runtime, ops.clock)
    ops.deliver("chg_not_yet_known", "msg_early", "gw_early_1")
    ops.wait(lambda: [e.status for e in ops.events()] == ["unmatched"])

    signed_in.goto(f"{ops.server.url}/ops")
    signed_in.get_by_role("link", name="Unmatched events").click()
    signed_in.locator("#events tbody tr").first.get_by_role("link").click()
    assert signed_in.locator("#event-status").inner_text() == "unmatched"
    assert "gw_early_1" in signed_in.locator("pre").inner_text()

    charge_made_at_gateway(ops.runtime, invoice_id, "gw_early_1")
    press_and_confirm(signed_in, "Replay this event")
    assert "replayed 1 of 1" in signed_in.get_by_role("status").inner_text()
    ops.wait(ops.settled)

    signed_in.goto(f"{ops.server.url}/ops/accounts/padaria-central")
    assert signed_in.locator(f"tr[data-invoice='{invoice_id}'] .invoice-status").inner_text() == "paid"
    assert ops.runtime.read(lambda s: s.get(Invoice, invoice_id)).status == "paid"


def test_a_job_killed_into_the_dead_letters_is_requeued_from_the_page(ops: Ops, signed_in: Any) -> None:
    flaky = FlakyJob(ops.jobs.broker)
    flaky.actor.send("invoice-99")
    ops.wait(lambda: len(ops.jobs.broker.dead_letters_by_queue["email"]) == 1)

    signed_in.goto(f"{ops.server.url}/ops")
    signed_in.locator("#queues tr[data-queue='email']").get_by_role("link", name="email").click()
    row = signed_in.locator("#dead-letters tbody tr")
    assert row.count() == 1
    assert "the mail server said no to invoice-99" in row.inner_text()
    row.get_by_role("checkbox").check()
    flaky.succeed.set()
    press_and_confirm(signed_in, "Requeue selected")
    assert "requeued 1 message(s) on email" in signed_in.get_by_role("status").inner_text()
    assert flaky.done.wait(10)
    assert signed_in.locator("#dead-count").inner_text() == "0"


def test_a_refund_owed_by_hand_is_marked_refunded_and_logged_with_who_and_when(
    ops: Ops, signed_in: Any, api: Api
) -> None:
    invoice_id = blocked_invoice(api, ops.runtime, ops.clock)
    first, second = charge_for(ops.runtime, [invoice_id]), charge_for(ops.runtime, [invoice_id], "boleto")
    ops.deliver(first, "msg_a", "gw_a")
    ops.wait(ops.settled)
    ops.deliver(second, "msg_b", "gw_b", method="boleto")
    ops.wait(lambda: len(ops.events()) == 2 and ops.settled())
    [refund] = ops.runtime.read(lambda s: list(s.scalars(select(Refund))))

    signed_in.goto(f"{ops.server.url}/ops/person")
    row = signed_in.locator(f"tr[data-refund='{refund.id}']")
    assert "R$ 199,90" in row.inner_text()
    row.get_by_label(f"note for refund {refund.id}").fill("PIX sent from the bank")
    row.get_by_role("button", name="Mark refunded").click()
    signed_in.get_by_role("button", name=re.compile("^Yes, ")).click()
    assert "marked done by ops" in signed_in.get_by_role("status").inner_text()
    assert signed_in.locator(f"tr[data-refund='{refund.id}']").count() == 0

    done = ops.runtime.read(lambda s: s.get(Refund, refund.id))
    assert (done.status, done.done_by, done.note) == ("done", "ops", "PIX sent from the bank")
    [action] = ops.runtime.read(lambda s: list(s.scalars(select(OpsAction))))
    assert (action.by, action.action, action.at) == ("ops", "refund-done", ops.clock.now())
    signed_in.goto(f"{ops.server.url}/ops/actions")
    assert refund.id in signed_in.locator("#actions").inner_text()


def test_every_page_has_no_serious_accessibility_violation(ops: Ops, signed_in: Any, api: Api) -> None:
    """axe-core on each page, with data on it; `make screenshots` saves each page at 1280 px from here."""
    from axe_playwright_python.sync_playwright import Axe

    invoice_id = blocked_invoice(api, ops.runtime, ops.clock)
    paid = charge_for(ops.runtime, [invoice_id])
    ops.deliver(paid, "msg_paid", "gw_paid")
    ops.deliver("chg_unknown_x", "msg_lost", "gw_lost")
    ops.wait(lambda: len(ops.events()) == 2 and ops.settled())
    flaky = FlakyJob(ops.jobs.broker)
    flaky.actor.send("invoice-7")
    ops.wait(lambda: len(ops.jobs.broker.dead_letters_by_queue["email"]) == 1)
    [event] = [e for e in ops.events() if e.status == "unmatched"]

    pages = {
        "overview": "/ops",
        "needs-a-person": "/ops/person",
        "webhook-events": "/ops/events",
        "webhook-event": f"/ops/events/{event.id}",
        "dead-letters": "/ops/queues/email",
        "accounts": "/ops/accounts",
        "account": "/ops/accounts/padaria-central",
        "actions": "/ops/actions",
    }
    axe = Axe()
    for name, path in pages.items():
        assert signed_in.goto(f"{ops.server.url}{path}").status == 200, path
        results = axe.run(signed_in)
        serious = [v for v in results.response["violations"] if v["impact"] in ("serious", "critical")]
        assert serious == [], f"{path}: {json.dumps(serious, indent=1)[:3000]}"
        if WRITE_SCREENSHOTS:
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            signed_in.screenshot(path=str(SCREENSHOTS / f"ops-{name}.png"), full_page=True)
