"""Card charges in batches: one claim and one record for twenty charges, what PostgreSQL executes for them
counted, a gateway that stops answering halfway, a batch out of time, and the gateway's echo of a payment
the books already hold taken without asking the gateway again."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from dramatiq.common import dq_name
from sqlalchemy import Engine, event, select, update
from starlette.testclient import TestClient

from billing.charging import ChargeOutcome, make_card_charges, plan_auto_debits
from billing.charging import cards as card_module
from billing.charging.cards import claim_card_charges
from billing.check import check_books
from billing.clock import parse_instant
from billing.invoicing import issue_due_invoices
from billing.journal import WebhookEvent
from billing.models import Charge, ChargeAttempt, Invoice, Payment
from billing.ports import GatewayUnavailable
from regua.app import create_app
from regua.gateway.asaas import AsaasGateway
from regua.mailer import SmtpPostman
from regua.runtime import Runtime
from tests.integration.asaas_fake import BASE, FakeAsaas, fake_asaas
from tests.integration.conftest import Api
from tests.integration.webhook_helpers import asaas_headers
from webhooks.base import Provider
from workers.actors import EventsNotProcessed, declare_actors
from workers.broker import build_broker
from workers.charging import CHARGES_PER_MESSAGE
from workers.context import WorkerContext

DAY_1 = parse_instant("2026-12-01T00:05:00-03:00")
POSTGRES = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
STATEMENTS_PER_CHARGE = 8
"""The budget: what PostgreSQL executes for one card charge, from its job's first read to its settlement."""


@pytest.fixture
def asaas() -> Iterator[FakeAsaas]:
    with fake_asaas() as fake:
        yield fake


@pytest.fixture
def gateway() -> Iterator[AsaasGateway]:
    with AsaasGateway(BASE, "asaas-test-key", sleep=lambda _seconds: None) as client:
        yield client


@pytest.fixture
def context(runtime: Runtime, providers: dict[str, Provider], gateway: AsaasGateway) -> WorkerContext:
    return WorkerContext(runtime, providers, gateway, postman=lambda: SmtpPostman(runtime))


def day_one(api: Api, runtime: Runtime, count: int) -> list[str]:
    """`count` card auto-debit customers (with their gateway customers) and their day-1 charges, planned."""
    for number in range(count):
        account = f"cliente-{number:03d}"
        api.put_account(account)
        api.subscribe(account, "platform", payment_method="card_auto_debit", card_token=f"tok_{number}")
    runtime.transaction(lambda session: issue_due_invoices(session, DAY_1, runtime.calendar))
    charge_ids = runtime.transaction(lambda session: plan_auto_debits(session, DAY_1, runtime.calendar, runtime.policy))
    assert len(charge_ids) == count
    return list(charge_ids)


@dataclass
class Counts:
    statements: int = 0
    transactions: int = 0


@contextmanager
def counted(engine: Engine) -> Iterator[Counts]:
    """What the engine sends PostgreSQL: each statement (an executemany's rows one by one, as the server
    runs them) and each commit (a read-only unit of work ends in a rollback: not counted)."""
    counts = Counts()

    def on_execute(_conn: Any, _cursor: Any, _sql: str, parameters: Any, _context: Any, executemany: bool) -> None:
        # An executemany's parameters are a list (one row each); an insert of many rows in one statement, a dict.
        counts.statements += len(parameters) if executemany and isinstance(parameters, list | tuple) else 1

    def on_commit(_conn: Any) -> None:
        counts.transactions += 1

    event.listen(engine, "before_cursor_execute", on_execute)
    event.listen(engine, "commit", on_commit)
    try:
        yield counts
    finally:
        event.remove(engine, "before_cursor_execute", on_execute)
        event.remove(engine, "commit", on_commit)


def books_clean(runtime: Runtime) -> bool:
    report = runtime.read(lambda session: check_books(session, runtime.clock.now()))
    assert report.clean, report.as_dict()
    return True


def statuses(runtime: Runtime, charge_ids: list[str]) -> dict[str, str]:
    rows = runtime.read(
        lambda session: session.execute(select(Charge.id, Charge.status).where(Charge.id.in_(charge_ids)))
    )
    return {str(charge_id): str(status) for charge_id, status in rows}


