"""The régua's emails end to end: the ten kinds, to whom, what they say, once, and only what is still true."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import date, timedelta

import pytest
from sqlalchemy import event, select
from sqlalchemy.orm import Session
from starlette.testclient import TestClient

from billing.clock import FrozenClock
from billing.happenings import happenings
from billing.invoicing import issue_due_invoices
from billing.models import Charge, ChargeInvoice, Invoice, NotificationStatus, Payment
from billing.notifications import record_due_notifications
from billing.schedule import trial_invoices
from billing.settlement import ConfirmedPayment, record_failure, settle_charge
from regua.cli import tick_once
from regua.mailer import SmtpPostman
from regua.runtime import Runtime
from regua.settings import Settings
from tests.integration.asaas_fake import FakeAsaas, fake_asaas
from tests.integration.conftest import AUTH, Api
from tests.integration.notification_helpers import (
    PORTAL,
    deliver,
    invoice_ids,
    mail_settings,
    move,
    notifications,
    open_pending_charge,
)
from tests.integration.smtp_sink import Received, SmtpSink, smtp_sink
from workers.actors import Jobs
from workers.context import WorkerContext
from workers.tick import send_here

__all__ = ["smtp_sink"]

ACCOUNT = "padaria-central"
ANA = "ana@padaria.example"
CAIXA = "caixa@padaria.example"
PIX_CODE = "00020101021226900014br.gov.bcb.pix2568pix.example.com.br/qr/v2/cobv/9d36b84f5204000053039865406199.905802BR"
BOLETO_LINE = "23793.38128 60000.000003 00000.000406 1 97100000019990"


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


def mail_context(runtime: Runtime) -> WorkerContext:
    return WorkerContext(runtime, {}, postman=lambda: SmtpPostman(runtime))


def issue_invoices(runtime: Runtime, account_id: str) -> list[str]:
    """Issue what is due now without a whole tick (which would also start the day-1 card charge)."""
    now = runtime.clock.now()
    runtime.transaction(lambda session: issue_due_invoices(session, now, runtime.calendar))
    return invoice_ids(runtime, account_id)


def pending_charges(runtime: Runtime, invoice_id: str) -> list[Charge]:
    query = (
        select(Charge)
        .join(ChargeInvoice, ChargeInvoice.charge_id == Charge.id)
        .where(ChargeInvoice.invoice_id == invoice_id, Charge.status == "pending")
    )
    return runtime.read(lambda session: list(session.scalars(query)))


def add_details(runtime: Runtime, charge_id: str, **details: str) -> None:
    def work(session: Session) -> None:
        charge = session.get(Charge, charge_id)
        assert charge is not None
        for name, value in details.items():
            setattr(charge, name, value)

    runtime.transaction(work)


def only(sink: SmtpSink, kind: str) -> Received:
    [message] = sink.of_kind(kind)
    return message


def assert_addressed_to_billing_contact(message: Received, invoice_id: str | None) -> None:
    assert message.rcpt_tos == (ANA,)
    assert message["X-Regua-Account"] == ACCOUNT
    assert message["X-Regua-Invoice"] == invoice_id
    assert message.mail_from == "financeiro@regua.example"
    assert PORTAL in message.text
    assert PORTAL in message.html


def test_a_boleto_customer_is_told_on_days_one_three_five_and_seven_only_at_the_billing_contact(
    api: Api, runtime: Runtime, clock: FrozenClock, smtp_sink: SmtpSink
) -> None:
    api.put_account(ACCOUNT)
    api.subscribe(ACCOUNT, "platform", payment_method="boleto")
    for day, kind in [(1, "invoice_issued"), (3, "payment_reminder"), (5, "block_warning"), (7, "block_warning")]:
        move(clock, f"2026-12-{day:02d}T00:05")
        tick_once(runtime)
        tick_once(runtime)  # a second pass at the same instant sends nothing more
        assert smtp_sink.kinds()[-1] == kind
    # The block mail waits a few minutes: a payment made in time may be on its way (issue: paid in time).
    move(clock, "2026-12-07T00:11")
    tick_once(runtime)
    assert smtp_sink.kinds()[-1] == "account_blocked"
    assert smtp_sink.kinds() == ["invoice_issued", "payment_reminder", "block_warning", "account_blocked"]
    [invoice_id] = invoice_ids(runtime, ACCOUNT)
    for message in smtp_sink.messages:
        assert_addressed_to_billing_contact(message, invoice_id)
        assert "R$ 199,90" in message.text
        assert "R$ 199,90" in message.html
        assert "Plataforma" in message.text
        assert message["Message-ID"] is not None
    assert CAIXA not in smtp_sink.rcpt_attempts
    issued = only(smtp_sink, "invoice_issued")
    assert "01/12/2026 a 31/12/2026" in issued.text
    assert "07/12/2026" in issued.text  # blocked from 00:00 of day 7
    assert "Desconto" not in issued.text  # manual payers have no discount
    assert "bloqueado" in only(smtp_sink, "account_blocked").text
    assert {n.status for n in notifications(runtime)} == {NotificationStatus.SENT}
    assert all(n.message_id == f"<{n.id}@regua.example>" for n in notifications(runtime))


def test_paying_a_blocked_invoice_sends_one_unblocked_mail_with_the_amount(
    client: TestClient, api: Api, runtime: Runtime, clock: FrozenClock, smtp_sink: SmtpSink
) -> None:
    api.put_account(ACCOUNT)
    api.subscribe(ACCOUNT, "platform", payment_method="pix")
    move(clock, "2026-12-08T10:00")  # the scheduler was down all week: the first pass blocks at once
    tick_once(runtime)
    move(clock, "2026-12-08T10:06")  # the block mail is held a few minutes, then goes
    tick_once(runtime)
    assert smtp_sink.kinds() == ["account_blocked"]
    [invoice_id] = invoice_ids(runtime, ACCOUNT)
    move(clock, "2026-12-09T11:00")
    charge_id = open_pending_charge(runtime, [invoice_id], "pix")
    deliver(client, clock, "payment.confirmed", charge_id, "msg_paid", amount_cents=19990)
    unblocked = smtp_sink.wait_for(2)[-1]
    assert unblocked.kind == "account_unblocked"
    assert_addressed_to_billing_contact(unblocked, invoice_id)
    assert "Recebemos o pagamento de R$ 199,90 por PIX" in unblocked.text
    assert "Acesso liberado" in unblocked["Subject"]  # type: ignore[operator]
    tick_once(runtime)
    assert smtp_sink.kinds() == ["account_blocked", "account_unblocked"]  # not a payment_confirmed as well


def test_an_auto_debit_customer_hears_the_charge_result_with_the_five_percent_discount(
    client: TestClient, api: Api, runtime: Runtime, clock: FrozenClock, smtp_sink: SmtpSink
) -> None:
    api.put_account(ACCOUNT)
    api.subscribe(ACCOUNT, "platform", payment_method="card_auto_debit", card_token="tok_ok")
    [invoice_id] = issue_invoices(runtime, ACCOUNT)
    charge_id = open_pending_charge(runtime, [invoice_id], "card")  # the day-1 charge, on its way to the gateway
    tick_once(runtime)
    assert smtp_sink.kinds() == []  # no invoice_issued for auto-debit: the charge result is the news
    deliver(client, clock, "payment.confirmed", charge_id, "msg_card", amount_cents=18990, method="card")
    [confirmed] = smtp_sink.wait_for(1)
    assert confirmed.kind == "payment_confirmed"
    assert_addressed_to_billing_contact(confirmed, invoice_id)
    for part in (confirmed.text, confirmed.html):
        assert "R$ 199,90" in part
        assert "Desconto de 5%" in part
        assert "-R$ 10,00" in part
        assert "R$ 189,90" in part
    assert "débito automático" in confirmed.text


def test_a_declined_card_is_told_with_the_day_it_is_charged_again(
    client: TestClient, api: Api, runtime: Runtime, clock: FrozenClock, smtp_sink: SmtpSink
) -> None:
    api.put_account(ACCOUNT)
    api.subscribe(ACCOUNT, "platform", payment_method="card_auto_debit", card_token="tok_soft_decline")
    [invoice_id] = issue_invoices(runtime, ACCOUNT)
    charge_id = open_pending_charge(runtime, [invoice_id], "card")
    deliver(client, clock, "payment.failed", charge_id, "msg_declined", failure_code="insufficient_funds")
    [failed] = smtp_sink.wait_for(1)
    assert failed.kind == "payment_failed"
    assert_addressed_to_billing_contact(failed, invoice_id)
    assert failed["Subject"] == "Pagamento não aprovado: nova tentativa em 03/12/2026"
    assert "saldo ou limite insuficiente" in failed.text
    assert "R$ 189,90" in failed.text
    assert "Desconto de 5%" in failed.html


def test_a_manual_payer_gets_the_boleto_line_and_pix_code_of_the_charges_opened_for_the_invoice(
    api: Api, runtime: Runtime, clock: FrozenClock, smtp_sink: SmtpSink
) -> None:
    api.put_account(ACCOUNT)
    api.subscribe(ACCOUNT, "platform", payment_method="boleto")
    tick_once(runtime)  # opens the day-1 boleto at the gateway, then mails the invoice with its line
    [invoice_id] = invoice_ids(runtime, ACCOUNT)
    [day_one] = pending_charges(runtime, invoice_id)
    issued = only(smtp_sink, "invoice_issued")
    for part in (issued.text, issued.html):
        assert day_one.boleto_line in part
    move(clock, "2026-12-02T10:00")
    open_pending_charge(
        runtime, [invoice_id], "pix", pix_code=PIX_CODE, boleto_line=BOLETO_LINE, boleto_url="https://b.example/1"
    )  # a checkout the customer opened on day 2: the newest charge's codes are the ones to use
    move(clock, "2026-12-03T08:00")
    tick_once(runtime)
    reminder = only(smtp_sink, "payment_reminder")
    for part in (reminder.text, reminder.html):
        assert PIX_CODE in part
        assert BOLETO_LINE in part
        assert "https://b.example/1" in part


def test_a_mail_asking_for_money_waits_a_little_for_the_codes_of_a_charge_just_opened(
    api: Api, runtime: Runtime, clock: FrozenClock, smtp_sink: SmtpSink
) -> None:
    api.put_account(ACCOUNT)
    api.subscribe(ACCOUNT, "platform", payment_method="pix")
    [invoice_id] = issue_invoices(runtime, ACCOUNT)
    charge_id = open_pending_charge(runtime, [invoice_id], "pix")  # its codes are still on their way
    now = runtime.clock.now()
    recorded = runtime.transaction(
        lambda session: record_due_notifications(session, now, runtime.calendar, runtime.policy)
    )
    assert send_here(mail_context(runtime), recorded.pending)["emails_deferred"] == 1
    [waiting] = notifications(runtime)
    assert (waiting.status, waiting.last_error) == ("pending", "waiting for the PIX code and boleto line")
    add_details(runtime, charge_id, pix_code=PIX_CODE)
    move(clock, "2026-12-01T00:07")
    assert send_here(mail_context(runtime), recorded.pending)["emails_sent"] == 1
    issued = only(smtp_sink, "invoice_issued")
    assert PIX_CODE in issued.text
    assert "Linha digitável" not in issued.text


def test_a_mail_asking_for_money_goes_without_codes_the_gateway_never_gave(
    api: Api, runtime: Runtime, clock: FrozenClock, smtp_sink: SmtpSink
) -> None:
    api.put_account(ACCOUNT)
    api.subscribe(ACCOUNT, "platform", payment_method="pix")
    [invoice_id] = issue_invoices(runtime, ACCOUNT)
    open_pending_charge(runtime, [invoice_id], "pix")
    now = runtime.clock.now()
    recorded = runtime.transaction(
        lambda session: record_due_notifications(session, now, runtime.calendar, runtime.policy)
    )
    assert send_here(mail_context(runtime), recorded.pending)["emails_deferred"] == 1
    move(clock, "2026-12-01T00:16")  # ten minutes on: better without the code than not at all
    assert send_here(mail_context(runtime), recorded.pending)["emails_sent"] == 1
    assert "COMO PAGAR" not in only(smtp_sink, "invoice_issued").text


def test_a_receipt_puts_the_invoice_in_verification_and_the_customer_is_told(
    client: TestClient, api: Api, runtime: Runtime, clock: FrozenClock, smtp_sink: SmtpSink
) -> None:
    api.put_account(ACCOUNT)
    api.subscribe(ACCOUNT, "platform", payment_method="boleto")
    tick_once(runtime)
    [invoice_id] = invoice_ids(runtime, ACCOUNT)
    move(clock, "2026-12-02T14:00")
    assert client.post(f"/api/invoices/{invoice_id}/receipts", headers=AUTH).status_code == 200
    # Recorded by the request and queued by it where the app has the email queue (regua serve); this app has
    # none, so the pass sends it as a mail left unsent for five minutes.
    move(clock, "2026-12-02T14:06")
    tick_once(runtime)
    pending = only(smtp_sink, "verification_pending")
    assert_addressed_to_billing_contact(pending, invoice_id)
    assert "05/12/2026" in pending.text  # 72 hours of verification
    move(clock, "2026-12-03T08:00")
    tick_once(runtime)
    assert smtp_sink.kinds() == ["invoice_issued", "verification_pending"]  # no reminder while verifying


def test_a_refund_done_at_the_gateway_is_told_after_the_payment(
    client: TestClient, api: Api, runtime: Runtime, clock: FrozenClock, smtp_sink: SmtpSink, jobs: Jobs
) -> None:
    api.put_account(ACCOUNT)
    api.subscribe(ACCOUNT, "platform", payment_method="pix")
    tick_once(runtime)
    [invoice_id] = invoice_ids(runtime, ACCOUNT)
    charge_id = open_pending_charge(runtime, [invoice_id], "pix")
    deliver(client, clock, "payment.confirmed", charge_id, "msg_pay", payment_id="gw_9", amount_cents=19990)
    smtp_sink.wait_for(2)
    deliver(client, clock, "payment.refunded", charge_id, "msg_refund", payment_id="gw_9", refund_id="rf_9")
    messages = smtp_sink.wait_for(3)
    assert [m.kind for m in messages] == ["invoice_issued", "payment_confirmed", "refund_issued"]
    refund = messages[-1]
    assert_addressed_to_billing_contact(refund, invoice_id)
    assert refund["Subject"] == "Reembolso de R$ 199,90 realizado"
    assert "COMO PAGAR" not in refund.text  # a receipt never invites a second payment


def test_the_first_invoice_after_a_trial_asks_for_payment_with_trial_ended_only(
    api: Api, runtime: Runtime, clock: FrozenClock, smtp_sink: SmtpSink
) -> None:
    api.put_account(ACCOUNT, trial_ends_at="2026-12-10T12:00:00-03:00")
    api.subscribe(ACCOUNT, "platform", payment_method="pix")
    tick_once(runtime)
    move(clock, "2026-12-10T12:05")
    tick_once(runtime)
    [invoice_id] = invoice_ids(runtime, ACCOUNT)
    trial = only(smtp_sink, "trial_ended")
    assert smtp_sink.kinds() == ["trial_ended"]
    assert_addressed_to_billing_contact(trial, invoice_id)
    assert "10/12/2026 a 31/12/2026" in trial.text
    assert "R$ 141,86" in trial.text  # 22 of December's 31 days of R$ 199,90
    move(clock, "2026-12-12T08:00")
    tick_once(runtime)
    assert smtp_sink.kinds() == ["trial_ended", "payment_reminder"]


def test_the_trial_lookup_reads_a_day_one_of_70000_open_invoices_in_chunks(
    api: Api, runtime: Runtime, clock: FrozenClock
) -> None:
    """Day 1 has an open invoice per account: at 100,000 accounts one statement of all their ids went
    over PostgreSQL's 65,535 parameters (SQLite's 32,766) and failed the tick's email step."""
    api.put_account(ACCOUNT, trial_ends_at="2026-12-10T12:00:00-03:00")
    api.subscribe(ACCOUNT, "platform", payment_method="pix")
    tick_once(runtime)
    move(clock, "2026-12-10T12:05")
    tick_once(runtime)

    def lookup(session: Session) -> tuple[str, dict[str, date]]:
        [first] = session.scalars(select(Invoice).where(Invoice.account_id == ACCOUNT))
        others = [
            Invoice(
                id=f"inv_{n:06d}",
                account_id=f"acct-{n:06d}",
                subscription_id=f"sub_{n:06d}",
                period_start=first.period_start,
            )
            for n in range(69_999)
        ]
        return first.id, trial_invoices(session, [*others, first], runtime.calendar)

    first_id, found = runtime.read(lookup)
    assert found == {first_id: date(2026, 12, 10)}


