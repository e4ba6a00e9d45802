"""The mailer without a server: REGUA_SMTP_URL, the bytes on the wire, and surviving an hour-long outage."""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, date, datetime, timedelta

import pytest

from billing.outbox import LEASE, QUIET_AFTER, REQUEUE_AFTER
from regua.mail import EmailContext, InvoiceLine, message_bytes, render_email
from regua.smtp import ATTEMPT_SECONDS, SmtpUrl
from workers.mailing import MAX_BACKOFF_MS, MIN_BACKOFF_MS, SEND_RETRIES

DEC = date(2026, 12, 1)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("smtp://127.0.0.1:1025", SmtpUrl("127.0.0.1", 1025)),
        ("smtp://mail.example.com", SmtpUrl("mail.example.com", 25)),
        (
            "smtp://apikey:s3cr%40t@smtp.example.com:587?starttls=true",
            SmtpUrl("smtp.example.com", 587, "apikey", "s3cr@t", starttls=True),
        ),
        ("smtps://user:pw@smtp.example.com", SmtpUrl("smtp.example.com", 465, "user", "pw", tls=True)),
        ("smtp://h:2525?starttls=false", SmtpUrl("h", 2525)),
    ],
)
def test_the_smtp_url_says_host_port_credentials_and_tls(url: str, expected: SmtpUrl) -> None:
    assert SmtpUrl.parse(url) == expected


@pytest.mark.parametrize(
    ("url", "complaint"),
    [
        ("http://mail.example.com", "smtp:// or smtps://"),
        ("smtp://", "no host"),
        ("smtp://h:notaport", "invalid port"),
        ("smtps://h?starttls=true", "TLS already"),
        ("smtp://h?ssl=1", "unknown option"),
    ],
)
def test_a_wrong_smtp_url_is_refused_naming_the_variable(url: str, complaint: str) -> None:
    with pytest.raises(ValueError, match="REGUA_SMTP_URL") as refused:
        SmtpUrl.parse(url)
    assert complaint in str(refused.value)


def test_the_password_never_shows_in_the_repr() -> None:
    assert "s3cret" not in repr(SmtpUrl.parse("smtp://u:s3cret@h:25"))


def test_the_send_retries_outlast_an_hour_long_outage_even_with_the_shortest_backoffs() -> None:
    # Dramatiq waits between factor * 2**n and twice that, capped to between half and all of the maximum.
    shortest = sum(min(MIN_BACKOFF_MS * 2**retry, MAX_BACKOFF_MS // 2) for retry in range(SEND_RETRIES))
    assert timedelta(milliseconds=shortest) > timedelta(hours=4)


def test_a_retry_finds_its_own_lease_over_and_a_live_retry_chain_is_not_queued_again_by_the_tick() -> None:
    assert timedelta(milliseconds=MIN_BACKOFF_MS) >= LEASE > timedelta(seconds=ATTEMPT_SECONDS)
    assert timedelta(milliseconds=MAX_BACKOFF_MS) + LEASE < QUIET_AFTER
    assert QUIET_AFTER > REQUEUE_AFTER


def wire(**changes: object) -> bytes:
    invoice = InvoiceLine("inv_dec", "platform", DEC, date(2026, 12, 31), DEC, 19990, 1000, 18990)
    values: dict[str, object] = {
        "kind": "payment_reminder",
        "account_id": "padaria-central",
        "account_name": "Padaria Conceição Ltda",
        "recipients": (("Ana Conceição de Araújo", "ana@padaria.example"), ('Bruno "B" Souza', "b@padaria.example")),
        "invoices": (invoice,),
        "portal_url": "https://portal.example/p",
        "payment_method": "card_auto_debit",
    }
    values.update(changes)
    context = EmailContext(**values)  # type: ignore[arg-type]
    return message_bytes(
        render_email(context),
        context,
        mail_from="Financeiro Régua <financeiro@regua.example>",
        message_id_domain="regua.example",
        invoice_id="inv_dec",
        sent_at=datetime(2026, 12, 3, 11, 0, tzinfo=UTC),
        message_id="<ntf_1@regua.example>",
    )


def test_the_wire_bytes_are_crlf_lines_of_legal_length_and_parse_back_to_the_same_email() -> None:
    data = wire()
    assert b"\n" not in data.replace(b"\r\n", b"")
    assert all(len(line) <= 998 for line in data.split(b"\r\n"))
    assert data.isascii()
    message = email.message_from_bytes(data, policy=email.policy.default)
    assert message["Subject"] == "Lembrete: pague sua fatura de dezembro/2026 até 06/12/2026 e evite o bloqueio"
    assert message["From"] == "Financeiro Régua <financeiro@regua.example>"
    assert [(a.display_name, a.addr_spec) for a in message["To"].addresses] == [
        ("Ana Conceição de Araújo", "ana@padaria.example"),
        ('Bruno "B" Souza', "b@padaria.example"),
    ]
    assert (message["Message-ID"], message["X-Regua-Invoice"]) == ("<ntf_1@regua.example>", "inv_dec")
    assert message["Date"] == "Thu, 03 Dec 2026 11:00:00 +0000"
    text = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    assert text is not None
    assert html is not None
    assert "Desconto de 5%" in text.get_content()
    assert "Padaria Conceição Ltda" in html.get_content()


def test_the_same_notification_gives_the_same_bytes_so_a_resent_copy_is_recognisable() -> None:
    assert wire() == wire()
    assert b'boundary="=_regua_' in wire()


@pytest.mark.parametrize("name", ["Ana\r\nBcc: outro@example.com", "Ana\nBcc: outro@example.com"])
def test_a_line_break_in_a_name_is_refused_rather_than_becoming_a_header(name: str) -> None:
    with pytest.raises(ValueError, match="CR or LF"):
        wire(recipients=((name, "ana@padaria.example"),))


@pytest.mark.parametrize("address", ["ana@padaria.example>, x@evil.example", "ana", "a b@padaria.example"])
def test_an_address_that_is_not_one_address_is_refused(address: str) -> None:
    with pytest.raises(ValueError, match="not an email address"):
        wire(recipients=(("Ana", address),))
