"""The customer's payment page in Debian's Chromium: from the link in a real email to a settled invoice.

regua (app, webhooks, in-process worker) and the Asaas simulator run under uvicorn on real sockets;
emails go to an aiosmtpd sink; the browser opens the link an email carried, pays by PIX through the
simulator's control, and watches the page turn to "Pagamento confirmado" when the webhook settles it.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from axe_playwright_python.sync_playwright import Axe
from sqlalchemy import select

from billing.clock import FrozenClock
from billing.journal import Notification
from billing.models import Charge
from billing.records import Receipt
from regua.app import create_app
from regua.assembly import InProcessWorker, build_gateway, build_providers
from regua.mailer import SmtpPostman
from regua.portal.tokens import PortalTokens
from regua.runtime import build_runtime
from regua.sandbox.simulator import create_simulator_app
from regua.settings import Settings
from tests.browser.conftest import SCREENSHOTS
from tests.conftest import ASAAS_TOKEN
from tests.integration.conftest import Api
from tests.integration.smtp_sink import Received, SmtpSink
from tests.integration.test_charging_simulator import ACCOUNT, World, bound_socket, day, serve
from workers.actors import declare_actors
from workers.broker import build_broker
from workers.context import WorkerContext

pytestmark = [pytest.mark.browser, pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)]

LINK = re.compile(r"https?://\S+/portal/[A-Za-z0-9_.\-]+")


@dataclass
class Portal:
    """The live world (regua, the simulator, the mail sink) and where regua answers."""

    world: World
    url: str
    sink: SmtpSink

    def link_in(self, message: Received) -> str:
        """The payment page's link as the email's plain text carries it."""
        match = LINK.search(message.text)
        assert match is not None, message.text
        assert match.group(0).startswith(self.url)
        return match.group(0)

    def mail_after_tick(self, at: datetime, kind: str) -> Received:
        """Tick at `at` and again 20 minutes on, then the latest email of `kind`.

        The second pass sends what the first held back: an email that asks for money waits for the
        boleto line or PIX code of a charge just opened, a blocked email waits a few minutes.
        """
        self.world.tick(at)
        self.world.tick(at + timedelta(minutes=20))
        return self.mail(kind)

    def mail(self, kind: str, timeout: float = 20) -> Received:
        """The latest email of this kind the sink caught, waiting for the first one."""
        deadline = time.monotonic() + timeout
        while not self.sink.of_kind(kind):
            assert time.monotonic() < deadline, f"no {kind} email; the sink has {self.sink.kinds()}"
            time.sleep(0.05)
        return self.sink.of_kind(kind)[-1]

    def sim_payment_of(self, charge_id: str) -> dict[str, Any]:
        [payment] = [p for p in self.world.sim_payments() if p["externalReference"] == charge_id]
        return payment


@pytest.fixture
def smtp_sink() -> Iterator[SmtpSink]:
    sink = SmtpSink()
    sink.start()
    yield sink
    sink.stop()


@pytest.fixture
def portal(settings: Settings, clock: FrozenClock, smtp_sink: SmtpSink) -> Iterator[Portal]:
    regua_sock, sim_sock = bound_socket(), bound_socket()
    regua_url = f"http://127.0.0.1:{regua_sock.getsockname()[1]}"
    sim_url = f"http://127.0.0.1:{sim_sock.getsockname()[1]}"
    live = replace(settings, asaas_api_url=sim_url, smtp_url=smtp_sink.url, public_url=regua_url)
    runtime = build_runtime(live, clock=clock)
    providers = build_providers(live)
    gateway = build_gateway(live)
    context = WorkerContext(runtime, providers, gateway, postman=lambda: SmtpPostman(runtime))
    jobs = declare_actors(build_broker(""), lambda: context)
    app = create_app(
        runtime,
        providers,
        jobs.enqueue_events,
        [InProcessWorker(jobs.broker)],
        gateway=gateway,
        send_mails=jobs.mailing.queue,
    )
    simulator = create_simulator_app(f"{regua_url}/webhooks/asaas", ASAAS_TOKEN, clock=clock)
    with (
        serve(simulator, sim_sock),
        serve(app, regua_sock),
        httpx.Client(base_url=regua_url, timeout=30) as regua_client,
        httpx.Client(base_url=sim_url, timeout=10) as sim_client,
    ):
        api = Api(regua_client)  # type: ignore[arg-type]
        api.put_account(ACCOUNT)
        yield Portal(World(runtime, clock, context, jobs, api, sim_client), regua_url, smtp_sink)
    gateway.close()


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    """Where screenshots go: docs/screenshots/ when REGUA_UPDATE_SCREENSHOTS=1 (they are committed), else a temp dir."""
    if os.environ.get("REGUA_UPDATE_SCREENSHOTS") == "1":
        return SCREENSHOTS
    return tmp_path


def serious_violations(page: Any) -> list[str]:
    """axe-core's serious and critical findings on the page as it is now."""
    results = Axe().run(page)
    return [
        f"{v['id']} ({v['impact']}): {v['help']}"
        for v in results.response["violations"]
        if v["impact"] in ("serious", "critical")
    ]


