"""The plan choice of the payment page in Chromium, at 375 px and 1280 px: after a trial, an upgrade, a cancellation.

Every page is measured (nothing wider than the viewport: the document and each element's right edge) and
checked by axe-core. With REGUA_WRITE_SCREENSHOTS=1 each page at 375 px (and the review at 1280 px) is
written to docs/screenshots/.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from typing import Any

import pytest
from axe_playwright_python.sync_playwright import Axe
from sqlalchemy import select
from starlette.testclient import TestClient

from billing.clock import FrozenClock, parse_instant
from billing.models import Invoice, Subscription
from regua.cli import tick_once
from regua.portal.tokens import PortalTokens
from regua.runtime import Runtime
from tests.browser.conftest import SCREENSHOTS, LiveServer
from tests.integration.asaas_fake import FakeAsaas, fake_asaas
from tests.integration.conftest import AUTH, Api
from tests.integration.ops_helpers import ops_app
from tests.integration.test_rules import pay
from webhooks.base import Provider
from workers.actors import Jobs

pytestmark = [pytest.mark.browser, pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)]

ACCOUNT = "padaria-central"
WRITE_SCREENSHOTS = os.environ.get("REGUA_WRITE_SCREENSHOTS") == "1"
PHONE = {"width": 375, "height": 812}
DESKTOP = {"width": 1280, "height": 800}

OVERFLOW = """() => {
  const width = window.innerWidth;
  const found = [];
  if (document.documentElement.scrollWidth > width) {
    found.push("document: " + document.documentElement.scrollWidth);
  }
  for (const element of document.querySelectorAll("body *")) {
    const box = element.getBoundingClientRect();
    if (box.width > 0 && box.right > width + 0.5) {
      found.push(element.tagName.toLowerCase() + "." + element.className + ": " + Math.round(box.right));
    }
  }
  return found;
}"""


def half_up(numerator: int, denominator: int) -> int:
    quotient, remainder = divmod(numerator, denominator)
    return quotient + (1 if 2 * remainder >= denominator else 0)


def brl(cents: int) -> str:
    reais, centavos = divmod(cents, 100)
    return f"R$ {reais:,}".replace(",", ".") + f",{centavos:02d}"


@pytest.fixture
def server(runtime: Runtime, providers: dict[str, Provider], jobs: Jobs, api: Api) -> Iterator[LiveServer]:
    """The app on a live port; its jobs run on the worker the `api` fixture's app already runs."""
    with LiveServer(ops_app(runtime, providers, jobs, worker=False)) as live:
        yield live


@pytest.fixture
def asaas(server: LiveServer) -> Iterator[FakeAsaas]:
    """Asaas at the HTTP seam, once the server answers (its health check is a real request)."""
    with fake_asaas() as fake:
        yield fake


@pytest.fixture
def catalog(client: TestClient) -> None:
    for kind, item, name, price in [
        ("plans", "basic", "Básico", 9990),
        ("plans", "pro", "Pro", 19990),
        ("modules", "delivery", "Delivery e pedidos pelo WhatsApp", 3000),
        ("modules", "fiscal", "Emissão de notas fiscais", 4500),
    ]:
        body = {"product": "platform", "name": name, "monthly_price_cents": price}
        assert client.put(f"/api/{kind}/{item}", json=body, headers=AUTH).status_code == 201


def link(server: LiveServer, runtime: Runtime) -> str:
    return f"{server.url}/portal/{PortalTokens(runtime.settings.secret_key).issue(ACCOUNT, runtime.clock.now())}"


def looks_right(page: Any, name: str) -> None:
    """At 375 px and 1280 px: nothing wider than the viewport, no serious axe finding; screenshots if asked."""
    for size in (PHONE, DESKTOP):
        page.set_viewport_size(size)
        wide = page.evaluate(OVERFLOW)
        assert wide == [], f"{name} at {size['width']} px: {wide}"
        results = Axe().run(page)
        serious = [v["id"] for v in results.response["violations"] if v["impact"] in ("serious", "critical")]
        assert serious == [], f"{name} at {size['width']} px"
        if WRITE_SCREENSHOTS and (size is PHONE or name == "review"):
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SCREENSHOTS / f"portal-plan-{name}-{size['width']}.png"), full_page=True)
    page.set_viewport_size(PHONE)