def test_a_contact_without_manage_payments_gets_nothing_and_an_account_without_one_is_recorded_as_no_contact(
    api: Api, runtime: Runtime, smtp_sink: SmtpSink
) -> None:
    api.put_account("sem-financeiro", contacts=[{"email": CAIXA, "name": "Caixa", "manage_payments": False}])
    api.subscribe("sem-financeiro", "platform")
    report = tick_once(runtime)
    assert smtp_sink.rcpt_attempts == []
    assert smtp_sink.messages == []
    [record] = notifications(runtime)
    assert (record.kind, record.status, record.recipients) == ("invoice_issued", "no_contact", [])
    assert report.counts["notifications_no_contact"] == 1


def test_after_a_four_day_gap_only_the_block_warning_is_sent(
    api: Api, runtime: Runtime, clock: FrozenClock, smtp_sink: SmtpSink
) -> None:
    api.put_account(ACCOUNT)
    api.subscribe(ACCOUNT, "platform", payment_method="boleto")
    api.put_account("mercearia")
    api.subscribe("mercearia", "platform", payment_method="boleto")
    tick_once(runtime)
    assert smtp_sink.kinds() == ["invoice_issued", "invoice_issued"]
    smtp_sink.clear()
    api.put_account("quitanda")  # signed up on day 1, while the scheduler was already down
    api.subscribe("quitanda", "platform", payment_method="boleto")
    move(clock, "2026-12-05T09:00")
    tick_once(runtime)
    assert smtp_sink.kinds() == ["block_warning"] * 3
    warnings = {message["X-Regua-Account"] for message in smtp_sink.messages}
    assert warnings == {ACCOUNT, "mercearia", "quitanda"}
    assert not notifications(runtime, kind="payment_reminder")


