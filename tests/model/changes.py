"""Rule 3.10 played at random instants: the customer changes the price of a plan (dearer or cheaper), cancels,
and comes back, through the product API; the oracle (plans.py) says what each should do, and the machine's
checks after every step hold the invoices, the charges, the blocks, the emails and the access to it.

Each of these moves first runs the pass at its instant (hours or none after the last), so the period that
holds the instant is issued when the change is made, as it is in production once the day's pass has run.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from hypothesis import strategies as st
from hypothesis.stateful import rule

from billing.models import Invoice
from tests.model.observed import ObservedService
from tests.model.oracle import ModelInvoice, local_day

PRICES = st.integers(min_value=1_000, max_value=100_000)
"""A negotiated monthly price, dearer or cheaper than the one in force, odd centavos and all."""
LATER = st.one_of(st.just(0), st.integers(min_value=1, max_value=240))
PICK = st.integers(min_value=0, max_value=10_000)
REMOTE_IP = "203.0.113.7"
"""Where each customer gave a card (required with a card token)."""


def pick_key(keys: list[tuple[str, str]], index: int) -> tuple[str, str] | None:
    keys = sorted(keys)
    return keys[index % len(keys)] if keys else None


class ChangingSubscriptions(ObservedService):
    """The subscriptions' own moves: a new price, a cancellation, a return."""

    not_yet: frozenset[str]
    """Cases the core does not get right yet, not played (machine.py)."""

    def subscription(self, account: str, product: str, method: str) -> dict[str, Any]:
        """The subscription's body as the product sends it: the price the customer last chose, on `method`."""
        return {
            "plan": "pro",
            "modules": [],
            "monthly_price_cents": self.plans[(account, product)].asked,
            "frequency": "monthly",
            "payment_method": method,
            "installments": 1,
            "starts_on": self.first_day.isoformat(),
        }

    def verification_played(self, account: str, product: str) -> bool:
        """Whether a receipt or a pending payment of this product is played now (see NOT_YET in machine.py)."""
        canceled = self.plans[(account, product)].ends_on is not None
        return not (canceled and "verification_of_a_canceled_subscription" in self.not_yet)

    def put_subscription(self, account: str, product: str, price: int, **more: Any) -> None:
        """A PUT of the subscription at `price` (a change, a return, a new card): the answer and the upgrade's
        invoice are what the rule says."""
        plan = self.plans[(account, product)]
        body = {**self.subscription(account, product, plan.method), "monthly_price_cents": price}
        if plan.method == "card_auto_debit":  # the card it holds, sent again with its IP
            body |= {"card_token": self.tokens[(account, product)], "remote_ip": REMOTE_IP}
        body |= more
        invoiced = plan.put(price, self.now, local_day(self.now))
        self.model.ends_at.pop((account, product), None)
        answer = self.world.call("PUT", f"/api/accounts/{account}/subscriptions/{product}", body)
        change, pending = answer["change"], answer["pending_change"]
        waiting = None if plan.waiting_from is None else (plan.waiting_price, plan.waiting_from.isoformat())
        given = None if pending is None else (pending["monthly_price_cents"], pending["effective_on"])
        assert given == waiting, (account, product, price, answer, plan)
        if invoiced is None:
            assert change["proration_invoice_id"] is None, (account, product, price, change, plan)
            return
        assert change["proration_cents"] == invoiced.total_cents, (account, product, price, change, invoiced)
        row = self.world.runtime.read(lambda session: session.get(Invoice, change["proration_invoice_id"]))
        today = local_day(self.now)
        assert row is not None, change
        assert (row.kind, row.period_start, row.due_date) == ("proration", today, today), (row.id, row.kind)
        self.model.invoices[row.id] = ModelInvoice(
            row.id,
            account,
            product,
            today,
            plan.method,
            invoiced.total_cents,
            discount_cents=invoiced.discount_cents,
            kind="proration",
        )
        self.reach.upgraded = True

    @rule(index=PICK, price=PRICES, later=LATER)
    def the_customer_changes_plan(self, index: int, price: int, later: int = 0) -> None:
        """A dearer negotiated price (invoiced now, pro rata) or a cheaper one (from the next period), on a
        subscription not ended (a canceled one goes on)."""
        self.tick_at(self.now + timedelta(hours=later))
        chosen = pick_key([key for key, plan in self.plans.items() if not plan.ended(self.now)], index)
        if chosen is not None:
            plan = self.plans[chosen]
            today, upgraded = local_day(self.now), plan.upgraded_on
            played = upgraded != today
            if upgraded is not None and "two_upgrades_in_one_period" in self.not_yet:
                played = (upgraded.year, upgraded.month) != (today.year, today.month)
            if price <= plan.price or played:
                self.put_subscription(*chosen, price)
        self.settle()

    @rule(index=PICK, later=LATER)
    def the_customer_cancels(self, index: int, later: int = 0) -> None:
        """DELETE: the subscription ends at the end of the period already issued (again: nothing changes)."""
        self.tick_at(self.now + timedelta(hours=later))
        chosen = pick_key([key for key, plan in self.plans.items() if not plan.ended(self.now)], index)
        if chosen is not None:
            plan = self.plans[chosen]
            ends_on = plan.cancel(local_day(self.now))
            account, product = chosen
            answer = self.world.call("DELETE", f"/api/accounts/{account}/subscriptions/{product}")
            assert answer["ends_on"] == ends_on.isoformat(), (chosen, answer, plan)
            assert plan.ends_at is not None
            self.model.ends_at[chosen] = plan.ends_at
            self.reach.canceled = True
        self.settle()

    @rule(index=PICK, later=LATER)
    def the_customer_comes_back(self, index: int, later: int = 0) -> None:
        """A canceled subscription given its plan again: before its end it goes on, after it starts again."""
        self.tick_at(self.now + timedelta(hours=later))
        canceled = [key for key, plan in self.plans.items() if plan.ends_on is not None]
        if "return_after_the_end" in self.not_yet:
            canceled = [key for key in canceled if not self.plans[key].ended(self.now)]
        chosen = pick_key(canceled, index)
        if chosen is not None:
            plan = self.plans[chosen]
            self.reach.came_back_after_the_end |= plan.ended(self.now)
            self.put_subscription(*chosen, plan.price)
        self.settle()
