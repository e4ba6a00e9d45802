"""`regua dev`'s mail sink: mails sent over a real SMTP connection, seen at /ops/mail and /ops/mail.json."""

from __future__ import annotations

import base64
import smtplib
import socket
from collections.abc import Iterator
from datetime import UTC, datetime
from email.message import EmailMessage

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from billing.clock import FrozenClock
from regua.sandbox.mail_view import mail_routes
from regua.sandbox.smtp_sink import MailSink, PortTaken
from tests.integration.smtp_sink import free_port

AT = datetime(2026, 12, 1, 3, 5, tzinfo=UTC)


@pytest.fixture
def sink() -> Iterator[MailSink]:
    running = MailSink("127.0.0.1", free_port(), FrozenClock(AT))
    running.start()
    yield running
    running.stop()


def send(
    sink: MailSink, kind: str, *, invoice: str | None = "inv_1", to: str = "ana@padaria.example", date: str = ""
) -> None:
    message = EmailMessage()
    if date:
        message["Date"] = date
    message["From"] = "Financeiro <financeiro@localhost>"
    message["To"] = to
    message["Subject"] = f"Sua fatura <{kind}>"
    message["X-Regua-Kind"] = kind
    message["X-Regua-Account"] = "padaria"
    if invoice is not None:
        message["X-Regua-Invoice"] = invoice
    message.set_content("Linha digitável: 46191.11119 11111.111111 11111.111111 1 12340000019990")
    message.add_alternative("<p>Pague até <b>06/12/2026</b></p>", subtype="html")
    with smtplib.SMTP("127.0.0.1", sink.port, timeout=10) as client:
        client.send_message(message)


def test_mails_sent_over_smtp_are_listed_newest_first_with_regua_headers(sink: MailSink) -> None:
    send(sink, "invoice_issued")
    send(sink, "account_unblocked", invoice=None, to="caixa@padaria.example")

    listed = [mail.summary() for mail in sink.mails()]

    assert listed == [
        {
            "to": ["caixa@padaria.example"],
            "subject": "Sua fatura <account_unblocked>",
            "kind": "account_unblocked",
            "account": "padaria",
            "invoice": None,
            "received_at": "2026-12-01T03:05:00Z",
        },
        {
            "to": ["ana@padaria.example"],
            "subject": "Sua fatura <invoice_issued>",
            "kind": "invoice_issued",
            "account": "padaria",
            "invoice": "inv_1",
            "received_at": "2026-12-01T03:05:00Z",
        },
    ]


def test_the_mail_view_lists_and_renders_each_mail_with_its_headers_escaped(sink: MailSink) -> None:
    send(sink, "invoice_issued")
    client = TestClient(Starlette(routes=mail_routes(sink, ops_token="")))

    page = client.get("/ops/mail")
    listing = client.get("/ops/mail.json")

    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "X-Regua-Kind</dt><dd>invoice_issued" in page.text
    assert "Sua fatura &lt;invoice_issued&gt;" in page.text
    assert "<invoice_issued>" not in page.text
    assert "46191.11119 11111.111111" in page.text
    assert [mail["kind"] for mail in listing.json()] == ["invoice_issued"]


def test_with_an_ops_password_the_mail_view_asks_for_it(sink: MailSink) -> None:
    client = TestClient(Starlette(routes=mail_routes(sink, ops_token="s3cret")))
    basic = "Basic " + base64.b64encode(b"ops:s3cret").decode()

    assert client.get("/ops/mail.json").status_code == 401
    assert client.get("/ops/mail", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get("/ops/mail.json", headers={"Authorization": basic}).status_code == 200
    assert client.get("/ops/mail.json", headers={"Authorization": "Bearer s3cret"}).status_code == 200


def test_a_port_already_taken_is_named() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        sink = MailSink("127.0.0.1", port, FrozenClock(AT))

        with pytest.raises(PortTaken, match=f"127.0.0.1:{port} is taken"):
            sink.start()
    assert not sink.running


def test_a_mail_is_dated_by_its_sender_and_without_a_date_by_the_sinks_clock(sink: MailSink) -> None:
    send(sink, "account_blocked", date="Mon, 07 Dec 2026 03:00:00 +0000")
    send(sink, "payment_reminder")

    assert [mail.summary()["received_at"] for mail in sink.mails()] == ["2026-12-01T03:05:00Z", "2026-12-07T03:00:00Z"]