def test_two_ticks_at_the_same_instant_send_each_mail_once(
    api: Api, runtime: Runtime, clock: FrozenClock, smtp_sink: SmtpSink
) -> None:
    for n in range(4):
        api.put_account(f"conta-{n}")
        api.subscribe(f"conta-{n}", "platform")
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def racer() -> None:
        try:
            barrier.wait(timeout=10)
            tick_once(runtime)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=racer) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    sent = [m["X-Regua-Account"] for m in smtp_sink.messages]
    assert len(sent) == len(set(sent))  # some may wait for the codes of a boleto the other pass just opened
    move(clock, "2026-12-01T00:20")
    tick_once(runtime)
    assert sorted(m["X-Regua-Account"] or "" for m in smtp_sink.messages) == [f"conta-{n}" for n in range(4)]
    assert len(notifications(runtime)) == 4


def test_a_reminder_for_an_invoice_paid_meanwhile_is_obsolete_and_not_sent(
    api: Api, runtime: Runtime, clock: FrozenClock, smtp_sink: SmtpSink
) -> None:
    api.put_account(ACCOUNT)
    api.subscribe(ACCOUNT, "platform", payment_method="boleto")
    tick_once(runtime)
    smtp_sink.stop()  # the reminder is recorded on day 3 but cannot go out
    move(clock, "2026-12-03T08:00")
    tick_once(runtime)
    [invoice_id] = invoice_ids(runtime, ACCOUNT)
    charge_id = open_pending_charge(runtime, [invoice_id], "boleto")
    now = runtime.clock.now()
    runtime.transaction(
        lambda session: settle_charge(session, charge_id, ConfirmedPayment("asaas", "pay_1", 19990, "boleto", now), now)
    )
    smtp_sink.start()
    move(clock, "2026-12-03T08:10")
    tick_once(runtime)
    assert smtp_sink.kinds() == ["invoice_issued", "payment_confirmed"]
    [reminder] = notifications(runtime, kind="payment_reminder")
    assert reminder.status == NotificationStatus.OBSOLETE


