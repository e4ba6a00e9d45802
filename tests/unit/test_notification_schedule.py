"""Which email the régua owes, and when: the latest step still true, retry days, keys, recorded context."""

from __future__ import annotations

import threading
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import dramatiq
import pytest
from dramatiq.brokers.stub import StubBroker
from hypothesis import given
from hypothesis import strategies as st

from billing.calendar import BillingCalendar
from billing.dunning import Step, next_retry_on
from billing.models import Invoice, PaymentMethod
from billing.outbox import Delivery, Outcome
from billing.policy import Policy
from billing.schedule import (
    dedupe_key,
    email_steps,
    invoice_line,
    latest_email_step,
)
from regua import mail
from regua.mail import render_email
from regua.mailer import email_context
from workers.mailing import BATCH, Coalesced, DeliveryFailed, Grouped, declare

SAO_PAULO = ZoneInfo("America/Sao_Paulo")
SAMPLES = Path(__file__).resolve().parents[2] / "docs" / "samples"
CALENDAR = BillingCalendar(SAO_PAULO)
DEC = date(2026, 12, 1)


def local(day: int, hour: int = 0, minute: int = 0) -> datetime:
    """An instant on a December 2026 day, São Paulo time."""
    return datetime(2026, 12, day, hour, minute, tzinfo=SAO_PAULO)


def latest(method: str, at: datetime, policy: Policy | None = None, *, after_trial: bool = False) -> str | None:
    steps = email_steps(method, DEC, policy or Policy(), CALENDAR, after_trial=after_trial)
    step = latest_email_step(steps, at)
    return None if step is None else f"{step.kind}:{step.key}"


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        (datetime(2026, 12, 1, 2, 59, tzinfo=UTC), None),  # 23:59 of 30/11 in São Paulo
        (local(1), "invoice_issued:day1"),
        (local(2, 23, 59), "invoice_issued:day1"),
        (local(3), "payment_reminder:day3"),
        (local(4, 12), "payment_reminder:day3"),
        (local(5), "block_warning:day5"),
        (local(6, 23, 59), "block_warning:day5"),
        (local(7), "account_blocked:day7"),
        (local(20), "account_blocked:day7"),
    ],
)
def test_a_manual_payer_hears_only_the_latest_step_whose_day_has_come(at: datetime, expected: str | None) -> None:
    assert latest(PaymentMethod.BOLETO, at) == expected


def test_after_a_four_day_gap_the_block_warning_is_what_is_still_true_not_three_mails() -> None:
    assert latest(PaymentMethod.PIX, local(5, 9)) == "block_warning:day5"


def test_an_auto_debit_customer_has_no_issue_or_reminder_mail_only_the_warning_and_the_block() -> None:
    steps = email_steps(PaymentMethod.CARD_AUTO_DEBIT, DEC, Policy(), CALENDAR)
    assert [(step.day, step.kind) for step in steps] == [(5, "block_warning"), (7, "account_blocked")]
    assert latest(PaymentMethod.CARD_AUTO_DEBIT, local(3)) is None


@pytest.mark.parametrize("method", [PaymentMethod.BOLETO, PaymentMethod.CARD_AUTO_DEBIT])
def test_the_first_invoice_after_a_trial_opens_with_trial_ended_instead_of_invoice_issued(method: str) -> None:
    steps = email_steps(method, DEC, Policy(), CALENDAR, after_trial=True)
    assert steps[0] == Step("email", "trial_ended", 1, CALENDAR.start_of_day(DEC))
    assert "invoice_issued" not in {step.kind for step in steps}
    assert latest(method, local(1, 12), after_trial=True) == "trial_ended:day1"


def test_the_reminder_and_warning_days_come_from_the_policy() -> None:
    policy = Policy(reminder_day=2, block_warning_day=4)
    assert latest(PaymentMethod.BOLETO, local(2), policy) == "payment_reminder:day2"
    assert latest(PaymentMethod.BOLETO, local(4), policy) == "block_warning:day4"


@given(
    due=st.dates(min_value=date(2024, 1, 1), max_value=date(2028, 12, 1)),
    offset=st.integers(min_value=-3 * 24 * 60, max_value=12 * 24 * 60),
    method=st.sampled_from(list(PaymentMethod)),
)
def test_the_latest_step_has_come_and_no_later_one_has(due: date, offset: int, method: str) -> None:
    now = CALENDAR.start_of_day(due) + timedelta(minutes=offset)
    steps = email_steps(method, due, Policy(), CALENDAR)
    step = latest_email_step(steps, now)
    if step is None:
        assert all(other.at > now for other in steps)
    else:
        assert step.at <= now
        assert all(other.at > now for other in steps if other.day > step.day)


