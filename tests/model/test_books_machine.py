"""The model-based test: random sequences against the real service, checked against the rules after every step."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis.stateful import run_state_machine_as_test
from sqlalchemy import select

from billing.check import check_books
from billing.clock import parse_instant
from billing.models import Refund
from tests.conftest import _truncate_all
from tests.model.machine import BooksMachine
from tests.model.oracle import RECEIPT
from tests.model.reach import REPORTS, Tally

# Every move may come hours or days after the one before, so most sequences live three months or more
# (the reach is printed at the end of the run): fewer of them than when each lived a few days, for
# about the same time in CI.
settings.register_profile(
    "ci",
    derandomize=True,
    max_examples=int(os.environ.get("REGUA_MACHINE_EXAMPLES", "15")),
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
settings.register_profile(
    "fuzz",
    derandomize=False,
    max_examples=int(os.environ.get("REGUA_MACHINE_EXAMPLES", "60")),
    stateful_step_count=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
PROFILE = settings.get_profile(os.environ.get("REGUA_MACHINE_PROFILE", "ci"))


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
def test_random_months_keep_the_books_and_access_right(
    database_url: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    profile = PROFILE
    if database_url.startswith("sqlite"):
        template = request.getfixturevalue("sqlite_template")

        def fresh() -> str:
            path = tmp_path / f"{uuid.uuid4().hex}.db"
            shutil.copy(template, path)
            return f"sqlite:///{path}"
    else:

        def fresh() -> str:
            _truncate_all(database_url)
            return database_url

        # PostgreSQL plays fewer sequences: the same code, checked for what only a real server changes
        profile = settings(profile, max_examples=max(1, profile.max_examples // 3))

    tally = Tally(f"{os.environ.get('REGUA_MACHINE_PROFILE', 'ci')} profile on {database_url.partition(':')[0]}")
    BooksMachine.new_database = staticmethod(fresh)
    BooksMachine.tally = tally
    try:
        run_state_machine_as_test(BooksMachine, settings=profile)
    finally:
        BooksMachine.tally = None
        REPORTS.append(tally.summary())
    print(tally.summary())
    assert tally.second_month > 0, f"no example lived into a second month:\n{tally.summary()}"


# -- sequences the machine found, replayed step by step -----------------------------------------------------


@pytest.fixture
def machine(database_url: str) -> Iterator[BooksMachine]:
    BooksMachine.new_database = staticmethod(lambda: database_url)
    played = BooksMachine()
    yield played
    played.teardown()


def checked(machine: BooksMachine) -> None:
    machine.the_books_add_up()
    machine.invoices_are_what_the_model_says()
    machine.access_is_what_the_rules_say()


def only_payment(machine: BooksMachine, account: str) -> str:
    [key] = [p.key for p in machine.model.payments.values() if machine.model.invoices[p.paid[0]].account == account]
    return key


def test_partial_refunds_of_an_auto_debit_leave_the_month_paid(machine: BooksMachine) -> None:
    """R$ 50, then R$ 60, then R$ 10 back on a card payment: each recorded at its own amount, the month paid."""
    machine.open_accounts(methods=("card_auto_debit", "boleto", "boleto", "boleto"), token="tok_ok")
    checked(machine)
    key = only_payment(machine, "ana")
    for amount in (5000, 6000, 1000):
        machine.refund(key, amount)
        machine.settle()
        checked(machine)
    refunded = machine.world.runtime.read(
        lambda session: sorted(session.scalars(select(Refund.amount_cents).where(Refund.payment_id.is_not(None))))
    )
    assert refunded == [1000, 5000, 6000]


def test_a_second_receipt_does_not_extend_the_verification(machine: BooksMachine) -> None:
    """Receipts on 5/12 and 7/12: the window runs 72 h from the first, so on 9/12 the account is blocked."""
    machine.open_accounts(methods=("boleto", "boleto", "boleto", "boleto"), token="tok_ok")
    [december] = machine.model.of("ana", "platform")
    machine.tick_at(parse_instant("2026-12-05T00:05:00-03:00"))
    machine.world.call("POST", f"/api/invoices/{december.id}/receipts", {})
    machine.model.start_verification([december.id], RECEIPT, machine.now)
    checked(machine)
    machine.tick_at(parse_instant("2026-12-07T12:00:00-03:00"))
    machine.world.call("POST", f"/api/invoices/{december.id}/receipts", {})
    machine.model.start_verification([december.id], RECEIPT, machine.now)
    checked(machine)
    machine.tick_at(parse_instant("2026-12-09T00:05:00-03:00"))
    assert machine.model.access("ana", "platform", machine.now).state == "blocked"
    checked(machine)


def test_a_chargeback_of_a_duplicate_leaves_the_month_paid(machine: BooksMachine) -> None:
    """December paid by the gateway, paid again through a relay, the second payment disputed: still paid."""
    machine.open_accounts(methods=("boleto", "boleto", "boleto", "boleto"), token="tok_ok")
    charge = next(
        c for c in machine.charges() if machine.invoices_of(c.id) == [machine.model.of("ana", "platform")[0].id]
    )
    machine.customer_pays_at_the_gateway(index=machine.pending_at_gateway().index(charge.gateway_payment_id))
    checked(machine)
    payment_id = machine.confirm("standard", charge.id, charge.amount_cents)
    machine.settle()
    checked(machine)
    assert machine.model.payments[f"standard:{payment_id}"].paid == []
    machine.chargeback(f"standard:{payment_id}")
    machine.settle()
    checked(machine)


def test_a_new_card_pays_the_oldest_open_month_first(machine: BooksMachine) -> None:
    """December declined on days 1, 3 and 5; a new card on 10/12: the card pays December, never January first."""
    machine.not_yet = frozenset()
    machine.open_accounts(methods=("card_auto_debit", "boleto", "boleto", "boleto"), token="tok_soft_decline")
    for day in ("2026-12-03", "2026-12-05", "2026-12-07"):
        machine.tick_at(parse_instant(f"{day}T00:05:00-03:00"))
        checked(machine)
    machine.the_customer_gives_a_new_card(index=0, token="tok_ok")
    for instant in ("2026-12-10T00:10:00-03:00", "2027-01-01T00:05:00-03:00", "2027-01-02T00:05:00-03:00"):
        machine.tick_at(parse_instant(instant))
        checked(machine)


def test_a_refund_of_a_second_payment_is_recorded_against_that_payment(machine: BooksMachine) -> None:
    """December's card payment refunded in full; the same charge paid again through a relay, and a part of
    that second payment refunded: the refund is the second payment's, not the first's."""
    machine.not_yet = frozenset()
    machine.open_accounts(methods=("card_auto_debit", "boleto", "boleto", "boleto"), token="tok_ok")
    first = only_payment(machine, "ana")
    machine.refund(first, machine.model.payments[first].amount_cents)
    machine.settle()
    checked(machine)
    charge_id = machine.model.payments[first].charge_id
    second = machine.confirm("standard", charge_id, machine.model.payments[first].amount_cents)
    machine.settle()
    checked(machine)
    machine.refund(f"standard:{second}", 4747)
    machine.settle()
    checked(machine)


def test_a_month_charged_back_and_paid_on_a_new_card_is_not_a_double_capture(machine: BooksMachine) -> None:
    """December's card payment disputed, a new card given, December charged on it: the books are right."""
    machine.open_accounts(methods=("card_auto_debit", "boleto", "boleto", "boleto"), token="tok_ok")
    disputed = only_payment(machine, "ana")
    machine.chargeback(disputed)
    machine.settle()
    checked(machine)
    machine.the_customer_gives_a_new_card(index=0, token="tok_ok")
    machine.tick_at(machine.now + timedelta(hours=1))
    [december] = machine.model.of("ana", "platform")
    assert december.paid_by not in (None, disputed)
    machine.the_books_add_up()
    report = machine.world.runtime.read(lambda session: check_books(session, machine.now))
    assert [violation.line() for violation in report.violations] == []


