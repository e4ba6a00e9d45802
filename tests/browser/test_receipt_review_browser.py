"""A receipt after its invoice's verification window, in Chromium: the customer is told a person checks it,
and a named person grants a new window from the ops dashboard (rule 3.7)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from axe_playwright_python.sync_playwright import Axe
from sqlalchemy import select

from billing.clock import FrozenClock, parse_instant
from billing.records import OpsAction, ReceiptReview
from regua.cli import tick_once
from regua.portal.tokens import PortalTokens
from regua.runtime import Runtime
from regua.settings import Settings
from tests.browser.conftest import LiveServer
from tests.integration.conftest import Api
from tests.integration.ops_helpers import OPS_TOKEN, ops_app
from webhooks.base import Provider
from workers.actors import Jobs

pytestmark = pytest.mark.browser

ACCOUNT = "padaria-central"
PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return replace(settings, ops_token=OPS_TOKEN)


@pytest.fixture
def server(runtime: Runtime, providers: dict[str, Provider], jobs: Jobs, api: Api) -> Iterator[LiveServer]:
    """The app on a live port; its jobs run on the worker the `api` fixture's app already runs."""
    with LiveServer(ops_app(runtime, providers, jobs, worker=False)) as live:
        yield live


@pytest.fixture
def ana(chromium: Any) -> Iterator[Any]:
    """A page whose browser answers the Basic challenge as `ana` with the ops token."""
    context = chromium.new_context(
        viewport={"width": 1280, "height": 800}, http_credentials={"username": "ana", "password": OPS_TOKEN}
    )
    yield context.new_page()
    context.close()


def serious_violations(page: Any) -> list[str]:
    results = Axe().run(page)
    return [f"{v['id']}: {v['help']}" for v in results.response["violations"] if v["impact"] in ("serious", "critical")]


def at(clock: FrozenClock, local: str) -> None:
    clock.set(parse_instant(f"{local}:00-03:00"))


def test_a_receipt_after_the_window_is_checked_by_a_person_who_grants_a_new_window_from_the_dashboard(
    server: LiveServer, page: Any, ana: Any, api: Api, runtime: Runtime, clock: FrozenClock
) -> None:
    api.put_account(ACCOUNT)
    api.subscribe(ACCOUNT, "platform")
    tick_once(runtime)
    at(clock, "2026-12-07T00:01")
    tick_once(runtime)
    [invoice] = api.invoices(ACCOUNT)
    at(clock, "2026-12-08T10:00")
    first = api.client.post(f"/api/invoices/{invoice['id']}/receipts", headers={"Authorization": "Bearer test-token"})
    assert first.status_code == 200, first.text
    at(clock, "2026-12-11T10:00")
    tick_once(runtime)
    at(clock, "2026-12-14T10:00")

    link = f"{server.url}/portal/{PortalTokens(runtime.settings.secret_key).issue(ACCOUNT, clock.now())}"
    page.goto(link)
    page.get_by_text("Já pagou? Envie o comprovante").click()
    page.set_input_files("#arquivo-platform", files=[{"name": "pix.pdf", "mimeType": "application/pdf", "buffer": PDF}])
    page.get_by_role("button", name="Enviar comprovante").click()
    notice = page.locator("#situacao")
    notice.wait_for()
    assert "ele está sendo conferido por uma pessoa da nossa equipe" in notice.inner_text()
    assert "Acesso bloqueado" in page.locator("#produto-platform + p").inner_text()
    waiting = page.locator("[data-review=waiting]").inner_text()
    assert "ele está sendo conferido por uma pessoa da nossa equipe" in waiting
    assert "e o acesso segue bloqueado" in waiting
    assert serious_violations(page) == []
    [review] = runtime.read(lambda s: list(s.scalars(select(ReceiptReview))))

    at(clock, "2026-12-14T15:00")
    ana.goto(f"{server.url}/ops/person")
    row = ana.locator(f"tr[data-review='{review.id}']")
    assert "pix.pdf" in row.inner_text()
    assert serious_violations(ana) == []
    row.get_by_label(f"note to grant a new window for review {review.id}").fill("PIX on our statement of 13/12")
    row.get_by_role("button", name="Grant a new window").click()
    ana.get_by_role("heading", name=re.compile("^Confirm: Grant receipt review")).wait_for()
    ana.get_by_role("button", name=re.compile("^Yes, ")).click()
    ana.get_by_role("status").wait_for()
    assert "granted" in ana.get_by_role("status").inner_text()
    assert ana.locator(f"tr[data-review='{review.id}']").count() == 0

    [action] = runtime.read(lambda s: list(s.scalars(select(OpsAction))))
    assert (action.by, action.action, action.at) == ("ana", "receipt-grant", clock.now())
    assert api.access(ACCOUNT, "platform")["state"] == "verifying"
    page.goto(link)
    granted = page.locator("[data-review=granted]").inner_text()
    assert "Nossa equipe conferiu seu comprovante de dezembro/2026 em 14/12/2026" in granted
    assert "até 17/12/2026" in granted