def test_a_reminder_to_keep_access_is_obsolete_once_an_older_month_blocks_the_product_again(
    api: Api, client: TestClient, runtime: Runtime, clock: FrozenClock, smtp_sink: SmtpSink
) -> None:
    """January's reminder ("pague até 06/01 para manter o acesso") is recorded while December's receipt is being
    verified; the verification ends unpaid and December blocks again before the mail goes out: the reminder is
    no longer true (the account view says blocked) and is not sent."""
    api.put_account(ACCOUNT)
    api.subscribe(ACCOUNT, "platform", payment_method="boleto")
    tick_once(runtime)
    move(clock, "2026-12-07T00:05")
    tick_once(runtime)
    [december] = invoice_ids(runtime, ACCOUNT)
    move(clock, "2027-01-01T00:05")
    tick_once(runtime)
    move(clock, "2027-01-01T08:00")
    assert client.post(f"/api/invoices/{december}/receipts", headers=AUTH).status_code == 200
    tick_once(runtime)
    assert api.access(ACCOUNT, "platform")["state"] == "verifying"
    smtp_sink.stop()  # January's reminder is recorded on day 3 but cannot go out
    move(clock, "2027-01-03T08:00")
    tick_once(runtime)
    [reminder] = notifications(runtime, kind="payment_reminder")
    move(clock, "2027-01-04T09:00")
    tick_once(runtime)  # the window has ended: December blocks again
    assert api.access(ACCOUNT, "platform")["state"] == "blocked"
    smtp_sink.start()
    move(clock, "2027-01-04T09:10")
    tick_once(runtime)
    [reminder] = notifications(runtime, kind="payment_reminder")
    assert reminder.status == NotificationStatus.OBSOLETE
    assert "payment_reminder" not in smtp_sink.kinds()
    assert smtp_sink.kinds()[-1] == "account_blocked"
    assert [n.status for n in notifications(runtime, kind="account_blocked")][-1:] == ["sent"]
    assert len(notifications(runtime, kind="account_blocked")) == 2, "December's block, and its return: once each"