def ana_pays_december_at_the_gateway(machine: BooksMachine, how: str) -> str:
    """Ana's December boleto paid at the simulated Asaas (`pay`, or `cash` received outside it): its payment id."""
    [december] = machine.model.of("ana", "platform")
    charge = next(c for c in machine.charges() if machine.invoices_of(c.id) == [december.id])
    assert charge.gateway_payment_id is not None
    machine.world.sim.change(charge.gateway_payment_id, how, {})
    machine.settle()
    checked(machine)
    assert december.paid_by == f"asaas:{charge.gateway_payment_id}"
    return charge.gateway_payment_id


def test_a_chargeback_won_pays_its_month_again_and_lifts_the_block(machine: BooksMachine) -> None:
    """December paid, charged back (open again, blocked from 7/12), the dispute won on 10/12: paid, unblocked."""
    machine.open_accounts(methods=("boleto", "boleto", "boleto", "boleto"), token="tok_ok")
    payment_id = ana_pays_december_at_the_gateway(machine, "pay")
    machine.world.sim.change(payment_id, "chargeback", {})
    machine.tick_at(parse_instant("2026-12-07T00:05:00-03:00"))
    checked(machine)
    assert machine.model.access("ana", "platform", machine.now).state == "blocked"
    machine.a_chargeback_is_decided(index=0, outcome="chargeback-dispute", later=72)
    checked(machine)
    machine.a_chargeback_is_decided(index=0, outcome="chargeback-won")
    checked(machine)
    assert machine.model.access("ana", "platform", machine.now).state == "active"


def test_a_receipt_in_cash_undone_opens_its_month_again_until_it_is_paid(machine: BooksMachine) -> None:
    """December received in cash, undone on 8/12 (open, blocked at once), then paid at the gateway: unblocked."""
    machine.open_accounts(methods=("boleto", "boleto", "boleto", "boleto"), token="tok_ok")
    payment_id = ana_pays_december_at_the_gateway(machine, "cash")
    machine.tick_at(parse_instant("2026-12-08T00:05:00-03:00"))
    machine.a_receipt_in_cash_is_undone(index=0)
    checked(machine)
    assert machine.model.access("ana", "platform", machine.now).state == "blocked"
    machine.customer_pays_at_the_gateway(index=machine.pending_at_gateway().index(payment_id), later=6)
    checked(machine)
    assert machine.model.access("ana", "platform", machine.now).state == "active"