@pytest.mark.parametrize(
    ("failed_on", "hard", "expected"),
    [
        (date(2026, 12, 1), False, date(2026, 12, 3)),
        (date(2026, 12, 2), False, date(2026, 12, 3)),
        (date(2026, 12, 3), False, date(2026, 12, 5)),
        (date(2026, 12, 5), False, None),
        (date(2026, 12, 1), True, None),
    ],
)
def test_a_declined_card_is_charged_again_on_the_next_retry_day_unless_none_remains_or_the_decline_was_hard(
    failed_on: date, hard: bool, expected: date | None
) -> None:
    assert next_retry_on(DEC, failed_on, Policy(), hard=hard) == expected


def test_retry_days_come_from_the_policy() -> None:
    assert next_retry_on(DEC, DEC, Policy(retry_days=(4,)), hard=False) == date(2026, 12, 4)
    assert next_retry_on(DEC, DEC, Policy(retry_days=()), hard=False) is None


def test_a_notification_is_keyed_by_its_invoice_or_account_its_kind_and_its_step() -> None:
    assert dedupe_key("inv_1", "payment_reminder", "day3") == "inv_1:payment_reminder:day3"
    assert dedupe_key("padaria-central", "account_blocked", "blk_9") == "padaria-central:account_blocked:blk_9"


def december(**changes: object) -> Invoice:
    values: dict[str, object] = {
        "id": "inv_dec",
        "account_id": "padaria-central",
        "product": "platform",
        "period_start": DEC,
        "period_end": date(2026, 12, 31),
        "due_date": DEC,
        "payment_method": PaymentMethod.CARD_AUTO_DEBIT.value,
        "subtotal_cents": 19990,
        "discount_cents": 1000,
        "total_cents": 18990,
    }
    values.update(changes)
    return Invoice(**values)


def test_the_recorded_context_is_json_and_renders_back_into_the_same_email() -> None:
    recorded = {
        "account_name": "Padaria Central Ltda",
        "recipients": [["Ana", "ana@padaria.example"]],
        "invoices": [invoice_line(december())],
        "payment_method": "card_auto_debit",
        "amount_cents": 18990,
        "failure_reason": "insufficient_funds",
        "next_retry_on": "2026-12-03",
        "block_on": "2026-12-07",
    }
    assert recorded["invoices"] == [
        {
            "invoice_id": "inv_dec",
            "product": "platform",
            "period_start": "2026-12-01",
            "period_end": "2026-12-31",
            "due_date": "2026-12-01",
            "subtotal_cents": 19990,
            "discount_cents": 1000,
            "total_cents": 18990,
        }
    ]
    context = email_context("payment_failed", "padaria-central", recorded, "https://portal.example/p")
    assert context.next_retry_on == date(2026, 12, 3)
    assert context.recipients == (("Ana", "ana@padaria.example"),)
    rendered = render_email(context)
    assert rendered.subject == "Pagamento não aprovado: nova tentativa em 03/12/2026"
    assert "R$ 189,90" in rendered.text
    assert "Desconto de 5%" in rendered.text
    assert "https://portal.example/p" in rendered.html


def test_passes_asked_for_while_one_runs_make_it_run_exactly_once_more() -> None:
    started, release = threading.Event(), threading.Event()
    runs: list[int] = []

    def work() -> None:
        runs.append(len(runs))
        if len(runs) == 1:
            started.set()
            release.wait(timeout=5)

    coalesced = Coalesced(work)
    first = threading.Thread(target=coalesced)
    first.start()
    assert started.wait(timeout=5)
    for _ in range(5):
        coalesced()  # returns at once: the running pass will run again
    release.set()
    first.join(timeout=5)
    assert runs == [0, 1]
    coalesced()
    assert runs == [0, 1, 2]