def created_per_charge(asaas: FakeAsaas) -> dict[str, int]:
    counts: dict[str, int] = {}
    for body in asaas.sent():
        counts[body["externalReference"]] = counts.get(body["externalReference"], 0) + 1
    return counts


@POSTGRES
def test_a_job_of_twenty_card_charges_settles_each_once_within_the_statement_budget(
    api: Api, runtime: Runtime, context: WorkerContext, asaas: FakeAsaas
) -> None:
    charge_ids = day_one(api, runtime, CHARGES_PER_MESSAGE)
    jobs = declare_actors(build_broker(""), lambda: context)
    jobs.charging.send_charges(charge_ids)
    [message] = list(jobs.broker.queues["charges"].queue)
    assert json.loads(message)["args"] == [charge_ids]

    with counted(runtime.engine) as counts:
        jobs.charging.charge_cards(charge_ids)

    assert set(statuses(runtime, charge_ids).values()) == {"confirmed"}
    assert created_per_charge(asaas) == dict.fromkeys(charge_ids, 1)
    assert counts.transactions == 2, "one claim and one record for the whole job (and one read of the payers)"
    assert counts.statements <= STATEMENTS_PER_CHARGE * len(charge_ids), counts
    assert books_clean(runtime)


@POSTGRES
def test_a_charge_alone_takes_no_more_than_before(
    api: Api, runtime: Runtime, context: WorkerContext, asaas: FakeAsaas
) -> None:
    [charge_id] = day_one(api, runtime, 1)
    jobs = declare_actors(build_broker(""), lambda: context)
    with counted(runtime.engine) as counts:
        jobs.charging.charge(charge_id)
    assert statuses(runtime, [charge_id]) == {charge_id: "confirmed"}
    assert counts.transactions == 2
    assert counts.statements <= 30, counts


def test_a_gateway_that_stops_answering_halfway_leaves_the_rest_unsent_and_a_retry_charges_each_once(
    api: Api, runtime: Runtime, gateway: AsaasGateway, asaas: FakeAsaas
) -> None:
    charge_ids = day_one(api, runtime, 5)
    asaas.next_create.extend([None, None, *[httpx.Response(503)] * 3])  # two charged, then the gateway is down

    with pytest.raises(GatewayUnavailable):
        make_card_charges(runtime, gateway, charge_ids)

    after = statuses(runtime, charge_ids)
    assert [after[charge_id] for charge_id in charge_ids] == ["confirmed", "confirmed", "pending", "pending", "pending"]
    attempts = runtime.read(
        lambda session: {
            (attempt.charge_id, attempt.outcome)
            for attempt in session.scalars(select(ChargeAttempt).where(ChargeAttempt.charge_id.in_(charge_ids)))
        }
    )
    assert (charge_ids[2], "unavailable") in attempts, "the call that raised may have reached the gateway"
    assert not {charge_id for charge_id, _ in attempts} & set(charge_ids[3:]), "never sent: no attempt left"
    never_sent = runtime.read(
        lambda session: list(session.scalars(select(Charge.sent_at).where(Charge.id.in_(charge_ids[3:]))))
    )
    assert never_sent == [None, None]

    lookups = asaas.lookup.call_count
    results = make_card_charges(runtime, gateway, charge_ids)

    assert [result.outcome for result in results] == [
        ChargeOutcome.NOT_PENDING,
        ChargeOutcome.NOT_PENDING,
        ChargeOutcome.SETTLED,
        ChargeOutcome.SETTLED,
        ChargeOutcome.SETTLED,
    ]
    assert asaas.lookup.call_count == lookups + 1, "only the unclear one is looked up before it is created"
    assert created_per_charge(asaas) == {
        charge_ids[0]: 1,
        charge_ids[1]: 1,
        charge_ids[2]: 4,  # three 503s (one call and the client's retries), then the retry's create
        charge_ids[3]: 1,
        charge_ids[4]: 1,
    }
    assert len(asaas.payments) == 5, "each charged once at the gateway"
    assert books_clean(runtime)