def charge_id_in(url: str) -> str:
    match = re.search(r"/cobranca/(chg_[0-9a-f]+)", url)
    assert match is not None, url
    return match.group(1)


def test_a_blocked_customer_follows_the_emails_link_pays_by_pix_and_sees_the_access_released(
    portal: Portal, page: Any, shots: Path
) -> None:
    world = portal.world
    world.api.subscribe(ACCOUNT, "platform", payment_method="pix")
    world.tick(day(1))
    link = portal.link_in(portal.mail_after_tick(day(7), "account_blocked"))
    assert world.api.access(ACCOUNT, "platform")["state"] == "blocked"

    page.set_viewport_size({"width": 375, "height": 812})
    response = page.goto(link)
    assert response.status == 200
    assert response.headers["referrer-policy"] == "no-referrer"
    assert page.locator("h1").inner_text() == "Padaria Central Ltda"
    status = page.locator("#produto-platform + p").inner_text()
    assert "Acesso bloqueado" in status
    assert "desde 07/12/2026" in status
    assert page.locator("[data-total]").inner_text() == "R$ 199,90"
    assert serious_violations(page) == []
    page.screenshot(path=str(shots / "portal-375.png"), full_page=True)
    page.set_viewport_size({"width": 1280, "height": 800})
    page.screenshot(path=str(shots / "portal-1280.png"), full_page=True)

    page.get_by_role("button", name="Pagar R$ 199,90").click()
    page.wait_for_url(re.compile(r"/cobranca/chg_"))
    charge_id = charge_id_in(page.url)
    code = page.locator("#pix-code").input_value()
    assert code.startswith("000201")
    qr = page.get_by_alt_text("QR Code do PIX de R$ 199,90")
    assert qr.evaluate("image => image.complete && image.naturalWidth > 100")
    assert page.get_by_role("button", name="Copiar código PIX").is_visible()
    assert serious_violations(page) == []
    page.set_viewport_size({"width": 375, "height": 812})
    page.screenshot(path=str(shots / "portal-pix-375.png"), full_page=True)

    # A second visit pays the same charge: no new one at the gateway.
    page.goto(link)
    page.get_by_role("button", name="Pagar R$ 199,90").click()
    page.wait_for_url(re.compile(r"/cobranca/chg_"))
    assert charge_id_in(page.url) == charge_id
    assert page.locator("#pix-code").input_value() == code

    payment = portal.sim_payment_of(charge_id)
    assert world.sim.post(f"/sim/payments/{payment['id']}/pay").status_code == 200
    # The page's own script sees the webhook's settlement and shows it; nobody reloads by hand.
    page.get_by_role("heading", name="Pagamento confirmado").wait_for(timeout=20_000)
    assert "Acesso liberado" in page.locator("#cobranca").inner_text()
    assert world.api.access(ACCOUNT, "platform")["state"] == "active"
    assert [invoice["status"] for invoice in world.api.invoices(ACCOUNT)] == ["paid"]
    page.screenshot(path=str(shots / "portal-paid-375.png"), full_page=True)

    page.goto(link)
    assert "Em dia" in page.locator("#produto-platform + p").inner_text()
    history = page.locator("section[aria-labelledby=historico] tbody tr")
    assert history.count() == 1
    assert "R$ 199,90" in history.first.inner_text()
    assert "PIX" in history.first.inner_text()