def test_deliveries_asked_for_at_once_go_in_batches_and_each_job_gets_its_own_answer() -> None:
    batches: list[list[str]] = []
    running, most_running = [0], [0]
    lock = threading.Lock()
    gate = threading.Event()

    def deliver(ids: list[str]) -> list[Delivery]:
        with lock:
            batches.append(ids)
            running[0] += 1
            most_running[0] = max(most_running[0], running[0])
        gate.wait(timeout=5)  # the first batches hold on until every job has asked
        with lock:
            running[0] -= 1
        return [Delivery(Outcome.SENT, f"250 {notification_id}") for notification_id in ids]

    grouped = Grouped(deliver, batch=4, leaders=2, linger=0)
    answers: dict[str, str] = {}

    def job(notification_id: str) -> None:
        [answer] = grouped([notification_id])
        answers[notification_id] = answer.detail

    threads = [threading.Thread(target=job, args=(f"ntf_{n}",)) for n in range(12)]
    for thread in threads:
        thread.start()
    gate.set()
    for thread in threads:
        thread.join(timeout=10)
    assert answers == {f"ntf_{n}": f"250 ntf_{n}" for n in range(12)}
    assert sorted(i for batch in batches for i in batch) == sorted(answers)
    assert max(len(batch) for batch in batches) <= 4
    assert most_running[0] <= 2


def test_a_batch_that_fails_fails_every_job_in_it_so_each_is_retried() -> None:
    def deliver(ids: list[str]) -> list[Delivery]:
        raise ConnectionError("database unreachable")

    with pytest.raises(DeliveryFailed, match="database unreachable"):
        Grouped(deliver, linger=0)(["ntf_1"])


def test_jobs_of_several_ids_go_whole_into_batches_and_each_gets_its_answers_in_order() -> None:
    batches: list[list[str]] = []
    lock = threading.Lock()
    gate = threading.Event()

    def deliver(ids: list[str]) -> list[Delivery]:
        with lock:
            batches.append(ids)
        gate.wait(timeout=5)
        return [Delivery(Outcome.SENT, f"250 {notification_id}") for notification_id in ids]

    grouped = Grouped(deliver, batch=5, leaders=1, linger=0)
    jobs = {
        "first": ["a1", "a2", "a3", "a4", "a5"],  # a full batch: delivered alone, no linger
        "two": ["b1", "b2"],
        "three": ["c1", "c2", "c3"],
        "four": ["d1", "d2", "d3", "d4"],
        "one": ["e1"],
        "again": ["a1", "e1"],  # the same ids asked for twice: each job still gets one answer per id it gave
    }
    answers: dict[str, list[str]] = {}

    def job(name: str) -> None:
        answers[name] = [answer.detail for answer in grouped(jobs[name])]

    threads = [threading.Thread(target=job, args=(name,)) for name in jobs]
    threads[0].start()
    while not batches:
        time.sleep(0.001)  # the first job leads; the others queue behind it, in this order
    for thread in threads[1:]:
        thread.start()
        time.sleep(0.02)
    gate.set()
    for thread in threads:
        thread.join(timeout=10)

    assert answers == {name: [f"250 {i}" for i in ids] for name, ids in jobs.items()}
    assert batches == [jobs["first"], jobs["two"] + jobs["three"], jobs["four"] + jobs["one"], jobs["again"]]


def test_a_send_message_carries_up_to_a_batch_of_notifications() -> None:
    broker = StubBroker()
    actors = declare(broker, lambda: pytest.fail("queueing needs no worker context"))
    broker.declare_queue("email")

    assert actors.queue([f"ntf_{n:02d}" for n in range(BATCH * 2 + 3)]) == BATCH * 2 + 3

    messages = [dramatiq.Message.decode(raw) for raw in broker.queues["email"].queue]
    assert [message.actor_name for message in messages] == ["send_notifications"] * 3
    assert [message.args[0] for message in messages] == [
        [f"ntf_{n:02d}" for n in range(start, min(start + BATCH, BATCH * 2 + 3))] for start in (0, BATCH, BATCH * 2)
    ]
    assert actors.queue([]) == 0
    assert len(broker.queues["email"].queue) == 3


def test_docs_samples_show_every_kind_as_the_templates_render_it_today(tmp_path: Path) -> None:
    written = mail.write_samples(tmp_path) + mail.write_samples(tmp_path, every_kind=True)
    kinds = {path.name.split("_")[0] + "_" + path.name.split("_")[1] for path in written}
    assert kinds == set(mail.KINDS)
    for path in written:
        committed = SAMPLES / path.name
        assert committed.is_file(), f"missing {committed}: run python -m regua.mail docs/samples"
        assert committed.read_text(encoding="utf-8") == path.read_text(encoding="utf-8"), (
            f"{committed.name} is stale: run python -m regua.mail docs/samples"
        )