def test_a_customer_name_with_markup_is_escaped_in_the_html_part(
    api: Api, runtime: Runtime, smtp_sink: SmtpSink
) -> None:
    script = "<script>alert(1)</script>"
    api.put_account(ACCOUNT, name=script, contacts=[{"email": ANA, "name": script, "manage_payments": True}])
    api.subscribe(ACCOUNT, "platform")
    tick_once(runtime)
    [issued] = smtp_sink.messages
    assert script not in issued.html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in issued.html
    assert script in issued.text  # plain text is not HTML: shown as written


def test_a_charge_the_gateway_rejected_is_not_told_as_a_payment_that_failed(
    api: Api, runtime: Runtime, smtp_sink: SmtpSink
) -> None:
    api.put_account(ACCOUNT)
    api.subscribe(ACCOUNT, "platform", payment_method="pix")
    [invoice_id] = issue_invoices(runtime, ACCOUNT)
    charge_id = open_pending_charge(runtime, [invoice_id], "pix")
    now = runtime.clock.now()
    runtime.transaction(lambda session: record_failure(session, charge_id, "gateway_rejected", now))
    tick_once(runtime)
    assert smtp_sink.kinds() == ["invoice_issued"]  # regua's request was wrong: ops see it, not the customer


def test_a_pass_does_not_load_again_the_payments_it_already_told(
    api: Api, runtime: Runtime, clock: FrozenClock
) -> None:
    """On day 1 every pass's window holds thousands of payments already told: they are not read whole."""
    charges = {}
    for account_id in ("acme", "borda", "cume"):
        api.put_account(account_id)
        api.subscribe(account_id, "platform", payment_method="card_auto_debit", card_token="tok_ok")
        [invoice_id] = issue_invoices(runtime, account_id)
        charges[account_id] = open_pending_charge(runtime, [invoice_id], "card")
    policy = runtime.policy

    def pay(account_id: str) -> None:
        now = runtime.clock.now()
        paid = ConfirmedPayment("asaas", f"pay_{account_id}", 18990, "card", now)
        runtime.transaction(lambda session: settle_charge(session, charges[account_id], paid, now))

    pay("acme")
    pay("borda")
    runtime.transaction(
        lambda session: record_due_notifications(session, clock.now(), runtime.calendar, policy, schedule=False)
    )
    move(clock, "2026-12-01T00:06")
    pay("cume")

    def look(session: Session) -> tuple[list[str], set[str]]:
        loaded: set[str] = set()

        @event.listens_for(session, "loaded_as_persistent")
        def seen(session: Session, instance: object) -> None:
            if isinstance(instance, Payment):
                loaded.add(instance.account_id)

        due = happenings(session, clock.now(), runtime.calendar, policy, since=clock.now() - timedelta(hours=1))
        return [item.account_id for item in due], loaded

    due, loaded = runtime.read(look)
    assert due == ["cume"]
    assert loaded == {"cume"}  # acme's and borda's confirmations are recorded: their payments stay unread
    assert sorted(n.account_id for n in notifications(runtime, kind="payment_confirmed")) == ["acme", "borda"]
