"""Delivery over a real SMTP server: once per notification through retries and outages, refusals recorded."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from datetime import timedelta
from email.message import EmailMessage

import pytest
from dramatiq.errors import QueueJoinTimeout
from starlette.testclient import TestClient

from billing.clock import FrozenClock
from billing.invoicing import issue_due_invoices
from billing.models import NotificationStatus
from billing.notifications import record_due_notifications
from regua.cli import tick_once
from regua.runtime import Runtime
from regua.settings import Settings
from regua.smtp import PermanentMailError, SmtpMailer, TemporaryMailError
from tests.integration.asaas_fake import FakeAsaas, fake_asaas
from tests.integration.conftest import Api
from tests.integration.notification_helpers import (
    deliver,
    invoice_ids,
    mail_settings,
    move,
    notifications,
    open_pending_charge,
    wait_until,
)
from tests.integration.smtp_sink import SmtpSink, free_port, smtp_sink
from workers.actors import Jobs

__all__ = ["smtp_sink"]

ACCOUNT = "padaria-central"
ANA = "ana@padaria.example"
BIA = "bia@padaria.example"
REFUSED = "550 5.1.1 <ana@padaria.example>: Recipient address rejected: User unknown"


@pytest.fixture
def settings(settings: Settings, smtp_sink: SmtpSink) -> Settings:
    return mail_settings(settings, smtp_sink.url)


@pytest.fixture(autouse=True)
def asaas() -> Iterator[FakeAsaas]:
    """The gateway the tick opens day-1 boleto and PIX charges at (and gets their codes from)."""
    with fake_asaas() as fake:
        yield fake


@pytest.fixture
def jobs(jobs: Jobs) -> Iterator[Jobs]:
    """Kicks at once and retries milliseconds apart instead of minutes (attempts are leased on the frozen clock)."""
    jobs.mailing.min_backoff_ms, jobs.mailing.max_backoff_ms = 20, 100
    jobs.mailing.kick_delay_ms = 0
    yield jobs
    jobs.mailing.close()


def recorded(runtime: Runtime) -> list[str]:
    """Record what is due now, as a tick would, without sending it."""
    now = runtime.clock.now()
    tick_ids = runtime.transaction(
        lambda session: record_due_notifications(session, now, runtime.calendar, runtime.policy)
    )
    return tick_ids.pending


def boleto_customer(api: Api, runtime: Runtime, **account: object) -> str:
    """A boleto customer whose December invoice is issued now (day 1); returns the invoice id."""
    api.put_account(ACCOUNT, **account)
    api.subscribe(ACCOUNT, "platform", payment_method="boleto")
    now = runtime.clock.now()
    runtime.transaction(lambda session: issue_due_invoices(session, now, runtime.calendar))
    [invoice_id] = invoice_ids(runtime, ACCOUNT)
    return invoice_id


def drain(jobs: Jobs) -> None:
    with contextlib.suppress(QueueJoinTimeout):
        jobs.broker.join("email", timeout=10_000)


def test_a_send_job_run_twice_or_on_two_threads_at_once_sends_once(
    api: Api, runtime: Runtime, jobs: Jobs, smtp_sink: SmtpSink
) -> None:
    boleto_customer(api, runtime)
    [notification_id] = recorded(runtime)
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def send() -> None:
        barrier.wait(timeout=10)
        try:
            jobs.mailing.send_notification(notification_id)
        except BaseException as error:  # the loser may be told to retry later: that is fine
            errors.append(error)

    threads = [threading.Thread(target=send) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    jobs.mailing.send_notification(notification_id)  # a job retried after it succeeded
    assert len(smtp_sink.messages) == 1
    assert all(type(error).__name__ == "NotSentYet" for error in errors)
    [notification] = notifications(runtime)
    assert notification.status == NotificationStatus.SENT
    assert smtp_sink.messages[0]["Message-ID"] == notification.message_id == f"<{notification_id}@regua.example>"


def test_one_send_message_for_several_notifications_retries_only_what_is_not_sent_and_sends_each_once(
    client: TestClient, api: Api, runtime: Runtime, clock: FrozenClock, jobs: Jobs, smtp_sink: SmtpSink
) -> None:
    accounts = {f"conta-{n}": f"financeiro{n}@conta.example" for n in range(3)}
    for account, address in accounts.items():
        api.put_account(account, contacts=[{"email": address, "name": "Ana", "manage_payments": True}])
        api.subscribe(account, "platform", payment_method="boleto")
    now = runtime.clock.now()
    runtime.transaction(lambda session: issue_due_invoices(session, now, runtime.calendar))
    ids = recorded(runtime)
    assert len(ids) == 3
    busy = accounts["conta-1"]
    smtp_sink.refuse[busy] = "450 4.2.1 mailbox busy, try again later"

    assert jobs.mailing.queue(ids) == 3  # one message for the three
    wait_until(lambda: len(smtp_sink.messages) == 2, what="the two accepted mails")
    wait_until(
        lambda: all(n.status == NotificationStatus.SENT or n.last_error for n in notifications(runtime)),
        what="the refused one's attempt recorded",
    )
    waiting = [n for n in notifications(runtime) if n.status == NotificationStatus.PENDING]
    assert [n.account_id for n in waiting] == ["conta-1"]
    assert "450 4.2.1" in (waiting[0].last_error or "")

    del smtp_sink.refuse[busy]
    clock.set(clock.now() + timedelta(minutes=2))  # the refused attempt's lease is over; the message is retried
    smtp_sink.wait_for(3)
    drain(jobs)
    assert sorted(m["To"] or "" for m in smtp_sink.messages) == sorted(f"Ana <{a}>" for a in accounts.values())
    sent = notifications(runtime)
    assert {n.status for n in sent} == {NotificationStatus.SENT}
    assert sorted(n.attempts for n in sent) == [1, 1, 2]  # the two sent at once were never claimed again
    assert [n.last_error for n in sent] == [None, None, None]  # the refusal is history once the mail went
    assert {n.message_id for n in sent} == {m["Message-ID"] for m in smtp_sink.messages}
    assert smtp_sink.rcpt_attempts.count(busy) == 2


def test_the_message_is_multipart_alternative_text_first_with_the_regua_headers(
    api: Api, runtime: Runtime, smtp_sink: SmtpSink
) -> None:
    invoice_id = boleto_customer(api, runtime)
    tick_once(runtime)
    [received] = smtp_sink.messages
    message = received.message
    assert message.get_content_type() == "multipart/alternative"
    assert [part.get_content_type() for part in message.iter_parts()] == ["text/plain", "text/html"]
    assert (received.kind, received["X-Regua-Account"], received["X-Regua-Invoice"]) == (
        "invoice_issued",
        ACCOUNT,
        invoice_id,
    )
    assert received["From"] == "Financeiro Exemplo <financeiro@regua.example>"
    assert received["To"] == f"Ana <{ANA}>"
    assert received["Date"] == "Tue, 01 Dec 2026 03:05:00 +0000"  # the clock's now, not the machine's


def test_the_mail_server_down_for_a_while_then_up_each_mail_arrives_once_through_the_queue(
    client: TestClient, api: Api, runtime: Runtime, clock: FrozenClock, jobs: Jobs, smtp_sink: SmtpSink
) -> None:
    invoice_id = boleto_customer(api, runtime)
    charge_id = open_pending_charge(runtime, [invoice_id], "pix")
    smtp_sink.stop()
    deliver(client, clock, "payment.confirmed", charge_id, "msg_paid", amount_cents=19990)
    wait_until(
        lambda: any(n.attempts >= 1 and n.last_error for n in notifications(runtime, kind="payment_confirmed")),
        what="a failed attempt",
    )
    [waiting] = notifications(runtime, kind="payment_confirmed")
    assert waiting.status == NotificationStatus.PENDING
    assert "Connect" in (waiting.last_error or "")
    smtp_sink.start()
    clock.set(clock.now() + timedelta(minutes=2))  # the failed attempt's lease is over
    [received] = smtp_sink.wait_for(1)
    drain(jobs)
    assert smtp_sink.kinds() == ["payment_confirmed"]
    [sent] = notifications(runtime, kind="payment_confirmed")
    assert sent.status == NotificationStatus.SENT
    assert sent.attempts >= 2
    assert received["Message-ID"] == sent.message_id


def test_the_mail_server_down_for_a_while_then_up_each_mail_arrives_once_through_the_tick(
    api: Api, runtime: Runtime, clock: FrozenClock, smtp_sink: SmtpSink
) -> None:
    for account in ("conta-1", "conta-2", "conta-3"):
        api.put_account(account)
        api.subscribe(account, "platform")
    smtp_sink.stop()
    first = tick_once(runtime)
    assert (first.counts["notifications_recorded"], first.counts["emails_deferred"]) == (3, 3)
    assert first.counts["emails_sent"] == 0
    again = tick_once(runtime)  # the same instant: nothing is tried twice
    assert again.counts["emails_deferred"] == again.counts["emails_sent"] == 0
    smtp_sink.start()
    assert tick_once(runtime).counts["emails_sent"] == 0  # still within five minutes of the last attempt
    move(clock, "2026-12-01T00:11")
    assert tick_once(runtime).counts["emails_sent"] == 3
    move(clock, "2026-12-01T00:30")
    assert tick_once(runtime).counts["emails_sent"] == 0
    assert sorted(m["X-Regua-Account"] or "" for m in smtp_sink.messages) == ["conta-1", "conta-2", "conta-3"]
    assert {n.status for n in notifications(runtime)} == {NotificationStatus.SENT}


def test_a_550_for_the_only_recipient_is_recorded_as_failed_and_never_retried(
    client: TestClient, api: Api, runtime: Runtime, clock: FrozenClock, jobs: Jobs, smtp_sink: SmtpSink
) -> None:
    smtp_sink.refuse[ANA] = REFUSED
    boleto_customer(api, runtime)
    report = tick_once(runtime)
    assert report.counts["emails_failed"] == 1
    [failed] = notifications(runtime)
    assert failed.status == NotificationStatus.FAILED
    assert "550 5.1.1" in (failed.last_error or "")
    assert "User unknown" in (failed.last_error or "")
    jobs.mailing.queue([failed.id])  # even a stray job for it
    jobs.mailing.kick()
    drain(jobs)
    move(clock, "2026-12-01T01:00")
    tick_once(runtime)
    assert smtp_sink.rcpt_attempts == [ANA]
    assert smtp_sink.messages == []


def test_a_550_for_one_of_two_recipients_delivers_to_the_other_and_records_the_refusal(
    api: Api, runtime: Runtime, smtp_sink: SmtpSink
) -> None:
    smtp_sink.refuse[ANA] = REFUSED
    contacts = [
        {"email": ANA, "name": "Ana", "manage_payments": True},
        {"email": BIA, "name": "Bia", "manage_payments": True},
    ]
    boleto_customer(api, runtime, contacts=contacts)
    tick_once(runtime)
    [received] = smtp_sink.messages
    assert received.rcpt_tos == (BIA,)
    [sent] = notifications(runtime)
    assert sent.status == NotificationStatus.SENT
    assert sent.recipients == [ANA, BIA]
    assert (sent.last_error or "").startswith(f"refused: {ANA}: 550")


def test_a_temporary_451_leaves_the_mail_pending_and_a_later_pass_sends_it(
    api: Api, runtime: Runtime, clock: FrozenClock, smtp_sink: SmtpSink
) -> None:
    smtp_sink.refuse[ANA] = "451 4.3.0 Mail server temporarily rejected message"
    boleto_customer(api, runtime)
    assert tick_once(runtime).counts["emails_deferred"] == 1
    [waiting] = notifications(runtime)
    assert (waiting.status, waiting.attempts) == (NotificationStatus.PENDING, 1)
    assert (waiting.last_error or "").startswith(f"{ANA}: 451")
    del smtp_sink.refuse[ANA]
    move(clock, "2026-12-01T00:15")
    assert tick_once(runtime).counts["emails_sent"] == 1
    assert smtp_sink.kinds() == ["invoice_issued"]


def message(number: int) -> bytes:
    mail = EmailMessage()
    mail["From"] = "financeiro@regua.example"
    mail["To"] = ANA
    mail["Subject"] = f"mensagem {number}"
    mail.set_content("olá")
    return mail.as_bytes()


def test_the_mailer_keeps_its_connection_and_replaces_one_the_server_dropped(smtp_sink: SmtpSink) -> None:
    with SmtpMailer(smtp_sink.url) as mailer:
        for number in range(3):
            accepted = mailer.send(message(number), sender="financeiro@regua.example", recipients=[ANA])
            assert accepted.reply.startswith("250")
        assert smtp_sink.connections == 1
        smtp_sink.stop()
        smtp_sink.start()  # the server went away and came back: the kept connection is dead
        mailer.send(message(3), sender="financeiro@regua.example", recipients=[ANA])
    assert [m["Subject"] for m in smtp_sink.messages] == [f"mensagem {n}" for n in range(4)]
    assert smtp_sink.connections == 2


def test_the_mailer_tells_a_temporary_failure_from_a_permanent_one(smtp_sink: SmtpSink) -> None:
    smtp_sink.refuse[ANA] = REFUSED
    with SmtpMailer(smtp_sink.url) as mailer:
        with pytest.raises(PermanentMailError, match=r"550 5\.1\.1"):
            mailer.send(message(1), sender="financeiro@regua.example", recipients=[ANA])
        smtp_sink.refuse[ANA] = "452 4.2.2 Mailbox full"
        with pytest.raises(TemporaryMailError, match="452") as temporary:
            mailer.send(message(2), sender="financeiro@regua.example", recipients=[ANA])
        assert not temporary.value.unreachable
    with SmtpMailer(f"smtp://127.0.0.1:{free_port()}") as nobody:
        with pytest.raises(TemporaryMailError) as down:
            nobody.send(message(3), sender="financeiro@regua.example", recipients=[ANA])
        assert down.value.unreachable
