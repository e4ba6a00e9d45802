"""The emails in Chromium: every kind readable on a 375 px phone and at 600 px, and whole in /ops/mail's preview.

Each sample email of regua.mail (one of every kind, as `python -m regua.mail` writes them) is opened at
both widths: nothing scrolls sideways (the document's scroll width and every element's right edge
against the viewport) and axe-core finds nothing serious. With REGUA_WRITE_SCREENSHOTS=1 the invoice
of a boleto payer (PIX code and boleto line) at 375 px is written to docs/screenshots/email-375.png.
"""

from __future__ import annotations

import os
import smtplib
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any

import pytest
from axe_playwright_python.sync_playwright import Axe
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from billing.clock import FrozenClock
from regua.mail import KINDS, _sample_contexts, render_email, write_samples
from regua.sandbox.mail_view import mail_routes
from regua.sandbox.smtp_sink import MailSink
from tests.browser.conftest import SCREENSHOTS, LiveServer
from tests.integration.smtp_sink import free_port

pytestmark = pytest.mark.browser

WRITE_SCREENSHOTS = os.environ.get("REGUA_WRITE_SCREENSHOTS") == "1"
WIDTHS = (375, 600)
AT = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)

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


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The HTML part of every sample email, by its sample name."""
    directory = tmp_path_factory.mktemp("samples")
    written = write_samples(directory) + write_samples(directory, every_kind=True)
    found = {path.stem: path.read_text(encoding="utf-8") for path in written if path.suffix == ".html"}
    return found | {name: render_email(context).html for name, context in _other_changes().items()}


def _other_changes() -> dict[str, Any]:
    """The subscription mail's other cases, from the upgrade sample: a downgrade waiting for the next period, and
    that change given up (the plan in force chosen again)."""
    upgrade = _sample_contexts()["subscription_changed_upgrade"]
    assert upgrade.change is not None
    old, new = upgrade.change["new"], upgrade.change["old"]
    later = {**upgrade.change, "effect": "next_period", "effective_on": "2027-01-01", "old": old, "new": new}
    withdrawn = {**later, "effect": "withdrawn", "old": new, "new": old}
    return {
        "subscription_changed_later": replace(upgrade, invoices=(), change=later),
        "subscription_changed_withdrawn": replace(upgrade, invoices=(), change=withdrawn),
    }


def test_the_samples_cover_every_kind_of_email(samples: dict[str, str]) -> None:
    assert {kind for kind in KINDS if any(name.startswith(kind + "_") for name in samples)} == set(KINDS)


@pytest.mark.parametrize("width", WIDTHS)
def test_every_email_fits_the_screen_without_scrolling_sideways_and_axe_finds_nothing_serious(
    samples: dict[str, str], page: Any, width: int
) -> None:
    page.set_viewport_size({"width": width, "height": 800})
    for name, html in sorted(samples.items()):
        page.set_content(html)
        wide = page.evaluate(OVERFLOW)
        assert wide == [], f"{name} at {width} px: {wide}"
        results = Axe().run(page)
        serious = [v["id"] for v in results.response["violations"] if v["impact"] in ("serious", "critical")]
        assert serious == [], f"{name} at {width} px"
        if WRITE_SCREENSHOTS and width == 375 and name == "invoice_issued_boleto_pix":
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SCREENSHOTS / "email-375.png"), full_page=True)


def test_at_600_px_the_email_is_as_wide_as_before_and_at_375_it_takes_the_whole_phone(
    samples: dict[str, str], page: Any
) -> None:
    sheet_width = "() => document.querySelector('table.sheet').getBoundingClientRect().width"
    html = samples["invoice_issued_boleto_pix"]
    page.set_viewport_size({"width": 800, "height": 800})
    page.set_content(html)
    assert page.evaluate(sheet_width) == 600
    page.set_viewport_size({"width": 375, "height": 800})
    page.set_content(html)
    assert 375 - 24 <= page.evaluate(sheet_width) <= 375


def test_the_pix_code_and_the_boleto_line_wrap_inside_their_own_box_on_a_phone(
    samples: dict[str, str], page: Any
) -> None:
    page.set_viewport_size({"width": 375, "height": 800})
    page.set_content(samples["invoice_issued_boleto_pix"])
    codes = page.locator("p.code")
    assert codes.count() == 2
    for code in codes.all():
        fits = code.evaluate("box => box.scrollWidth <= box.clientWidth && box.getBoundingClientRect().right <= 375")
        assert fits, code.inner_text()


# /ops/mail's preview of what regua dev's sink caught.


@pytest.fixture
def sink() -> Iterator[MailSink]:
    running = MailSink("127.0.0.1", free_port(), FrozenClock(AT))
    running.start()
    yield running
    running.stop()


def send(sink: MailSink, name: str, html: str) -> None:
    message = EmailMessage()
    message["From"] = "Financeiro <financeiro@localhost>"
    message["To"] = "ana@padaria.example"
    message["Subject"] = name
    message["X-Regua-Kind"] = name.split("_")[0]
    message.set_content("A parte de texto.")
    message.add_alternative(html, subtype="html")
    with smtplib.SMTP("127.0.0.1", sink.port, timeout=10) as client:
        client.send_message(message)


@pytest.fixture
def mail_view(sink: MailSink) -> Iterator[LiveServer]:
    async def healthz(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    app = Starlette(routes=[*mail_routes(sink, ops_token=""), Route("/healthz", healthz)])
    with LiveServer(app) as live:
        yield live


WHOLE = """frame => {
  const root = frame.contentDocument.documentElement;
  return {
    width: frame.clientWidth,
    clipped_across: root.scrollWidth > frame.clientWidth,
    clipped_down: root.scrollHeight > frame.clientHeight,
  };
}"""


def test_the_mail_preview_shows_each_mail_whole_at_600_px_and_at_375_px(
    samples: dict[str, str], sink: MailSink, mail_view: LiveServer, page: Any
) -> None:
    for name in ("invoice_issued_boleto_pix", "subscription_changed_upgrade"):
        send(sink, name, samples[name])
    page.goto(f"{mail_view.url}/ops/mail")
    frames = page.locator("iframe")
    assert frames.count() == 2
    for number in range(2):
        article = page.locator(f"#mail-{number}")
        frame = article.locator("iframe")
        page.wait_for_function(
            "frame => frame.clientHeight >= frame.contentDocument.documentElement.scrollHeight",
            arg=frame.element_handle(),
        )
        assert frame.evaluate(WHOLE) == {"width": 600, "clipped_across": False, "clipped_down": False}
        article.get_by_label("375 px").check()
        page.wait_for_function(
            "frame => frame.clientHeight >= frame.contentDocument.documentElement.scrollHeight",
            arg=frame.element_handle(),
        )
        assert frame.evaluate(WHOLE) == {"width": 375, "clipped_across": False, "clipped_down": False}
    results = Axe().run(page)
    assert [v["id"] for v in results.response["violations"] if v["impact"] in ("serious", "critical")] == []


def test_the_mail_preview_runs_no_script_of_the_mails_and_reloads_when_a_new_mail_arrives(
    samples: dict[str, str], sink: MailSink, mail_view: LiveServer, page: Any
) -> None:
    send(
        sink, "scripted", "<p id='said'>quieto</p><script>document.getElementById('said').textContent = 'ran'</script>"
    )
    page.goto(f"{mail_view.url}/ops/mail")
    frame = page.frame_locator("#mail-0 iframe")
    assert frame.locator("#said").inner_text() == "quieto"

    send(sink, "invoice_issued_boleto_pix", samples["invoice_issued_boleto_pix"])
    page.locator("#mail-1 iframe").wait_for(timeout=15_000)
    assert page.locator("h1").inner_text() == "Mail caught by regua dev (2)"