def test_a_batch_out_of_time_gives_its_last_claims_back_and_the_job_queues_them_again(
    api: Api, runtime: Runtime, context: WorkerContext, asaas: FakeAsaas, monkeypatch: pytest.MonkeyPatch
) -> None:
    charge_ids = day_one(api, runtime, 4)
    elapsed = [0.0]
    original = asaas.create.side_effect

    def slow_create(request: httpx.Request) -> httpx.Response:
        elapsed[0] += 70.0  # each call takes 70 s: the third would start after CALLS_WITHIN (2 minutes)
        return original(request)  # type: ignore[no-any-return, operator]

    asaas.create.side_effect = slow_create
    monkeypatch.setattr(card_module, "_seconds", lambda: elapsed[0])
    jobs = declare_actors(build_broker(""), lambda: context)

    jobs.charging.charge_cards(charge_ids)

    after = statuses(runtime, charge_ids)
    assert [after[charge_id] for charge_id in charge_ids] == ["confirmed", "confirmed", "pending", "pending"]
    [requeued] = [json.loads(message) for message in jobs.broker.queues["charges"].queue]
    assert requeued["actor_name"] == "charge_cards"
    assert requeued["args"] == [charge_ids[2:]]
    leases = runtime.read(
        lambda session: list(session.scalars(select(Charge.lease_until).where(Charge.id.in_(charge_ids[2:]))))
    )
    assert leases == [None, None], "given back: the next job claims them at once"

    jobs.charging.charge_cards(charge_ids[2:])
    assert set(statuses(runtime, charge_ids).values()) == {"confirmed"}
    assert created_per_charge(asaas) == dict.fromkeys(charge_ids, 1)


def asaas_event(payment: dict[str, Any], event: str) -> dict[str, Any]:
    return {
        "id": f"evt_{event}_{payment['id']}",
        "event": event,
        "dateCreated": "2026-12-01 00:06:00",
        "payment": payment,
    }


def test_the_gateways_echo_of_payments_already_settled_is_done_without_fetching_them_again(
    api: Api, runtime: Runtime, providers: dict[str, Provider], context: WorkerContext, asaas: FakeAsaas
) -> None:
    charge_ids = day_one(api, runtime, 3)
    make_card_charges(runtime, context.gateway, charge_ids[:2])  # type: ignore[arg-type]
    other = asaas.add(charge_ids[2])  # paid at the gateway, not yet in the books
    queued: list[str] = []
    with TestClient(create_app(runtime, providers, queued.extend)) as intake:
        for payment in list(asaas.payments.values()):
            for kind in ("PAYMENT_CONFIRMED", "PAYMENT_RECEIVED"):
                response = intake.post("/webhooks/asaas", json=asaas_event(payment, kind), headers=asaas_headers())
                assert response.status_code == 200, response.text
    assert len(queued) == 6
    fetches = asaas.fetch.call_count
    jobs = declare_actors(build_broker(""), lambda: context)

    jobs.process_webhook_events(queued)

    assert asaas.fetch.call_count == fetches + 2, "only the payment the books did not hold is fetched, per event"
    events = runtime.read(lambda session: list(session.scalars(select(WebhookEvent))))
    assert {event.status for event in events} == {"processed"}
    echo = [event for event in events if other not in event.body]
    assert {event.outcome for event in echo} == {"already_recorded"}
    assert {event.charge_id for event in echo} == set(charge_ids[:2])
    assert runtime.read(lambda session: list(session.scalars(select(Invoice.status)))) == ["paid"] * 3
    assert runtime.read(lambda session: len(list(session.scalars(select(Payment.id))))) == 3
    assert books_clean(runtime)


