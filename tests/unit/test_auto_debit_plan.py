"""Which auto-debit attempt is due at an instant (rule 3.3): day 1, the retry days, and never a burst."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest

from billing.calendar import BillingCalendar
from billing.charging import Attempt, auto_debit_key, card_ref, due_attempt
from billing.dunning import attempt_days
from billing.policy import Policy

SAO_PAULO = ZoneInfo("America/Sao_Paulo")
CALENDAR = BillingCalendar(SAO_PAULO)
DUE = date(2026, 12, 1)
END = date(2026, 12, 31)
CARD = card_ref("tok_ok")


def at(day: int, hour: int = 0, minute: int = 5) -> datetime:
    return datetime(2026, 12, day, hour, minute, tzinfo=SAO_PAULO)


def due(
    now: datetime,
    *attempts: Attempt,
    policy: Policy | None = None,
    card: str | None = CARD,
    dead: frozenset[str] = frozenset(),
) -> int | str | None:
    """The régua day due as a number, another step (a new card) as its key, or None."""
    step = due_attempt(DUE, END, now, CALENDAR, policy or Policy(), attempts, card, dead_cards=dead)
    return int(step[3:]) if step is not None and step.startswith("day") else step


def failed(step: int, *, hard: bool = False, card: str | None = CARD) -> Attempt:
    return Attempt(step=step, status="failed", hard_decline=hard, card_ref=card)


def test_nothing_is_due_before_midnight_of_the_due_date() -> None:
    assert due(datetime(2026, 11, 30, 23, 59, tzinfo=SAO_PAULO)) is None


def test_the_first_attempt_is_due_from_midnight_of_day_one() -> None:
    assert due(at(1, 0, 0)) == 1


@pytest.mark.parametrize(("day", "expected"), [(2, None), (3, 3), (4, None), (5, 5), (6, None)])
def test_after_a_soft_decline_the_retries_fall_on_days_three_and_five(day: int, expected: int | None) -> None:
    history = [failed(step) for step in (1, 3, 5) if step == 1 or step < day]
    assert due(at(day), *history) == expected


def test_after_a_gap_only_the_latest_due_attempt_is_made() -> None:
    assert due(at(6)) == 5
    assert due(at(4), failed(1)) == 3


def test_a_pending_charge_holds_every_attempt_back() -> None:
    assert due(at(3), failed(1), Attempt(step=None, status="pending")) is None
    assert due(at(1), Attempt(step=1, status="pending")) is None


def test_a_hard_decline_stops_the_retries_for_that_card() -> None:
    assert due(at(3), failed(1, hard=True)) is None
    assert due(at(5), failed(1, hard=True)) is None


def test_a_new_card_after_a_hard_decline_is_charged_at_once_retry_day_or_not() -> None:
    new = card_ref("tok_new")
    assert new is not None
    assert due(at(2), failed(1, hard=True), card=new) == f"card-{new}"
    assert due(at(2), failed(1), card=new) == f"card-{new}"


def test_a_new_card_is_tried_once_then_follows_the_retry_days() -> None:
    new = card_ref("tok_new")
    tried = Attempt(step=None, status="failed", card_ref=new)
    assert due(at(2), failed(1), tried, card=new) is None
    assert due(at(3), failed(1), tried, card=new) == 3


def test_a_card_declined_hard_or_charged_back_anywhere_is_never_charged_again() -> None:
    assert CARD is not None
    assert due(at(1), dead=frozenset({CARD})) is None
    assert due(at(3), failed(1), dead=frozenset({CARD})) is None


def test_a_hard_decline_of_another_card_does_not_stop_the_auto_debit() -> None:
    checkout = Attempt(step=None, status="failed", hard_decline=True, card_ref=card_ref("tok_other"))
    assert due(at(3), failed(1), checkout, Attempt(step=None, status="failed", card_ref=CARD)) == 3


def test_catching_up_ends_with_the_billing_period() -> None:
    assert due(datetime(2026, 12, 31, 23, 0, tzinfo=SAO_PAULO)) == 5
    assert due(datetime(2027, 1, 1, 0, 5, tzinfo=SAO_PAULO)) is None


def test_a_short_pro_rata_period_still_gets_its_retries() -> None:
    trial_due = date(2026, 12, 29)
    assert (
        due_attempt(trial_due, END, datetime(2027, 1, 2, 9, tzinfo=SAO_PAULO), CALENDAR, Policy(), [], CARD) == "day5"
    )


def test_the_retry_days_come_from_the_policy() -> None:
    policy = Policy(retry_days=(2, 4, 6))
    assert attempt_days(policy) == (1, 2, 4, 6)
    assert due(at(4), failed(1), failed(2), policy=policy) == 4


def test_each_attempt_has_its_own_idempotency_key() -> None:
    assert auto_debit_key("inv_1", "day1") != auto_debit_key("inv_1", "day3")
    assert auto_debit_key("inv_1", "day3") == "auto:inv_1:day3"
