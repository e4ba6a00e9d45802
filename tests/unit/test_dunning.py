"""The régua's schedule: which email or charge attempt falls on which day of an invoice's life (section 5)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest

from billing.calendar import BillingCalendar
from billing.dunning import NotificationKind, Step, invoice_steps, regua_day_start
from billing.models import PaymentMethod
from billing.policy import Policy

SAO_PAULO = ZoneInfo("America/Sao_Paulo")
CALENDAR = BillingCalendar(SAO_PAULO)
DEC = date(2026, 12, 1)
MANUAL = [PaymentMethod.BOLETO, PaymentMethod.PIX, PaymentMethod.CARD]


def schedule(steps: list[Step]) -> list[tuple[int, str, str]]:
    return [(step.day, step.action, step.kind) for step in steps]


@pytest.mark.parametrize("method", MANUAL)
def test_a_manual_invoice_is_issued_on_day_1_reminded_on_day_3_warned_on_day_5_and_blocked_on_day_7(
    method: str,
) -> None:
    steps = invoice_steps(method, DEC, Policy(), CALENDAR)

    assert schedule(steps) == [
        (1, "email", "invoice_issued"),
        (3, "email", "payment_reminder"),
        (5, "email", "block_warning"),
        (7, "email", "account_blocked"),
    ]


def test_an_auto_debit_invoice_is_charged_on_days_1_3_and_5_and_never_gets_issued_or_reminder_emails() -> None:
    steps = invoice_steps(PaymentMethod.CARD_AUTO_DEBIT, DEC, Policy(), CALENDAR)

    assert schedule(steps) == [
        (1, "charge", "auto_debit"),
        (3, "charge", "auto_debit_retry"),
        (5, "charge", "auto_debit_retry"),
        (5, "email", "block_warning"),
        (7, "email", "account_blocked"),
    ]
    kinds = {step.kind for step in steps}
    assert NotificationKind.INVOICE_ISSUED not in kinds
    assert NotificationKind.PAYMENT_REMINDER not in kinds


def test_a_policy_with_one_retry_on_day_4_charges_on_day_1_and_day_4_only() -> None:
    steps = invoice_steps(PaymentMethod.CARD_AUTO_DEBIT, DEC, Policy(retry_days=(4,)), CALENDAR)

    assert [(step.day, step.kind) for step in steps if step.action == "charge"] == [
        (1, "auto_debit"),
        (4, "auto_debit_retry"),
    ]
    assert [(step.day, step.kind) for step in steps if step.action == "email"] == [
        (5, "block_warning"),
        (7, "account_blocked"),
    ]


def test_a_policy_without_retries_charges_only_on_day_1() -> None:
    steps = invoice_steps(PaymentMethod.CARD_AUTO_DEBIT, DEC, Policy(retry_days=()), CALENDAR)

    assert [step.day for step in steps if step.action == "charge"] == [1]


def test_the_retry_days_do_not_change_a_manual_invoice() -> None:
    default = invoice_steps(PaymentMethod.BOLETO, DEC, Policy(), CALENDAR)

    assert invoice_steps(PaymentMethod.BOLETO, DEC, Policy(retry_days=(4,)), CALENDAR) == default


def test_a_policy_moves_the_reminder_and_the_block_warning_but_not_the_block() -> None:
    steps = invoice_steps(PaymentMethod.PIX, DEC, Policy(reminder_day=2, block_warning_day=6), CALENDAR)

    assert schedule(steps) == [
        (1, "email", "invoice_issued"),
        (2, "email", "payment_reminder"),
        (6, "email", "block_warning"),
        (7, "email", "account_blocked"),
    ]


@pytest.mark.parametrize("method", [*MANUAL, PaymentMethod.CARD_AUTO_DEBIT])
def test_each_step_happens_at_midnight_in_sao_paulo_of_its_day(method: str) -> None:
    for step in invoice_steps(method, DEC, Policy(), CALENDAR):
        assert step.at == datetime(2026, 12, step.day, 3, 0, tzinfo=UTC)
        assert CALENDAR.local(step.at) == datetime(2026, 12, step.day, 0, 0, tzinfo=SAO_PAULO)
        assert CALENDAR.day_of_regua(DEC, step.at) == step.day


@pytest.mark.parametrize("method", [*MANUAL, PaymentMethod.CARD_AUTO_DEBIT])
def test_the_account_blocked_email_goes_out_at_the_block_instant(method: str) -> None:
    [blocked] = [step for step in invoice_steps(method, DEC, Policy(), CALENDAR) if step.kind == "account_blocked"]

    # Rule 3.4: due on 1/12, payable to the end of 6/12, blocked from 00:00 of 7/12 in São Paulo (03:00 UTC).
    assert blocked.at == datetime(2026, 12, 7, 0, 0, tzinfo=SAO_PAULO)
    assert blocked.at == datetime(2026, 12, 7, 3, 0, tzinfo=UTC)


def test_the_schedule_of_a_pro_rata_invoice_counts_from_its_own_due_date() -> None:
    steps = invoice_steps(PaymentMethod.BOLETO, date(2026, 12, 10), Policy(), CALENDAR)

    assert [(step.kind, CALENDAR.local_date(step.at)) for step in steps] == [
        ("invoice_issued", date(2026, 12, 10)),
        ("payment_reminder", date(2026, 12, 12)),
        ("block_warning", date(2026, 12, 14)),
        ("account_blocked", date(2026, 12, 16)),
    ]


def test_the_schedule_crosses_into_the_next_month() -> None:
    steps = invoice_steps(PaymentMethod.BOLETO, date(2026, 12, 28), Policy(), CALENDAR)

    assert [CALENDAR.local_date(step.at) for step in steps] == [
        date(2026, 12, 28),
        date(2026, 12, 30),
        date(2027, 1, 1),
        date(2027, 1, 3),
    ]


@pytest.mark.parametrize("method", [*MANUAL, PaymentMethod.CARD_AUTO_DEBIT])
def test_every_step_has_a_distinct_key_per_kind(method: str) -> None:
    steps = invoice_steps(method, DEC, Policy(), CALENDAR)

    assert len({(step.kind, step.key) for step in steps}) == len(steps)
    assert [step.key for step in steps] == [f"day{step.day}" for step in steps]


def test_a_day_of_the_regua_starts_at_local_midnight() -> None:
    assert regua_day_start(DEC, 1, CALENDAR) == datetime(2026, 12, 1, 3, 0, tzinfo=UTC)
    assert regua_day_start(DEC, 7, CALENDAR) == CALENDAR.block_at(DEC)


def test_the_email_kinds_are_the_twelve_of_the_spec() -> None:
    assert {kind.value for kind in NotificationKind} == {
        "invoice_issued",
        "payment_confirmed",
        "payment_failed",
        "payment_reminder",
        "block_warning",
        "account_blocked",
        "account_unblocked",
        "verification_pending",
        "trial_ended",
        "refund_issued",
        "subscription_changed",
        "subscription_canceled",
    }