def test_a_chargeback_won_is_not_mistaken_for_an_echo(
    api: Api, runtime: Runtime, providers: dict[str, Provider], context: WorkerContext, asaas: FakeAsaas
) -> None:
    """Only a payment the books hold as confirmed skips the fetch: one charged back takes the whole path, and
    the gateway's word that it is paid again (a dispute won) pays its month again."""
    [charge_id] = day_one(api, runtime, 1)
    make_card_charges(runtime, context.gateway, [charge_id])  # type: ignore[arg-type]
    [payment] = asaas.payments.values()
    jobs = declare_actors(build_broker(""), lambda: context)

    def deliver(kind: str, status: str) -> None:
        payment["status"] = status
        queued: list[str] = []
        with TestClient(create_app(runtime, providers, queued.extend)) as intake:
            response = intake.post("/webhooks/asaas", json=asaas_event(payment, kind), headers=asaas_headers())
            assert response.status_code == 200, response.text
        jobs.process_webhook_events(queued)

    deliver("PAYMENT_CHARGEBACK_REQUESTED", "CHARGEBACK_REQUESTED")
    assert runtime.read(lambda session: list(session.scalars(select(Invoice.status)))) == ["open"]
    fetches = asaas.fetch.call_count

    deliver("PAYMENT_RECEIVED", "RECEIVED")

    assert asaas.fetch.call_count == fetches + 1
    assert runtime.read(lambda session: list(session.scalars(select(Invoice.status)))) == ["paid"]
    assert books_clean(runtime)


def echo_during_the_charge(
    runtime: Runtime,
    providers: dict[str, Provider],
    context: WorkerContext,
    asaas: FakeAsaas,
    waited: int,
    **changed: Any,
) -> tuple[Any, list[str], list[int]]:
    """Charge one card; while its job is still between the gateway's answer and recording it, the gateway's
    confirmation arrives and its webhook job runs (`waited` times looked at already; the charge's row
    `changed` first, if asked). The jobs, the queued event ids, and the fetches the webhook job made."""
    jobs = declare_actors(build_broker(""), lambda: context)
    queued: list[str] = []
    fetched: list[int] = []
    charge_card = context.gateway.charge_card  # type: ignore[union-attr]

    def answered_then_echoed(charge: Any) -> Any:
        answer = charge_card(charge)
        payment = asaas.payments[answer.id]
        if changed:
            runtime.transaction(
                lambda session: session.execute(update(Charge).where(Charge.id == charge.charge_id).values(**changed))
            )
        with TestClient(create_app(runtime, providers, queued.extend)) as intake:
            response = intake.post(
                "/webhooks/asaas", json=asaas_event(payment, "PAYMENT_CONFIRMED"), headers=asaas_headers()
            )
            assert response.status_code == 200, response.text
        before = asaas.fetch.call_count
        jobs.process_webhook_events(queued, waited)
        fetched.append(asaas.fetch.call_count - before)
        return answer

    context.gateway.charge_card = answered_then_echoed  # type: ignore[union-attr,method-assign]
    return jobs, queued, fetched


def test_an_echo_that_outruns_its_charge_job_waits_for_the_job_instead_of_settling_it_again(
    api: Api, runtime: Runtime, providers: dict[str, Provider], context: WorkerContext, asaas: FakeAsaas
) -> None:
    [charge_id] = day_one(api, runtime, 1)
    jobs, queued, fetched = echo_during_the_charge(runtime, providers, context, asaas, waited=0)

    make_card_charges(runtime, context.gateway, [charge_id])  # type: ignore[arg-type]

    assert fetched == [0], "the payment is not fetched while its charge job holds the lease"
    [later] = [json.loads(message) for message in jobs.broker.queues[dq_name("webhooks")].queue]
    assert later["actor_name"] == "process_webhook_events"
    assert later["args"] == [queued, 1]
    assert 2_000 <= later["options"]["eta"] - later["message_timestamp"] < 3_000, "looked at again 2 s later"
    [waiting] = runtime.read(lambda session: list(session.scalars(select(WebhookEvent))))
    assert waiting.status == "received", "set apart, not lost: the tick requeues it if the message is"
    fetches = asaas.fetch.call_count

    jobs.process_webhook_events(*later["args"])

    assert asaas.fetch.call_count == fetches
    [done] = runtime.read(lambda session: list(session.scalars(select(WebhookEvent))))
    assert (done.status, done.outcome, done.charge_id) == ("processed", "already_recorded", charge_id)
    assert runtime.read(lambda session: len(list(session.scalars(select(Payment.id))))) == 1
    assert books_clean(runtime)