def test_a_tampered_link_gets_a_plain_page_that_reveals_nothing(portal: Portal, page: Any) -> None:
    world = portal.world
    world.api.subscribe(ACCOUNT, "platform", payment_method="boleto")
    link = portal.link_in(portal.mail_after_tick(day(1), "invoice_issued"))
    prefix, token = link.rsplit("/", 1)
    payload, signature = token.rsplit(".", 1)
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]

    for bad in (f"{payload}.{flipped}", f"{payload[:-2]}x{payload[-1]}.{signature}", "nada"):
        response = page.goto(f"{prefix}/{bad}")
        assert response.status == 404
        assert page.locator("h1").inner_text() == "Este link não é válido"
        body = page.content()
        assert "Padaria" not in body
        assert ACCOUNT not in body
        assert "Traceback" not in body
    status = httpx.get(f"{prefix}/{payload}.{flipped}/cobranca/chg_x/status")
    assert status.status_code == 404
    assert "Padaria" not in status.text


def test_an_expired_link_says_so_and_points_to_the_newest_email(portal: Portal, page: Any) -> None:
    world = portal.world
    world.api.subscribe(ACCOUNT, "platform", payment_method="boleto")
    tokens = PortalTokens(world.runtime.settings.secret_key)
    sixty_days_ago = world.clock.now() - timedelta(days=60)
    response = page.goto(f"{portal.url}/portal/{tokens.issue(ACCOUNT, sixty_days_ago)}")
    assert response.status == 410
    assert page.locator("h1").inner_text() == "Este link expirou"
    assert "Padaria" not in page.content()
    fresh = tokens.issue(ACCOUNT, sixty_days_ago + timedelta(minutes=1))
    assert page.goto(f"{portal.url}/portal/{fresh}").status == 200


def test_a_mentorship_two_months_late_is_offered_both_months_in_one_payment_the_platform_only_the_overdue_one(
    portal: Portal, page: Any
) -> None:
    world = portal.world
    world.api.subscribe(ACCOUNT, "platform", payment_method="pix", starts_on="2026-11-01")
    world.api.subscribe(ACCOUNT, "mentorship", payment_method="pix", monthly_price_cents=50000, starts_on="2026-11-01")
    world.tick(day(1, 11))
    world.tick(day(7, 11))
    world.tick(day(1))
    # Blocked for November, the day-3 mail is the block's reminder (what to pay to be unblocked), not December's.
    link = portal.link_in(portal.mail_after_tick(day(3), "account_blocked"))
    page.set_viewport_size({"width": 375, "height": 812})
    page.goto(link)

    mentorship = page.locator("section[aria-labelledby=produto-mentorship]")
    assert "Acesso bloqueado" in mentorship.inner_text()
    owed = mentorship.locator("table").first.locator("tbody tr")
    assert [row.locator("td").first.inner_text() for row in owed.all()] == ["novembro/2026", "dezembro/2026"]
    assert mentorship.locator("[data-total]").inner_text() == "R$ 1.000,00"
    assert "pagos juntos, em um único pagamento" in mentorship.inner_text()

    platform = page.locator("section[aria-labelledby=produto-platform]")
    assert platform.locator("[data-total]").inner_text() == "R$ 199,90"
    tables = platform.locator("table")
    assert [row.locator("td").first.inner_text() for row in tables.nth(0).locator("tbody tr").all()] == [
        "novembro/2026"
    ]
    assert "Vence depois" in platform.inner_text()
    assert [row.locator("td").first.inner_text() for row in tables.nth(1).locator("tbody tr").all()] == [
        "dezembro/2026"
    ]
    assert serious_violations(page) == []

    mentorship.get_by_role("button", name="Pagar R$ 1.000,00").click()
    page.wait_for_url(re.compile(r"/cobranca/chg_"))
    charge_id = charge_id_in(page.url)

    def charge_facts(session: Any) -> tuple[str, int, int]:
        charge = session.get(Charge, charge_id)
        return charge.product, charge.amount_cents, len(charge.invoice_ids)

    assert world.runtime.read(charge_facts) == ("mentorship", 100000, 2)
    assert portal.sim_payment_of(charge_id)["value"] == 1000
    assert "R$ 1.000,00" in page.locator("#cobranca h2").inner_text()


