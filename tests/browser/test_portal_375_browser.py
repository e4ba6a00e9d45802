"""The payment page on a 375 px phone in Chromium: every state the régua puts an account in fits the screen.

The worst cases of issue 22: the 5% auto-debit discount on every line, two months owed, a twelve-installment
annual card plan, a company name longer than the screen. Each page is measured (the document's scroll width
and every element's right edge against the viewport) and checked by axe-core. With
REGUA_WRITE_SCREENSHOTS=1 the open invoice with its discount is written to docs/screenshots/portal-discount-375.png.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from axe_playwright_python.sync_playwright import Axe
from sqlalchemy import select
from starlette.testclient import TestClient

from billing.clock import FrozenClock, parse_instant
from billing.models import Invoice
from regua.cli import tick_once
from regua.portal.tokens import PortalTokens
from regua.runtime import Runtime
from tests.browser.conftest import SCREENSHOTS, LiveServer
from tests.integration.asaas_fake import FakeAsaas, fake_asaas, refused
from tests.integration.conftest import AUTH, Api
from tests.integration.ops_helpers import ops_app
from tests.integration.test_rules import pay
from webhooks.base import Provider
from workers.actors import Jobs

pytestmark = [pytest.mark.browser, pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)]

ACCOUNT = "padaria-central"
LONG_NAME = "Panificadora e Confeitaria Nossa Senhora Aparecida do Jardim Botânico Comércio de Alimentos Ltda"
PHONE = {"width": 375, "height": 812}
WRITE_SCREENSHOTS = os.environ.get("REGUA_WRITE_SCREENSHOTS") == "1"

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

INSIDE = """element => {
  const box = element.getBoundingClientRect();
  return box.left >= 0 && box.right <= window.innerWidth && box.width > 0;
}"""


def brl(cents: int) -> str:
    reais, centavos = divmod(cents, 100)
    return f"R$ {reais:,}".replace(",", ".") + f",{centavos:02d}"


def five_percent(cents: int) -> int:
    """The auto-debit discount, rounded half up to the centavo (SPEC 3.3), written here from the rule."""
    quotient, remainder = divmod(cents * 5, 100)
    return quotient + (1 if 2 * remainder >= 100 else 0)


@pytest.fixture
def server(runtime: Runtime, providers: dict[str, Provider], jobs: Jobs, api: Api) -> Iterator[LiveServer]:
    with LiveServer(ops_app(runtime, providers, jobs, worker=False)) as live:
        yield live


@pytest.fixture
def asaas(server: LiveServer) -> Iterator[FakeAsaas]:
    with fake_asaas() as fake:
        yield fake


@pytest.fixture
def phone(page: Any) -> Any:
    page.set_viewport_size(PHONE)
    return page


def open_page(phone: Any, server: LiveServer, runtime: Runtime) -> None:
    token = PortalTokens(runtime.settings.secret_key).issue(ACCOUNT, runtime.clock.now())
    assert phone.goto(f"{server.url}/portal/{token}").status == 200
    assert phone.locator("h1").inner_text() == LONG_NAME


def fits_a_phone(phone: Any, state: str) -> None:
    """Nothing past the right edge of a 375 px screen, every amount whole, and no serious axe finding."""
    wide = phone.evaluate(OVERFLOW)
    assert wide == [], f"{state}: {wide}"
    for total in phone.locator("[data-total]").all():
        assert total.evaluate(INSIDE), f"{state}: {total.inner_text()} leaves the screen"
    results = Axe().run(phone)
    serious = [v["id"] for v in results.response["violations"] if v["impact"] in ("serious", "critical")]
    assert serious == [], state


def declining_every_card(asaas: FakeAsaas, times: int) -> None:
    asaas.next_create.extend(refused("Transação não autorizada: saldo insuficiente.") for _ in range(times))


def test_an_auto_debit_invoice_declined_on_day_1_shows_its_discount_and_total_whole_on_a_phone(
    server: LiveServer, asaas: FakeAsaas, phone: Any, api: Api, runtime: Runtime
) -> None:
    api.put_account(ACCOUNT, name=LONG_NAME)
    api.subscribe(ACCOUNT, "platform", payment_method="card_auto_debit", card_token="tok_card")
    declining_every_card(asaas, 1)
    tick_once(runtime)

    open_page(phone, server, runtime)
    owed = phone.locator("section[aria-labelledby=produto-platform]")
    discount = five_percent(19990)
    assert f"5% de desconto: −{brl(discount)}" in owed.inner_text()
    assert owed.locator("[data-total]").inner_text() == brl(19990 - discount)
    fits_a_phone(phone, "open with discount")
    if WRITE_SCREENSHOTS:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        phone.screenshot(path=str(SCREENSHOTS / "portal-discount-375.png"), full_page=True)


def test_two_products_blocked_for_two_months_of_auto_debit_fit_a_phone(
    server: LiveServer, asaas: FakeAsaas, phone: Any, api: Api, runtime: Runtime, clock: FrozenClock
) -> None:
    api.put_account(ACCOUNT, name=LONG_NAME)
    card = {"payment_method": "card_auto_debit", "card_token": "tok_card", "starts_on": "2026-11-01"}
    api.subscribe(ACCOUNT, "platform", **card)
    api.subscribe(ACCOUNT, "mentorship", monthly_price_cents=149990, **card)
    declining_every_card(asaas, 40)
    for instant in ("2026-11-01T09:00", "2026-11-03T09:00", "2026-11-05T09:00", "2026-11-07T09:00"):
        clock.set(parse_instant(instant + ":00-03:00"))
        tick_once(runtime)
    clock.set(parse_instant("2026-12-01T09:00:00-03:00"))
    tick_once(runtime)

    open_page(phone, server, runtime)
    mentorship = phone.locator("section[aria-labelledby=produto-mentorship]")
    assert "Acesso bloqueado" in mentorship.inner_text()
    month = 149990 - five_percent(149990)
    assert mentorship.locator("[data-total]").inner_text() == brl(2 * month)
    platform = phone.locator("section[aria-labelledby=produto-platform]")
    assert "Acesso bloqueado" in platform.inner_text()
    assert "Vence depois" in platform.inner_text()
    fits_a_phone(phone, "blocked, two months")


def test_an_invoice_in_verification_fits_a_phone(
    server: LiveServer, asaas: FakeAsaas, phone: Any, api: Api, runtime: Runtime, client: TestClient
) -> None:
    api.put_account(ACCOUNT, name=LONG_NAME)
    api.subscribe(ACCOUNT, "platform", payment_method="card_auto_debit", card_token="tok_card")
    declining_every_card(asaas, 1)
    tick_once(runtime)
    [invoice] = api.invoices(ACCOUNT)
    assert client.post(f"/api/invoices/{invoice['id']}/receipts", headers=AUTH).status_code == 200

    open_page(phone, server, runtime)
    assert "Verificação de pagamento" in phone.locator("main").inner_text()
    fits_a_phone(phone, "verifying")


def test_a_paid_month_and_its_history_fit_a_phone(
    server: LiveServer, asaas: FakeAsaas, phone: Any, api: Api, runtime: Runtime
) -> None:
    api.put_account(ACCOUNT, name=LONG_NAME)
    api.subscribe(ACCOUNT, "platform", payment_method="boleto")
    tick_once(runtime)
    pay(runtime, runtime.read(lambda session: list(session.scalars(select(Invoice.id)))))

    open_page(phone, server, runtime)
    assert "Nada a pagar agora" in phone.locator("main").inner_text()
    assert phone.locator("section[aria-labelledby=historico] tbody tr").count() == 1
    fits_a_phone(phone, "paid")


def test_an_annual_card_plan_in_twelve_installments_fits_a_phone(
    server: LiveServer, asaas: FakeAsaas, phone: Any, api: Api, runtime: Runtime, client: TestClient
) -> None:
    for kind, item, name, price in [
        ("plans", "pro", "Pro com atendimento prioritário", 19990),
        ("modules", "delivery", "Delivery e pedidos pelo WhatsApp", 3000),
        ("modules", "fiscal", "Emissão de notas fiscais eletrônicas", 4500),
    ]:
        body = {"product": "platform", "name": name, "monthly_price_cents": price}
        assert client.put(f"/api/{kind}/{item}", json=body, headers=AUTH).status_code == 201
    api.put_account(ACCOUNT, name=LONG_NAME)
    api.subscribe(
        ACCOUNT,
        "platform",
        modules=["delivery", "fiscal"],
        monthly_price_cents=None,
        frequency="annual",
        payment_method="card",
        card_token="tok_card",
        installments=12,
    )
    declining_every_card(asaas, 1)
    tick_once(runtime)
    [invoice] = api.invoices(ACCOUNT)
    assert invoice["total_cents"] == 12 * (19990 + 3000 + 4500)

    open_page(phone, server, runtime)
    platform = phone.locator("section[aria-labelledby=produto-platform]")
    assert platform.locator("[data-total]").inner_text() == brl(12 * (19990 + 3000 + 4500))
    assert "Emissão de notas fiscais eletrônicas" in platform.inner_text()
    fits_a_phone(phone, "annual card plan in 12 installments")
