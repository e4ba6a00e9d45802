"""Auto-debit charges, rechecks, refunds and cancels against Asaas's API served by respx, on a real database."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from billing.charging import (
    auto_debit_key,
    cancel_at_gateway,
    make_card_charge,
    owed_gateway_cancels,
    owed_refunds,
    plan_auto_debits,
    send_refund,
)
from billing.check import check_books
from billing.clock import FrozenClock, parse_instant
from billing.invoicing import issue_due_invoices
from billing.models import Account, Charge, Invoice, Payment, Refund
from billing.ports import GatewayUnavailable
from billing.refunds import record_chargeback, record_refund, refunds_by_hand
from billing.settlement import ConfirmedPayment, open_charge, settle_charge
from regua.gateway.asaas import AsaasGateway
from regua.mailer import SmtpPostman
from regua.runtime import Runtime
from tests.integration.asaas_fake import BASE, FakeAsaas, fake_asaas, refused
from tests.integration.conftest import Api
from webhooks.base import Provider
from workers.actors import Jobs, declare_actors
from workers.broker import build_broker
from workers.context import WorkerContext
from workers.tick import tick

ACCOUNT = "padaria-central"
DAY_1 = parse_instant("2026-12-01T00:05:00-03:00")
DAY_3 = parse_instant("2026-12-03T00:05:00-03:00")
DAY_5 = parse_instant("2026-12-05T00:05:00-03:00")
SQLITE = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
"""Logic the database does not change: run on the embedded default only, to keep the suite fast."""


@pytest.fixture
def asaas() -> Iterator[FakeAsaas]:
    with fake_asaas() as fake:
        yield fake


@pytest.fixture
def gateway() -> Iterator[AsaasGateway]:
    """The real client, without its backoff sleeps."""
    with AsaasGateway(BASE, "asaas-test-key", sleep=lambda _seconds: None) as client:
        yield client


@pytest.fixture
def context(runtime: Runtime, providers: dict[str, Provider], gateway: AsaasGateway) -> WorkerContext:
    return WorkerContext(runtime, providers, gateway, postman=lambda: SmtpPostman(runtime))


@pytest.fixture
def auto_debit(api: Api, runtime: Runtime) -> str:
    """A card auto-debit customer on R$ 199,90 whose December invoice (R$ 189,90) was issued."""
    api.put_account(ACCOUNT)
    api.subscribe(ACCOUNT, "platform", payment_method="card_auto_debit", card_token="tok_ok")
    runtime.transaction(lambda session: issue_due_invoices(session, DAY_1, runtime.calendar))
    [invoice] = api.invoices(ACCOUNT)
    return str(invoice["id"])


def plan(runtime: Runtime, now: Any) -> list[str]:
    return runtime.transaction(lambda session: plan_auto_debits(session, now, runtime.calendar, runtime.policy))


def charges(runtime: Runtime) -> list[Charge]:
    query = (
        select(Charge)
        .options(selectinload(Charge.invoice_links), selectinload(Charge.attempts))
        .order_by(Charge.created_at)
    )
    return runtime.read(lambda session: list(session.scalars(query)))


def hard_declined(charge: Charge) -> bool:
    return any(attempt.decline_class == "hard" for attempt in charge.attempts)


def rows(runtime: Runtime, model: type[Any]) -> list[Any]:
    return runtime.read(lambda session: list(session.scalars(select(model))))


def mark_sent(runtime: Runtime, charge_id: str, payment_id: str | None = None) -> None:
    """As checkout leaves a charge it created at the gateway."""

    def work(session: Session) -> None:
        charge = session.get(Charge, charge_id)
        assert charge is not None
        charge.gateway_payment_id = payment_id
        charge.sent_at = runtime.clock.now()

    runtime.transaction(work)


def invoice_status(runtime: Runtime, invoice_id: str) -> str:
    return str(runtime.read(lambda session: session.get(Invoice, invoice_id)).status)  # type: ignore[union-attr]


# -- the planner


def test_day_one_opens_one_charge_per_auto_debit_invoice_with_its_own_key_once(
    runtime: Runtime, auto_debit: str
) -> None:
    [charge_id] = plan(runtime, DAY_1)
    assert plan(runtime, DAY_1) == []
    [charge] = charges(runtime)
    assert charge.id == charge_id
    assert (charge.idempotency_key, charge.amount_cents, charge.method) == (
        auto_debit_key(auto_debit, "day1"),
        18990,
        "card",
    )
    assert charge.invoice_ids == [auto_debit]
    assert charge.status == "pending"


@SQLITE
def test_a_pending_charge_keeps_the_retry_from_starting(runtime: Runtime, auto_debit: str) -> None:
    plan(runtime, DAY_1)
    assert plan(runtime, DAY_3) == []


@SQLITE
def test_a_paid_or_verifying_invoice_is_never_charged(runtime: Runtime, api: Api, auto_debit: str) -> None:
    response = api.client.post(f"/api/invoices/{auto_debit}/receipts", headers={"Authorization": "Bearer test-token"})
    assert response.status_code == 200, response.text
    assert plan(runtime, DAY_1) == []


# -- one card attempt


def test_an_approved_card_settles_the_invoice_from_the_gateway_answer_and_a_second_run_charges_nothing(
    runtime: Runtime, gateway: AsaasGateway, asaas: FakeAsaas, auto_debit: str
) -> None:
    [charge_id] = plan(runtime, DAY_1)
    assert make_card_charge(runtime, gateway, charge_id).outcome == "settled"
    assert make_card_charge(runtime, gateway, charge_id).outcome == "not_pending"

    assert asaas.create.call_count == 1
    [sent] = asaas.sent()
    assert sent["externalReference"] == charge_id
    assert sent["creditCardToken"] == "tok_ok"
    assert sent["customer"] == "cus_000005113026"
    assert b'"value":189.90' in asaas.create.calls.last.request.content
    assert invoice_status(runtime, auto_debit) == "paid"
    [payment] = rows(runtime, Payment)
    assert (payment.amount_cents, payment.method, payment.gateway) == (18990, "card", "asaas")


@SQLITE
def test_the_same_payment_confirmed_by_webhook_after_the_answer_is_recorded_once(
    runtime: Runtime, gateway: AsaasGateway, asaas: FakeAsaas, auto_debit: str
) -> None:
    [charge_id] = plan(runtime, DAY_1)
    make_card_charge(runtime, gateway, charge_id)
    [payment_id] = asaas.payments
    webhook = ConfirmedPayment("asaas", payment_id, 18990, "card", runtime.clock.now())
    settlement = runtime.transaction(lambda session: settle_charge(session, charge_id, webhook, runtime.clock.now()))
    assert settlement.already_recorded
    assert len(rows(runtime, Payment)) == 1


@SQLITE
def test_a_timeout_after_the_gateway_charged_is_found_by_reference_and_never_charged_again(
    runtime: Runtime, gateway: AsaasGateway, asaas: FakeAsaas, auto_debit: str
) -> None:
    [charge_id] = plan(runtime, DAY_1)

    def charged_then_lost(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        asaas.add(body["externalReference"], value=body["value"])
        raise httpx.ReadTimeout("the answer never came", request=request)

    asaas.create.side_effect = charged_then_lost
    assert make_card_charge(runtime, gateway, charge_id).outcome == "settled"
    assert asaas.create.call_count == 1
    assert len(rows(runtime, Payment)) == 1
    assert invoice_status(runtime, auto_debit) == "paid"


@SQLITE
def test_a_charge_never_sent_is_posted_at_once_and_one_that_may_have_been_is_looked_up_first(
    runtime: Runtime, gateway: AsaasGateway, asaas: FakeAsaas, auto_debit: str
) -> None:
    [charge_id] = plan(runtime, DAY_1)
    create = asaas.create.side_effect

    def charged_then_stopped(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        asaas.add(body["externalReference"], value=body["value"])
        raise KeyboardInterrupt  # the worker stopped after the gateway charged, before the answer came back

    asaas.create.side_effect = charged_then_stopped
    with pytest.raises(KeyboardInterrupt):
        make_card_charge(runtime, gateway, charge_id)
    assert (asaas.lookup.call_count, len(asaas.payments)) == (0, 1)  # nothing could be there yet: posted at once

    asaas.create.side_effect = create
    assert make_card_charge(runtime, gateway, charge_id).outcome == "settled"
    assert asaas.lookup.call_count == 1  # it may have been sent: looked up, found, not posted again
    assert (len(asaas.payments), len(rows(runtime, Payment))) == (1, 1)


@pytest.mark.parametrize(
    ("description", "hard", "reason"),
    [
        ("Transação não autorizada: saldo insuficiente.", False, "insufficient_funds"),
        ("Transação não autorizada. Verifique os dados do cartão de crédito e tente novamente.", False, "generic"),
        ("Transação não autorizada: cartão roubado.", True, "stolen_or_lost"),
        ("Transação não autorizada: cartão expirado.", True, "expired"),
        ("Token do cartão inválido.", True, "invalid_token"),
        ("Número do cartão inválido.", True, "invalid_card"),
        ("Transação não autorizada: cartão cancelado.", True, "card_canceled"),
    ],
)
@SQLITE
def test_each_decline_fails_the_attempt_and_only_a_soft_one_is_retried_on_day_three(
    runtime: Runtime,
    gateway: AsaasGateway,
    asaas: FakeAsaas,
    auto_debit: str,
    description: str,
    hard: bool,
    reason: str,
) -> None:
    [charge_id] = plan(runtime, DAY_1)
    asaas.next_create.append(refused(description))
    result = make_card_charge(runtime, gateway, charge_id)

    assert result.outcome == "declined"
    assert result.decline is not None
    assert (result.decline.hard, result.decline.reason) == (hard, reason)
    [charge] = charges(runtime)
    assert (charge.status, charge.failure_code, hard_declined(charge)) == ("failed", reason, hard)
    assert charge.lease_until is None
    assert invoice_status(runtime, auto_debit) == "open"
    assert len(plan(runtime, DAY_3)) == (0 if hard else 1)


@SQLITE
def test_a_new_card_after_a_hard_decline_is_tried_on_the_next_retry_day(
    runtime: Runtime, api: Api, gateway: AsaasGateway, asaas: FakeAsaas, auto_debit: str
) -> None:
    [charge_id] = plan(runtime, DAY_1)
    asaas.next_create.append(refused("Transação não autorizada: cartão roubado."))
    make_card_charge(runtime, gateway, charge_id)
    api.subscribe(ACCOUNT, "platform", payment_method="card_auto_debit", card_token="tok_new")
    [retry] = plan(runtime, DAY_3)
    assert make_card_charge(runtime, gateway, retry).outcome == "settled"
    assert asaas.sent()[-1]["creditCardToken"] == "tok_new"


@SQLITE
def test_an_unavailable_gateway_raises_for_a_retry_that_then_charges_once(
    runtime: Runtime, gateway: AsaasGateway, asaas: FakeAsaas, auto_debit: str
) -> None:
    [charge_id] = plan(runtime, DAY_1)
    asaas.next_create.extend([httpx.Response(503)] * 3)
    with pytest.raises(GatewayUnavailable):
        make_card_charge(runtime, gateway, charge_id)
    [charge] = charges(runtime)
    assert charge.status == "pending"
    assert charge.lease_until is None
    assert charge.sent_at is not None

    assert make_card_charge(runtime, gateway, charge_id).outcome == "settled"
    assert len(asaas.payments) == 1
    assert len(rows(runtime, Payment)) == 1


@SQLITE
def test_the_charge_job_raises_on_an_unavailable_gateway_so_dramatiq_retries_it(
    runtime: Runtime, context: WorkerContext, asaas: FakeAsaas, auto_debit: str
) -> None:
    jobs = declare_actors(build_broker(""), lambda: context)
    [charge_id] = plan(runtime, DAY_1)
    asaas.create.side_effect = httpx.ConnectError("down")
    with pytest.raises(GatewayUnavailable):
        jobs.charging.charge.fn(charge_id)
    asaas.create.side_effect = asaas._create
    jobs.charging.charge.fn(charge_id)
    jobs.charging.charge.fn(charge_id)
    assert len(asaas.payments) == 1
    assert invoice_status(runtime, auto_debit) == "paid"


@SQLITE
def test_an_account_without_a_gateway_customer_gets_one_created_once_then_is_charged(
    runtime: Runtime, api: Api, gateway: AsaasGateway, asaas: FakeAsaas, auto_debit: str
) -> None:
    api.put_account(ACCOUNT, gateway_customer_id=None)
    [charge_id] = plan(runtime, DAY_1)
    result = make_card_charge(runtime, gateway, charge_id)
    assert result.outcome == "settled"
    [customer] = asaas.customers.values()
    assert (customer["externalReference"], customer["cpfCnpj"]) == (ACCOUNT, "11222333000181")
    assert customer["email"] == "ana@padaria.example"  # the contact who manages payments
    assert asaas.sent()[0]["customer"] == customer["id"]
    stored = runtime.read(lambda session: session.get(Account, ACCOUNT))
    assert stored is not None
    assert stored.gateway_customer_id == customer["id"]


def test_a_gateway_customer_made_before_a_lost_answer_is_found_by_the_account_id_not_made_again(
    runtime: Runtime, api: Api, gateway: AsaasGateway, asaas: FakeAsaas, auto_debit: str
) -> None:
    api.put_account(ACCOUNT, gateway_customer_id=None)
    asaas.customers["cus_earlier"] = {"id": "cus_earlier", "externalReference": ACCOUNT, "deleted": False}
    [charge_id] = plan(runtime, DAY_1)
    assert make_card_charge(runtime, gateway, charge_id).outcome == "settled"
    assert asaas.create_customer.call_count == 0
    assert asaas.sent()[0]["customer"] == "cus_earlier"


# -- the tick


def test_the_tick_without_a_broker_charges_inline_and_counts_it(
    runtime: Runtime, context: WorkerContext, asaas: FakeAsaas, auto_debit: str, clock: FrozenClock
) -> None:
    report = tick(context, None, DAY_1)
    assert report.counts["charges_started"] == 1
    assert report.counts["charges_settled"] == 1
    assert invoice_status(runtime, auto_debit) == "paid"
    again = tick(context, None, DAY_1)
    assert again.counts["charges_started"] == 0


@SQLITE
def test_the_tick_with_a_broker_queues_the_charges_in_jobs_of_twenty(
    runtime: Runtime, context: WorkerContext, asaas: FakeAsaas, auto_debit: str
) -> None:
    jobs = declare_actors(build_broker(""), lambda: context)
    report = tick(context, jobs, DAY_1)
    assert report.counts["charges_started"] == 1
    [queued] = list(jobs.broker.queues["charges"].queue)
    assert json.loads(queued)["actor_name"] == "charge_cards"
    assert json.loads(queued)["args"] == [[charges(runtime)[0].id]]
    assert asaas.create.call_count == 0


def test_a_charge_pending_an_hour_after_it_was_sent_is_asked_about_and_settled(
    runtime: Runtime, context: WorkerContext, gateway: AsaasGateway, asaas: FakeAsaas, auto_debit: str
) -> None:
    [charge_id] = plan(runtime, DAY_1)
    asaas.next_create.extend([httpx.Response(503)] * 3)
    with pytest.raises(GatewayUnavailable):
        make_card_charge(runtime, gateway, charge_id)
    asaas.add(charge_id)  # a missed answer: the gateway did charge it

    early = tick(context, None, DAY_1 + timedelta(minutes=30))
    assert early.counts["charges_rechecked"] == 0
    report = tick(context, None, DAY_1 + timedelta(hours=1, minutes=1))
    assert report.counts["charges_rechecked"] == 1
    assert invoice_status(runtime, auto_debit) == "paid"
    assert asaas.create.call_count == 3
    again = tick(context, None, DAY_1 + timedelta(hours=1, minutes=6))
    assert again.counts["charges_rechecked"] == 0


@SQLITE
def test_an_auto_debit_whose_job_was_lost_is_queued_again_after_an_hour(
    runtime: Runtime, context: WorkerContext, asaas: FakeAsaas, auto_debit: str
) -> None:
    jobs = declare_actors(build_broker(""), lambda: context)
    assert tick(context, jobs, DAY_1).counts["charges_started"] == 1
    jobs.broker.flush_all()  # the broker lost it
    later = tick(context, jobs, DAY_1 + timedelta(hours=2))
    assert later.counts["charges_requeued"] == 1
    assert len(jobs.broker.queues["charges"].queue) == 1


# -- refunds and cancels


@pytest.fixture
def paid_twice(runtime: Runtime, asaas: FakeAsaas, auto_debit: str) -> tuple[str, str]:
    """A PIX charge paid twice at Asaas: the second payment is a duplicate owed back."""
    now = runtime.clock.now()
    charge_id = runtime.transaction(lambda session: open_charge(session, [auto_debit], "pix", now).id)
    first = asaas.add(charge_id, status="RECEIVED", kind="PIX")
    second = asaas.add(charge_id, status="RECEIVED", kind="PIX")
    for payment_id in (first, second):
        payment = ConfirmedPayment("asaas", payment_id, 18990, "pix", now)
        runtime.transaction(lambda session, p=payment: settle_charge(session, charge_id, p, now))  # type: ignore[misc]
    return charge_id, second


def test_an_owed_refund_is_sent_through_the_gateway_once_and_the_webhook_after_it_changes_nothing(
    runtime: Runtime, gateway: AsaasGateway, asaas: FakeAsaas, paid_twice: tuple[str, str]
) -> None:
    charge_id, duplicate = paid_twice
    [refund_id] = runtime.read(lambda session: owed_refunds(session, runtime.clock.now()))
    assert send_refund(runtime, gateway, refund_id) == "refunded"
    assert send_refund(runtime, gateway, refund_id) == "not_owed"

    assert asaas.refund.call_count == 1
    assert asaas.refund.calls.last.request.url.path == f"/v3/payments/{duplicate}/refund"
    [refund] = rows(runtime, Refund)
    assert (refund.status, refund.reason, refund.amount_cents) == ("done", "duplicate", 18990)
    assert refund.gateway_refund_id == f"{duplicate}:refund1"
    now = runtime.clock.now()
    outcome = runtime.transaction(
        lambda session: record_refund(session, charge_id, "asaas", duplicate, f"{duplicate}:refund1", 18990, now, now)
    )
    assert outcome == "already_recorded"
    assert [invoice.status for invoice in rows(runtime, Invoice)] == ["paid"]


@SQLITE
def test_a_refund_whose_answer_was_lost_is_recorded_from_the_payment_not_sent_again(
    runtime: Runtime, clock: FrozenClock, gateway: AsaasGateway, asaas: FakeAsaas, paid_twice: tuple[str, str]
) -> None:
    _charge_id, duplicate = paid_twice
    [refund_id] = runtime.read(lambda session: owed_refunds(session, runtime.clock.now()))

    def refunded_then_lost(request: httpx.Request, pid: str) -> httpx.Response:
        asaas._refund(request, pid)
        raise httpx.ReadTimeout("the answer never came", request=request)

    asaas.refund.side_effect = refunded_then_lost
    with pytest.raises(GatewayUnavailable):
        send_refund(runtime, gateway, refund_id)
    assert runtime.read(lambda session: owed_refunds(session, clock.now())) == []  # claimed for a while
    clock.set(clock.now() + timedelta(minutes=6))
    assert send_refund(runtime, gateway, refund_id) == "refunded"
    assert asaas.refund.call_count == 1
    assert asaas.payments[duplicate]["status"] == "REFUNDED"


@SQLITE
def test_refunds_of_payments_that_came_through_another_gateway_are_left_for_ops(
    runtime: Runtime, auto_debit: str
) -> None:
    now = runtime.clock.now()
    charge_id = runtime.transaction(lambda session: open_charge(session, [auto_debit], "pix", now).id)
    for payment_id in ("gw_1", "gw_2"):
        payment = ConfirmedPayment("standard", payment_id, 18990, "pix", now)
        runtime.transaction(lambda session, p=payment: settle_charge(session, charge_id, p, now))  # type: ignore[misc]
    [refund] = rows(runtime, Refund)
    assert runtime.read(lambda session: owed_refunds(session, now)) == []
    assert [owed.id for owed in runtime.read(refunds_by_hand)] == [refund.id]


def test_a_charge_superseded_by_a_payment_is_canceled_at_the_gateway_once(
    runtime: Runtime, gateway: AsaasGateway, asaas: FakeAsaas, auto_debit: str
) -> None:
    now = runtime.clock.now()
    boleto = runtime.transaction(lambda session: open_charge(session, [auto_debit], "boleto", now))
    boleto_payment = asaas.add(boleto.id, status="PENDING", kind="BOLETO")
    mark_sent(runtime, boleto.id, boleto_payment)
    never_sent = runtime.transaction(lambda session: open_charge(session, [auto_debit], "card", now).id)
    pix = runtime.transaction(lambda session: open_charge(session, [auto_debit], "pix", now).id)
    confirmed = ConfirmedPayment("asaas", "pay_pix", 18990, "pix", now)
    runtime.transaction(lambda session: settle_charge(session, pix, confirmed, now))

    assert sorted(runtime.read(owed_gateway_cancels)) == sorted([boleto.id, never_sent])
    assert cancel_at_gateway(runtime, gateway, boleto.id) == "canceled"
    assert cancel_at_gateway(runtime, gateway, never_sent) == "never_sent"
    assert cancel_at_gateway(runtime, gateway, boleto.id) == "not_owed"
    assert asaas.delete.call_count == 1
    assert asaas.payments[boleto_payment]["deleted"] is True
    assert runtime.read(owed_gateway_cancels) == []


@SQLITE
def test_a_cancel_that_comes_too_late_is_recorded_and_not_tried_again(
    runtime: Runtime, gateway: AsaasGateway, asaas: FakeAsaas, auto_debit: str
) -> None:
    now = runtime.clock.now()
    boleto = runtime.transaction(lambda session: open_charge(session, [auto_debit], "boleto", now).id)
    asaas.add(boleto, status="RECEIVED", kind="BOLETO")  # paid at the gateway meanwhile
    mark_sent(runtime, boleto)
    pix = runtime.transaction(lambda session: open_charge(session, [auto_debit], "pix", now).id)
    runtime.transaction(
        lambda session: settle_charge(session, pix, ConfirmedPayment("asaas", "pay_p", 18990, "pix", now), now)
    )
    assert cancel_at_gateway(runtime, gateway, boleto).startswith("refused")
    assert runtime.read(owed_gateway_cancels) == []


@SQLITE
def test_the_tick_without_a_broker_sends_owed_refunds_and_cancels(
    runtime: Runtime, context: WorkerContext, asaas: FakeAsaas, paid_twice: tuple[str, str]
) -> None:
    report = tick(context, None)
    assert report.counts["refunds_sent"] == 1
    assert asaas.refund.call_count == 1


@SQLITE
def test_the_webhook_job_kicks_the_follow_ups_that_send_the_refund(
    runtime: Runtime, context: WorkerContext, asaas: FakeAsaas, paid_twice: tuple[str, str]
) -> None:
    jobs: Jobs = declare_actors(build_broker(""), lambda: context)
    jobs.kick()
    jobs.kick()  # a burst of kicks is one pass
    assert len(jobs.broker.queues["charges.DQ"].queue) == 1
    jobs.charging.follow_ups.fn()
    assert asaas.refund.call_count == 1
    assert [refund.status for refund in rows(runtime, Refund)] == ["done"]


def test_charge_jobs_queued_in_one_pipeline_are_consumed_from_redis_like_any_other() -> None:
    from dramatiq.brokers.redis import RedisBroker

    from tests.conftest import SPARE_REDIS_URL, service_missing

    broker = build_broker(SPARE_REDIS_URL)  # a database of its own
    assert isinstance(broker, RedisBroker)
    try:
        broker.client.flushdb()
    except Exception as error:
        service_missing("Redis", error)
    context = WorkerContext(None, {}, None)  # type: ignore[arg-type]
    jobs = declare_actors(broker, lambda: context)
    try:
        jobs.charging.send_charges([f"chg_{n}" for n in range(2500)])
        assert broker.client.llen("dramatiq:charges") == 125  # twenty charges a job
        consumer = broker.consume("charges", prefetch=3, timeout=500)
        received = [next(consumer) for _ in range(3)]
        assert [list(message.args) for message in received] == [
            [[f"chg_{n}" for n in range(start, start + 20)]] for start in (0, 20, 40)
        ]
        assert {message.actor_name for message in received} == {"charge_cards"}
        for message in received:
            consumer.ack(message)
        consumer.close()
        assert broker.client.hlen("dramatiq:charges.msgs") == 122
    finally:
        broker.client.flushdb()
        broker.close()


# -- oldest month first, new cards, cards that must never be charged again (issue: the books)

JAN_1 = parse_instant("2027-01-01T00:05:00-03:00")


def test_a_month_left_unpaid_holds_the_next_one_back_until_a_new_card_pays_the_oldest_first(
    runtime: Runtime, api: Api, context: WorkerContext, asaas: FakeAsaas, auto_debit: str, clock: FrozenClock
) -> None:
    asaas.next_create.append(refused("Transação não autorizada: cartão roubado."))
    assert tick(context, None, DAY_1).counts["charges_declined"] == 1
    clock.set(JAN_1)
    report = tick(context, None, JAN_1)
    assert report.counts["invoices_issued"] == 1
    assert report.counts["charges_started"] == 0  # never charged past an unpaid month
    assert api.access(ACCOUNT, "platform")["state"] == "blocked"
    january = next(invoice["id"] for invoice in api.invoices(ACCOUNT) if invoice["period_start"] == "2027-01-01")

    api.subscribe(ACCOUNT, "platform", payment_method="card_auto_debit", card_token="tok_new")
    later = JAN_1 + timedelta(hours=1)
    clock.set(later)
    assert tick(context, None, later).counts["charges_settled"] == 1  # at once, not on a retry day
    assert invoice_status(runtime, auto_debit) == "paid"  # December, the oldest, first
    assert invoice_status(runtime, january) == "open"
    again = later + timedelta(minutes=5)
    clock.set(again)
    assert tick(context, None, again).counts["charges_settled"] == 1
    assert invoice_status(runtime, january) == "paid"
    references = [body["externalReference"] for body in asaas.sent()]
    assert len(references) == len(set(references)) == 3  # one charge per attempt, never two for one month
    report = runtime.read(lambda session: check_books(session, again))
    assert report.clean, [violation.line() for violation in report.violations]


def test_a_card_that_was_charged_back_is_not_charged_again_until_a_new_one_is_given(
    runtime: Runtime, api: Api, context: WorkerContext, asaas: FakeAsaas, auto_debit: str, clock: FrozenClock
) -> None:
    assert tick(context, None, DAY_1).counts["charges_settled"] == 1
    [charge] = charges(runtime)
    [payment] = rows(runtime, Payment)
    outcome = runtime.transaction(
        lambda session: record_chargeback(session, charge.id, "asaas", payment.gateway_payment_id, DAY_1)
    )
    assert outcome == "chargeback"
    assert invoice_status(runtime, auto_debit) == "open"
    for day in (3, 5):
        moment = parse_instant(f"2026-12-0{day}T00:05:00-03:00")
        clock.set(moment)
        assert tick(context, None, moment).counts["charges_started"] == 0
    api.subscribe(ACCOUNT, "platform", payment_method="card_auto_debit", card_token="tok_other")
    assert tick(context, None, DAY_5 + timedelta(minutes=5)).counts["charges_settled"] == 1
    assert invoice_status(runtime, auto_debit) == "paid"