def test_a_receipt_sent_from_the_page_puts_the_invoice_in_verification_and_mails_at_once(
    portal: Portal, page: Any
) -> None:
    world = portal.world
    world.api.subscribe(ACCOUNT, "platform", payment_method="boleto")
    world.tick(day(1))
    link = portal.link_in(portal.mail_after_tick(day(3), "payment_reminder"))
    page.goto(link)
    page.get_by_text("Já pagou? Envie o comprovante").click()

    page.set_input_files(
        "#arquivo-platform", files=[{"name": "foto.pdf", "mimeType": "application/pdf", "buffer": b"not a pdf"}]
    )
    page.get_by_role("button", name="Enviar comprovante").click()
    assert "precisa ser um PDF ou uma imagem PNG ou JPEG" in page.locator("[role=alert]").inner_text()
    assert world.rows(Receipt) == []

    page.goto(link)
    page.get_by_text("Já pagou? Envie o comprovante").click()
    pdf = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
    page.set_input_files(
        "#arquivo-platform", files=[{"name": "comprovante.pdf", "mimeType": "image/png", "buffer": pdf}]
    )
    page.get_by_role("button", name="Enviar comprovante").click()
    page.get_by_text("Recebemos o seu comprovante").wait_for()
    [receipt] = world.rows(Receipt)
    [invoice] = world.api.invoices(ACCOUNT)
    assert (receipt.invoice_id, receipt.content, receipt.content_type) == (invoice["id"], pdf, "application/pdf")
    assert invoice["status"] == "verifying"
    assert "Verificação de pagamento" in page.locator("#produto-platform + p").inner_text()
    assert world.api.access(ACCOUNT, "platform")["state"] == "verifying"
    # Sent by the upload itself: no tick ran since.
    message = portal.mail("verification_pending")
    assert message["X-Regua-Invoice"] == invoice["id"]
    kinds = world.runtime.read(
        lambda session: list(
            session.scalars(select(Notification.status).where(Notification.kind == "verification_pending"))
        )
    )
    assert kinds == ["sent"]
    assert serious_violations(page) == []


def test_paying_by_card_leads_to_the_gateways_own_page_for_that_payment(portal: Portal, page: Any) -> None:
    world = portal.world
    world.api.subscribe(ACCOUNT, "platform", payment_method="boleto")
    page.goto(portal.link_in(portal.mail_after_tick(day(1), "invoice_issued")))
    page.get_by_label("Cartão de crédito").check()
    page.get_by_role("button", name="Pagar R$ 199,90").click()
    page.wait_for_url(re.compile(r"/cobranca/chg_.*\?cartao=1"))
    payment = portal.sim_payment_of(charge_id_in(page.url))
    card = page.get_by_role("link", name="Pagar com cartão")
    assert card.get_attribute("href") == payment["invoiceUrl"]
    # The charge behind it is a card payment at the gateway, created without card data.
    assert payment["billingType"] == "CREDIT_CARD"
    assert payment["creditCard"] is None
    assert page.locator("#boleto-line").count() == 0
    assert page.locator("input[type=password], input[autocomplete^=cc-]").count() == 0
    assert serious_violations(page) == []