def test_an_echo_that_has_waited_its_turns_takes_the_whole_path_and_the_job_finds_it_settled(
    api: Api, runtime: Runtime, providers: dict[str, Provider], context: WorkerContext, asaas: FakeAsaas
) -> None:
    [charge_id] = day_one(api, runtime, 1)
    jobs, _queued, fetched = echo_during_the_charge(runtime, providers, context, asaas, waited=3)  # all three waits

    [result] = make_card_charges(runtime, context.gateway, [charge_id])  # type: ignore[arg-type]

    assert fetched == [1], "past its waits the payment is fetched and settled from the gateway's word"
    assert not jobs.broker.queues[dq_name("webhooks")].queue
    assert result.outcome == ChargeOutcome.ALREADY_RECORDED, "the webhook settled it a moment before"
    [done] = runtime.read(lambda session: list(session.scalars(select(WebhookEvent))))
    assert (done.status, done.charge_id) == ("processed", charge_id)
    assert runtime.read(lambda session: list(session.scalars(select(Invoice.status)))) == ["paid"]
    assert runtime.read(lambda session: len(list(session.scalars(select(Payment.id))))) == 1
    assert created_per_charge(asaas) == {charge_id: 1}
    assert books_clean(runtime)


@pytest.mark.parametrize(
    "changed",
    [{"method": "pix"}, {"lease_until": parse_instant("2025-12-01T00:00:00-03:00")}],
    ids=["a PIX charge: its job asks for codes, it records no payment", "a card charge whose lease ran out"],
)
def test_an_echo_waits_for_no_job_that_will_not_record_its_payment(
    api: Api,
    runtime: Runtime,
    providers: dict[str, Provider],
    context: WorkerContext,
    asaas: FakeAsaas,
    changed: dict[str, Any],
) -> None:
    """Only a card charge's job records the gateway's answer, and only while its lease runs: a PIX or boleto
    payment's webhook, or one whose charge job has died (a lease run out), is settled at once."""
    [charge_id] = day_one(api, runtime, 1)
    jobs, _queued, fetched = echo_during_the_charge(runtime, providers, context, asaas, waited=0, **changed)

    make_card_charges(runtime, context.gateway, [charge_id])  # type: ignore[arg-type]

    assert fetched == [1]
    assert not jobs.broker.queues[dq_name("webhooks")].queue
    [done] = runtime.read(lambda session: list(session.scalars(select(WebhookEvent))))
    assert (done.status, done.charge_id) == ("processed", charge_id)
    assert runtime.read(lambda session: len(list(session.scalars(select(Payment.id))))) == 1


def test_a_job_retried_for_another_events_failure_sets_the_echo_apart_once(
    api: Api, runtime: Runtime, providers: dict[str, Provider], context: WorkerContext, asaas: FakeAsaas
) -> None:
    """The echo set apart is queued again only by a run that ends well: a run retried because another event
    failed looks at it again, instead of starting a second chain of waits beside the first."""
    charging, other = day_one(api, runtime, 2)
    runtime.transaction(lambda session: claim_card_charges(session, [charging], runtime.clock.now(), runtime.calendar))
    echo, paid = asaas.add(charging), asaas.add(other)
    queued: list[str] = []
    with TestClient(create_app(runtime, providers, queued.extend)) as intake:
        for payment_id in (echo, paid):
            event = asaas_event(asaas.payments[payment_id], "PAYMENT_CONFIRMED")
            assert intake.post("/webhooks/asaas", json=event, headers=asaas_headers()).status_code == 200
    jobs = declare_actors(build_broker(""), lambda: context)
    later = jobs.broker.queues[dq_name("webhooks")].queue
    answer = asaas.fetch.side_effect
    asaas.fetch.side_effect = httpx.ConnectError("the gateway is down")

    with pytest.raises(EventsNotProcessed):
        jobs.process_webhook_events(queued)
    assert not later, "nothing queued by a run that fails"

    asaas.fetch.side_effect = answer
    jobs.process_webhook_events(queued)
    assert [json.loads(message)["args"] for message in later] == [[[queued[0]], 1]]
    statuses = dict(runtime.read(lambda session: session.execute(select(WebhookEvent.id, WebhookEvent.status)).all()))
    assert statuses == {queued[0]: "received", queued[1]: "processed"}
