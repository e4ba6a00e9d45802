"""Day 1 against a gateway that answers 429 to three requests in ten: every card charged once, none declined."""

from __future__ import annotations

from collections import Counter
from time import monotonic

import pytest

from billing.models import Charge, ChargeAttempt, Payment
from tests.faults.conftest import Stack, wait_for
from tests.faults.test_faults import day_one, events_settled

pytestmark = [pytest.mark.faults, pytest.mark.e2e]

CARDS = 40


def test_day_one_against_a_gateway_throttling_three_requests_in_ten_charges_every_card_exactly_once(
    stack: Stack,
) -> None:
    throttle = stack.http.post(f"{stack.sim}/sim/throttle", json={"share": 0.3, "retry_after": 1})
    assert throttle.status_code == 200, throttle.text
    first = stack.open_invoices(CARDS, method="card_auto_debit", token="tok_ok")
    started = monotonic()

    stack.tick(day_one(first))
    wait_for(lambda: stack.books.paid_invoices() == CARDS, 75, lambda: f"{stack.books.paid_invoices()} paid")
    wait_for(lambda: events_settled(stack), 30, "every webhook event processed")
    elapsed = monotonic() - started

    served = stack.http.get(f"{stack.sim}/sim/throttle").json()
    print(f"{CARDS} cards in {elapsed:.1f} s; the gateway answered 429 {served['throttled']} times of {served}")
    assert served["throttled"] >= CARDS * 0.3  # at least the creations' share was refused, and waited out
    charges = stack.books.all(Charge)
    assert len(charges) == CARDS
    assert {charge["status"] for charge in charges} == {"confirmed"}
    attempts = stack.books.all(ChargeAttempt)
    assert [a for a in attempts if a["decline_class"] or a["outcome"] in ("declined", "rejected")] == []
    captured = Counter(payment["externalReference"] for payment in stack.sim_state()["payments"])
    assert captured == Counter({charge["id"]: 1 for charge in charges})
    assert len(stack.books.all(Payment)) == CARDS
    stack.assert_books()