def test_after_the_trial_a_phone_chooses_a_plan_reviews_it_and_gets_the_pix_of_the_rest_of_the_month(
    server: LiveServer, asaas: FakeAsaas, page: Any, api: Api, catalog: None, runtime: Runtime, clock: FrozenClock
) -> None:
    api.put_account(ACCOUNT, trial_ends_at="2026-12-10")
    clock.set(parse_instant("2026-12-10T09:00:00-03:00"))
    page.set_viewport_size(PHONE)
    page.goto(link(server, runtime))
    assert "Seu período de teste terminou" in page.locator("main").inner_text()
    looks_right(page, "trial-ended")

    page.get_by_role("link", name="Escolher plano").click()
    page.get_by_role("radio", name=re.compile("^Pro")).check()
    page.get_by_role("checkbox", name=re.compile("^Delivery")).check()
    looks_right(page, "choose")
    page.get_by_role("button", name="Continuar").click()

    monthly = 19990 + 3000
    assert f"{brl(monthly - half_up(monthly * 5, 100))} por mês" in page.locator("main").inner_text()
    page.locator('input[value="monthly.pix"]').check()
    looks_right(page, "payment")
    page.get_by_role("button", name="Revisar").click()

    now = half_up(monthly * 22, 31)  # 10 to 31 December
    assert page.locator("[data-now]").inner_text() == brl(now)
    assert runtime.read(lambda session: session.scalar(select(Subscription))) is None
    looks_right(page, "review")
    page.get_by_role("button", name=f"Confirmar e pagar {brl(now)}").click()

    page.wait_for_url(re.compile(r"/cobranca/chg_"))
    assert page.locator("#pix-code").input_value().startswith("00020101PIX")
    [invoice] = runtime.read(lambda session: list(session.scalars(select(Invoice))))
    assert invoice.total_cents == now
    looks_right(page, "pix")


def test_an_upgrade_shows_its_difference_and_a_cancellation_asks_first_then_says_until_when(
    server: LiveServer, asaas: FakeAsaas, page: Any, api: Api, catalog: None, runtime: Runtime, clock: FrozenClock
) -> None:
    api.put_account(ACCOUNT)
    api.subscribe(ACCOUNT, "platform", plan="basic", modules=[], monthly_price_cents=None, payment_method="boleto")
    tick_once(runtime)
    pay(runtime, runtime.read(lambda session: list(session.scalars(select(Invoice.id)))))
    clock.set(parse_instant("2026-12-16T10:00:00-03:00"))
    page.set_viewport_size(PHONE)
    page.goto(link(server, runtime))
    looks_right(page, "current")

    page.get_by_role("link", name="Alterar plano").click()
    page.get_by_role("radio", name=re.compile("^Pro")).check()
    page.get_by_role("checkbox", name=re.compile("^Emissão")).check()
    page.get_by_role("button", name="Continuar").click()
    page.get_by_role("button", name="Revisar").click()  # the boleto they pay by now is kept
    difference = half_up((19990 + 4500 - 9990) * 16, 31)
    assert page.locator("[data-now]").inner_text() == brl(difference)
    assert "A mudança vale a partir de hoje, 16/12/2026" in page.locator("#efeito").inner_text()
    looks_right(page, "upgrade")
    page.get_by_role("button", name=f"Confirmar e pagar {brl(difference)}").click()
    page.wait_for_url(re.compile(r"/cobranca/chg_"))
    assert page.locator("#boleto-line").input_value()

    page.goto(link(server, runtime))
    page.get_by_role("link", name="Cancelar assinatura").click()
    assert page.locator("[data-ends]").inner_text() == "31/12/2026"
    assert page.locator("[data-owed]").inner_text() == brl(difference)
    looks_right(page, "cancel")
    page.get_by_role("button", name="Sim, cancelar a assinatura").click()
    page.get_by_role("status").wait_for()
    assert "O acesso continua até 31/12/2026" in page.locator("#plano-platform").inner_text()
    assert page.get_by_role("link", name="Escolher um plano e reativar").is_visible()
    looks_right(page, "canceled")


def test_choosing_the_plan_in_force_again_says_the_waiting_downgrade_is_given_up(
    server: LiveServer, asaas: FakeAsaas, page: Any, api: Api, catalog: None, runtime: Runtime, clock: FrozenClock
) -> None:
    api.put_account(ACCOUNT)
    api.subscribe(ACCOUNT, "platform", plan="pro", modules=[], monthly_price_cents=None, payment_method="boleto")
    tick_once(runtime)
    pay(runtime, runtime.read(lambda session: list(session.scalars(select(Invoice.id)))))
    clock.set(parse_instant("2026-12-16T10:00:00-03:00"))
    waiting = api.subscribe(
        ACCOUNT, "platform", plan="basic", modules=[], monthly_price_cents=None, payment_method="boleto"
    )
    assert waiting["change"]["effect"] == "next_period"
    page.set_viewport_size(PHONE)
    page.goto(link(server, runtime))
    page.get_by_role("link", name="Alterar plano").click()
    page.get_by_role("radio", name=re.compile("^Pro")).check()
    page.get_by_role("button", name="Continuar").click()
    page.get_by_role("button", name="Revisar").click()
    assert "A mudança de plano prevista para 01/01/2027 é cancelada" in page.locator("#efeito").inner_text()
    looks_right(page, "withdrawn")
