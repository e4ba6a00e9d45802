"""SPEC section 6, the outages: SMTP down for an hour of the shared clock, the gateway answering 5xx and
timing out during charges, PostgreSQL connections killed under load, and the scheduler down five days.
Each with the production processes (`regua serve`, two worker processes, the gateway simulator, an SMTP
sink, and `regua scheduler` where it is the subject), then the books read back."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from sqlalchemy.engine import make_url

from billing.journal import Notification
from billing.models import Charge, Payment
from tests.faults.conftest import Stack, shuffled, wait_for
from tests.faults.test_faults import day_one, events_settled, pix_delivery, post, standard_delivery

pytestmark = [pytest.mark.faults, pytest.mark.e2e]

# The régua's schedule as SPEC section 5 writes it: days after the due date (day 1).
REMINDER_DAY, WARNING_DAY = 3, 5


def mails_received(stack: Stack) -> Counter[tuple[str | None, str | None]]:
    return Counter((message.kind, message["X-Regua-Invoice"]) for message in stack.smtp.messages)


def mails_recorded_sent(stack: Stack) -> Counter[tuple[str | None, str | None]]:
    return Counter((row["kind"], row["invoice_id"]) for row in stack.books.all(Notification) if row["status"] == "sent")


def outbox(stack: Stack) -> list[tuple[str, str, object, int, str | None]]:
    return [
        (row["kind"], row["status"], row["sent_at"], row["attempts"], row["last_error"])
        for row in stack.books.all(Notification)
    ]


def test_smtp_down_for_an_hour_of_the_clock_every_mail_is_delivered_exactly_once_after(stack: Stack) -> None:
    first = stack.open_invoices(5)
    stack.smtp.stop()
    start = day_one(first)
    stack.clock("set", start.isoformat())  # day 1: five invoices issued, their mails owed
    charges = stack.charges()
    for index, charge in enumerate(charges[:2]):  # two pay at once: two confirmations owed too
        answer = post(stack, standard_delivery(charge, f"msg_smtp_{index}", at=start))
        assert answer.status_code == 200, answer.text
    wait_for(lambda: stack.books.paid_invoices() == 2, 60, "the two invoices paid")

    def tried_and_refused() -> bool:
        rows = stack.books.all(Notification)
        return len(rows) == 7 and all(row["status"] == "pending" and row["last_error"] for row in rows)

    wait_for(tried_and_refused, 60, lambda: f"7 mails tried and refused: {stack.books.all(Notification)}")
    stack.clock("advance", "30m")  # half an hour on: the pass queues them again, and they fail again
    half_past = start + timedelta(minutes=30)
    wait_for(
        lambda: all(row["sent_at"] >= half_past for row in stack.books.all(Notification)),
        60,
        "the 7 mails tried again at half past",
    )
    assert stack.smtp.messages == []

    stack.smtp.start()
    stack.clock("advance", "31m")  # an hour on, SMTP is back: the pass queues what waits, once
    # Still true after the hour: the three unpaid invoices' bills and the two confirmations. The two
    # paid invoices' bills, which asked for money they no longer owe, are not sent.
    expected = Counter({("invoice_issued", charge["invoice_id"]): 1 for charge in charges[2:]})
    expected.update({("payment_confirmed", charge["invoice_id"]): 1 for charge in charges[:2]})
    wait_for(
        lambda: len(stack.smtp.messages) >= 5,
        90,
        lambda: f"5 mails, received {stack.smtp.kinds()}; the books: {outbox(stack)}",
    )
    wait_for(lambda: sum(mails_recorded_sent(stack).values()) == 5, 30, "the 5 mails recorded sent")
    assert mails_received(stack) == expected
    assert mails_recorded_sent(stack) == expected
    obsolete = {
        (row["kind"], row["invoice_id"]) for row in stack.books.all(Notification) if row["status"] == "obsolete"
    }
    assert obsolete == {("invoice_issued", charge["invoice_id"]) for charge in charges[:2]}
    assert all(row["attempts"] >= 1 for row in stack.books.all(Notification))
    stack.assert_books()


def test_the_gateway_answering_5xx_then_timing_out_during_card_charges_charges_each_card_once(stack: Stack) -> None:
    first = stack.open_invoices(3, method="card_auto_debit", token="tok_ok")
    # The next three creations go wrong: nothing stored and a 500; stored and the answer held past the
    # client's read timeout; stored and a 502. Each job then looks its charge up by reference first.
    scripted = stack.http.post(f"{stack.sim}/sim/outages", json={"create": ["500", "timeout", "502-charged"]})
    assert scripted.status_code == 200, scripted.text
    stack.tick(day_one(first))
    wait_for(lambda: stack.books.paid_invoices() == 3, 120, "the three invoices paid")
    wait_for(lambda: events_settled(stack), 60, "every event processed")

    state = stack.sim_state()
    served = {outage["outage"]: outage["externalReference"] for outage in state["outages"]}
    assert set(served) == {"500", "timeout", "502-charged"}
    ours = {charge["id"] for charge in stack.books.all(Charge)}
    assert set(served.values()) <= ours
    by_reference = Counter(payment["externalReference"] for payment in state["payments"])
    assert by_reference == Counter(dict.fromkeys(ours, 1))
    stack.assert_books()
    assert len(stack.books.all(Payment)) == 3


@contextmanager
def backends_killed(database_url: str, every: float) -> Iterator[list[int]]:
    """Every `every` seconds, `pg_terminate_backend` on every other connection to the test database."""
    url = make_url(database_url)
    dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
    killed: list[int] = []
    stop = threading.Event()

    def kill() -> None:
        with psycopg.connect(dsn, autocommit=True) as connection:
            while not stop.wait(every):
                rows = connection.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                ).fetchall()
                killed.append(sum(1 for (done,) in rows if done))

    killer = threading.Thread(target=kill, name="pg-killer", daemon=True)
    killer.start()
    try:
        yield killed
    finally:
        stop.set()
        killer.join(timeout=10)


def test_postgres_connections_killed_during_intake_and_jobs_lose_nothing_and_store_nothing_partial(
    stack: Stack,
) -> None:
    first = stack.open_invoices(40)
    assert stack.tick(day_one(first))["invoices_issued"] == 40
    charges = stack.charges()
    deliveries = []
    for index, charge in enumerate(charges):
        if index % 2:
            deliveries += [pix_delivery(charge, "/webhooks/pix"), pix_delivery(charge, "/webhooks/pix/pix")]
        else:
            deliveries += [standard_delivery(charge, f"msg_pg_{index}")] * 2
    deliveries = shuffled(deliveries, 5)

    database = stack.processes.env["REGUA_DATABASE_URL"]
    with backends_killed(database, every=0.05) as killed, ThreadPoolExecutor(max_workers=6) as pool:
        answers = list(pool.map(lambda delivery: post(stack, delivery), deliveries))
    assert sum(killed) > 0, "no connection was killed: nothing was tested"
    codes = Counter(answer.status_code for answer in answers)
    assert set(codes) <= {200, 503}, [answer.text for answer in answers if answer.status_code not in (200, 503)]
    refused = [delivery for delivery, answer in zip(deliveries, answers, strict=True) if answer.status_code == 503]
    assert all(answer.headers.get("Retry-After") for answer in answers if answer.status_code == 503)

    stack.books.engine.dispose()  # its pooled connections were killed too
    # The gateways deliver again what was refused; what was stored before a kill reads as a duplicate.
    # The intake tries a batch once more on a new connection when its connection died idle, so one
    # redelivery is enough now that nothing kills them.
    for delivery in refused:
        again = post(stack, delivery)
        assert again.status_code == 200, again.text
    wait_for(lambda: stack.books.paid_invoices() == 40, 120, "the 40 invoices paid")
    wait_for(lambda: events_settled(stack), 60, "every event processed")
    # Mails whose send job lost its connection are queued again by the pass a quarter of an hour on.
    stack.tick(datetime.now(UTC) + timedelta(minutes=16))

    def confirmations() -> int:
        return sum(count for (kind, _), count in mails_recorded_sent(stack).items() if kind == "payment_confirmed")

    wait_for(lambda: confirmations() == 40, 90, lambda: f"40 confirmations sent, {confirmations()}")
    assert len(stack.books.all(Payment)) == 40
    assert len(stack.books.events()) == 40, "one event per payment told: none lost, none stored twice"
    stack.assert_books()
    received = [str(message["X-Regua-Invoice"]) for message in stack.smtp.of_kind("payment_confirmed")]
    assert sorted(received) == sorted(charge["invoice_id"] for charge in charges)
    print(f"answers {dict(codes)}, backends killed {sum(killed)}")


def test_the_scheduler_down_five_days_catches_up_with_only_the_mails_still_true(stack: Stack) -> None:
    first = stack.open_invoices(4)
    start = day_one(first)
    stack.time_passes(start)
    scheduler = stack.processes.start("scheduler", "scheduler")
    wait_for(lambda: len(stack.smtp.of_kind("invoice_issued")) == 4, 180, "the four invoices issued and mailed")
    charges = stack.charges()
    scheduler.terminate()
    scheduler.wait(timeout=30)

    # Down from day 1 to day 6. On day 4 one customer pays: the workers settle it meanwhile.
    day_four = start + timedelta(days=REMINDER_DAY, hours=10)
    stack.time_passes(day_four)
    paid = charges[0]
    assert post(stack, standard_delivery(paid, "msg_down_paid", at=day_four)).status_code == 200
    wait_for(lambda: stack.books.paid_invoices() == 1, 60, "the day-4 payment settled")
    stack.time_passes(start + timedelta(days=5))

    stack.processes.start("scheduler-back", "scheduler")
    unpaid = [charge["invoice_id"] for charge in charges[1:]]
    wait_for(lambda: len(stack.smtp.of_kind("block_warning")) == 3, 60, "the three block warnings")
    stack.clock("advance", "1m")  # passes on, at the same day: nothing more is owed

    expected = Counter({("invoice_issued", charge["invoice_id"]): 1 for charge in charges})
    expected.update({("payment_confirmed", paid["invoice_id"]): 1})
    expected.update({("block_warning", invoice): 1 for invoice in unpaid})  # day 5's, not day 3's reminder
    wait_for(lambda: sum(mails_recorded_sent(stack).values()) == sum(expected.values()), 30, "mails recorded")
    assert mails_received(stack) == expected
    assert mails_recorded_sent(stack) == expected
    stack.assert_books()
