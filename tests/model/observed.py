"""The model test's eyes: what it learns from the service after each move, and the checks against the oracle.

The machine's rules (machine.py) move the world; this base class keeps the test's own record of it
(the invoices issued, the charges opened and what they collect, the money moved at the gateway) and
holds every step to the rules: the books add up, each invoice is what the model says, each charge
collects what the rules say, and access is what the rules say.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, ClassVar

from hypothesis.stateful import RuleBasedStateMachine, invariant
from sqlalchemy import select

from billing.check import check_books
from billing.clock import parse_instant
from billing.journal import Notification
from billing.models import Block, Charge, ChargeInvoice, Invoice, Subscription
from tests.model.books import broken_invariants
from tests.model.oracle import MANUAL, ZONE, Model, ModelInvoice, invoice_amounts, local_day
from tests.model.plans import Plan
from tests.model.reach import Reach, Tally
from tests.model.world import World

START = parse_instant("2026-12-01T00:05:00-03:00")
"""Where the replayed sequences start; the random ones draw their own instant."""
PRICE = {"platform": 19990, "mentorship": 50000}
HELD_AT_GATEWAY = ("CONFIRMED", "RECEIVED", "RECEIVED_IN_CASH")
CHARGED_BACK = ("CHARGEBACK_REQUESTED", "CHARGEBACK_DISPUTE")
PAID_AT_GATEWAY = (*HELD_AT_GATEWAY, "REFUNDED", "REFUND_REQUESTED", "REFUND_IN_PROGRESS", *CHARGED_BACK)
ACCOUNTS = ("ana", "bia", "caio")
DUNNING = ("invoice_issued", "payment_reminder", "block_warning", "account_blocked")
"""The mails the régua sends of its own about an invoice: none after a subscription's end (3.10)."""


class ObservedService(RuleBasedStateMachine):
    """The service under test, the model of the rules, and the test's record of what happened to both."""

    new_database: ClassVar[Callable[[], str]]
    tally: ClassVar[Tally | None] = None
    """Where each example's reach goes, when a run counts them."""

    def __init__(self) -> None:
        super().__init__()
        self.world = World(type(self).new_database(), START)
        self.model = Model()
        self.first_day = local_day(START)
        """The day every subscription starts on: the day the machine starts."""
        self.reach = Reach(self.first_day, self.first_day)
        self.subscriptions: dict[tuple[str, str], str] = {}
        """The payment method of each (account, product)."""
        self.collected: dict[str, list[str]] = {}
        """The invoices each charge collects, as the rules said when it was opened."""
        self.sent: list[Callable[[], object]] = []
        """Every delivery made, to be made again."""
        self.tokens: dict[tuple[str, str], str] = {}
        """The card token each auto-debit subscription holds now."""
        self.disputed: set[tuple[str, str, str]] = set()
        """(account, product, token) of cards charged back: not charged again automatically (3.3)."""
        self.sim_seen: dict[str, tuple[str, int]] = {}
        """Simulator payments the model has recorded: status and refunded cents."""
        self.plans: dict[tuple[str, str], Plan] = {}
        """The terms and life of each (account, product), as the test asked for them (3.10)."""

    def teardown(self) -> None:
        payments = self.model.payments.values()
        self.reach.refunded = any(payment.refunded_cents for payment in payments)
        self.reach.charged_back = any(payment.charged_back for payment in payments)
        self.reach.verified = any(invoice.verify_from for invoice in self.model.invoices.values())
        if type(self).tally is not None:
            type(self).tally.add(self.reach)  # type: ignore[union-attr]
        self.world.close()

    @property
    def now(self) -> datetime:
        return self.world.clock.now()

    def begin_at(self, start: datetime) -> None:
        """Start the machine at `start`, before anything happens."""
        assert not self.model.invoices, "the machine has started already"
        self.world.clock.set(start)
        self.first_day = local_day(start)
        self.reach = Reach(self.first_day, self.first_day)

    def tick_at(self, at: datetime) -> None:
        assert at >= self.now, f"the clock never goes back: {at} after {self.now}"
        self.world.clock.set(at)
        self.reach.last = local_day(at)
        self.model.observe(at)
        self.world.tick(at)
        self.learn_invoices()
        self.learn_tick_charges()
        self.settle()

    # -- learning what the service did

    def learn_invoices(self) -> None:
        """After a tick: every subscription has exactly one invoice per period begun while it lived (3.1, 3.10),
        at the price in force for that period; an upgrade's invoice is known from the change that made it."""

        def read(session: Any) -> tuple[list[Invoice], dict[str, tuple[str, str]]]:
            subscriptions = {s.id: (s.account_id, s.product) for s in session.scalars(select(Subscription))}
            return list(session.scalars(select(Invoice))), subscriptions

        rows, subscriptions = self.world.runtime.read(read)
        today = local_day(self.now)
        for subscription_id, owner in subscriptions.items():
            months = sorted(r.period_start for r in rows if r.subscription_id == subscription_id and r.kind == "period")
            assert months == self.plans[owner].issued_months(today), (owner, months, today, self.plans[owner])
        for row in sorted(rows, key=lambda row: row.period_start):
            if row.id in self.model.invoices:
                continue
            assert row.kind == "period", f"an invoice no change asked for: {row.id} {row.kind} {row.period_start}"
            assert row.due_date == row.period_start, (row.id, row.period_start, row.due_date)
            plan = self.plans[(row.account_id, row.product)]
            waiting = plan.waiting_price
            subtotal, discount = invoice_amounts(row.period_start, plan.price_of(row.period_start), plan.method)
            self.reach.downgraded |= waiting is not None and plan.waiting_price is None
            invoice = ModelInvoice(
                row.id,
                row.account_id,
                row.product,
                row.period_start,
                plan.method,
                subtotal - discount,
                discount_cents=discount,
            )
            self.model.invoices[row.id] = invoice

    def new_charges(self) -> list[tuple[Charge, list[str]]]:
        """Charges the service opened since the test last looked, each with the invoices its rows link."""

        def read(session: Any) -> list[tuple[Charge, list[str]]]:
            known = set(self.collected)
            fresh = [charge for charge in session.scalars(select(Charge)) if charge.id not in known]
            links = session.execute(
                select(ChargeInvoice.charge_id, ChargeInvoice.invoice_id).where(
                    ChargeInvoice.charge_id.in_([charge.id for charge in fresh])
                )
            ).all()
            return [
                (charge, sorted(invoice for charge_id, invoice in links if charge_id == charge.id)) for charge in fresh
            ]

        return sorted(self.world.runtime.read(read), key=lambda made: made[1])

    def learn_tick_charges(self) -> None:
        """A pass opens the saved card's charge for the oldest unpaid month, alone (3.3), and a charge of its
        own for each boleto or PIX invoice that has none."""
        manual_due = self.model.manual_charges_due(
            {i for invoices in self.collected.values() for i in invoices}, self.now
        )
        manual_made = []
        for charge, invoices in self.new_charges():
            owner = (charge.account_id, charge.product)
            assert not self.plans[owner].quiet_at(charge.created_at), f"{owner} charged after its end: {charge.id}"
            method = self.subscriptions[owner]
            if method in MANUAL:
                manual_made.append(invoices)
            else:
                expected = self.model.card_collects(charge.account_id, charge.product)
                assert invoices == expected, (charge.account_id, charge.product, self.months(invoices), expected)
                later = [i for i in self.model.of(charge.account_id, charge.product) if i.id not in invoices]
                newer = [i for i in later if i.period_start > self.model.invoices[invoices[0]].period_start]
                self.reach.card_with_a_newer_month |= bool(newer)
            self.collected[charge.id] = invoices
        assert sorted(manual_made) == sorted(manual_due), (manual_made, manual_due)

    def learn_checkout(self, account: str, product: str, expected: list[str], answer: dict[str, Any]) -> None:
        """A checkout's charge collects what the rules say is owed now (3.5, 3.6), new or answered again."""
        answered = sorted(invoice["id"] for invoice in answer["invoices"])
        assert answered == sorted(expected), (account, product, self.months(answered), self.months(expected))
        for charge, invoices in self.new_charges():
            assert (charge.id, invoices) == (answer["charge_id"], answered), (charge.id, invoices, answer)
            self.collected[charge.id] = invoices

    def months(self, invoice_ids: list[str]) -> list[str]:
        return [str(self.model.invoices[invoice_id].period_start) for invoice_id in invoice_ids]

    def deliver(self, send: Callable[[], object]) -> None:
        send()
        self.sent.append(send)

    def settle(self) -> None:
        """Deliver what the simulator posted, run the jobs, and record what moved at the gateway."""
        held, self.world.webhooks.held = self.world.webhooks.held, []
        # in the order of what they are about, not of the random ids behind the order they came in
        held.sort(key=lambda event: (str(event["payment"]["customer"]), str(event["event"])))
        for event in held:
            self.deliver(lambda event=event: self.world.post_asaas(event))
        self.world.process_stored()
        unexpected = self.new_charges()
        assert unexpected == [], f"charges opened outside a pass or a checkout: {unexpected}"
        self.record_gateway()
        self.model.observe(self.now)

    def record_payment(self, key: str, charge_id: str, amount_cents: int) -> None:
        """A confirmed payment into the model, paying what its charge collects."""
        if key in self.model.payments:
            return
        invoices = [self.model.invoices[invoice_id] for invoice_id in self.invoices_of(charge_id)]
        self.model.confirm(key, charge_id, amount_cents, [invoice.id for invoice in invoices])
        first = invoices[0]
        still_unpaid = [i for i in self.model.of(first.account, first.product) if i.unpaid]
        if not self.model.payments[key].paid:
            later = [i for i in still_unpaid if i.period_start > max(invoice.period_start for invoice in invoices)]
            self.reach.duplicate_beside_an_open_month |= bool(later)
        else:
            self.reach.late_month_paid_alone |= any(invoice.overdue(self.now) for invoice in still_unpaid)

    def record_gateway(self) -> None:
        """Money that moved at the simulator, in the order it moved, into the model."""
        for payment in self.gateway_payments():
            status, payment_id = payment["status"], payment["id"]
            key = f"asaas:{payment_id}"
            if key not in self.model.payments and status not in PAID_AT_GATEWAY:
                continue
            refunds = [refund for refund in payment["refunds"] or [] if refund["status"] == "DONE"]
            refunded = sum(round(float(refund["value"]) * 100) for refund in refunds)
            seen_status, seen_refunded = self.sim_seen.get(payment_id, ("", 0))
            card = payment.get("creditCard")
            if key not in self.model.payments:
                charge_id = payment["externalReference"]
                if card is not None:
                    self.check_card_charge(card["creditCardToken"], self.invoices_of(charge_id))
                self.record_payment(key, charge_id, round(float(payment["value"]) * 100))
            elif status in HELD_AT_GATEWAY and (seen_status in CHARGED_BACK or self.model.payments[key].undone):
                self.model.reinstate(key)  # a chargeback won, or a payment paid again after its cash was undone
                self.reach.reinstated = True
                if card is not None and seen_status in CHARGED_BACK:  # the dispute won: that card was not charged back
                    invoice = self.model.invoices[self.invoices_of(payment["externalReference"])[0]]
                    self.disputed.discard((invoice.account, invoice.product, card["creditCardToken"]))
            if refunded != seen_refunded:
                self.model.refund(key, refunded)
            if status in CHARGED_BACK and seen_status not in CHARGED_BACK:
                self.model.chargeback(key)
                if card is not None:
                    invoice = self.model.invoices[self.invoices_of(payment["externalReference"])[0]]
                    self.disputed.add((invoice.account, invoice.product, card["creditCardToken"]))
            if seen_status == "RECEIVED_IN_CASH" and status not in PAID_AT_GATEWAY:
                self.model.undo(key)
                self.reach.cash_undone = True
            self.sim_seen[payment_id] = (status, refunded)

    def gateway_payments(self) -> list[dict[str, Any]]:
        """The simulator's payments in the order they were made (their ids are random)."""
        payments = list(self.world.sim.state()["payments"])
        payments.sort(key=lambda p: (p["dateCreated"], p["customer"], p["billingType"], p["value"], p["dueDate"]))
        return payments

    def check_card_charge(self, token: str, invoice_ids: list[str]) -> None:
        """Rule 3.3: a card charged back waits for a new one."""
        first = self.model.invoices[invoice_ids[0]]
        account, product = first.account, first.product
        if self.tokens.get((account, product)) != token:
            return  # a card given at a checkout, not the saved one
        assert (account, product, token) not in self.disputed, (
            f"{account} {product}: {token} charged back, charged again"
        )

    # -- after every step

    @invariant()
    def the_books_add_up(self) -> None:
        broken = self.world.runtime.read(broken_invariants)
        assert broken == [], broken
        report = self.world.runtime.read(lambda session: check_books(session, self.now))
        assert report.violations == [], [violation.line() for violation in report.violations]

    @invariant()
    def invoices_are_what_the_model_says(self) -> None:
        """Every invoice's status (open, verifying, paid, refunded) and amounts are the rules' (3.1, 3.3, 3.7)."""
        rows = self.world.runtime.read(lambda session: list(session.scalars(select(Invoice))))
        for row in rows:
            invoice = self.model.invoices[row.id]
            expected = invoice.status(self.now)
            assert row.status == expected, (row.id, row.period_start, row.product, row.status, expected, invoice)
            expected_amounts = (
                invoice.total_cents + invoice.discount_cents,
                invoice.discount_cents,
                invoice.total_cents,
            )
            amounts = (row.subtotal_cents, row.discount_cents, row.total_cents)
            assert amounts == expected_amounts, (row.id, row.kind, row.period_start, amounts, expected_amounts)

    @invariant()
    def nothing_happens_after_an_end(self) -> None:
        """3.10: from a canceled subscription's end until it comes back, no block begins and the régua tells nothing
        of its invoices (issued, reminder, block warning, blocked); a mail answering money the customer or the
        gateway moved then (a payment confirmed, a refund) is not the régua's."""

        def read(session: Any) -> list[tuple[str, str, datetime, str]]:
            blocks = [(b.account_id, b.product, b.started_at, "block") for b in session.scalars(select(Block))]
            mails = session.execute(
                select(Invoice.account_id, Invoice.product, Notification.created_at, Notification.kind)
                .join(Notification, Notification.invoice_id == Invoice.id)
                .where(Notification.kind.in_(DUNNING))
            ).all()
            return blocks + [tuple(mail) for mail in mails]

        self.reach.ended |= any(plan.ended(self.now) for plan in self.plans.values())
        happened = [made for made in self.world.runtime.read(read) if self.plans[(made[0], made[1])].quiet_at(made[2])]
        assert happened == [], happened

    @invariant()
    def access_is_what_the_rules_say(self) -> None:
        self.model.observe(self.now)
        for account in ACCOUNTS:
            answer = self.world.call("GET", f"/api/accounts/{account}/access")["products"]
            for product, given in sorted(answer.items()):
                expected = self.model.access(account, product, self.now)
                local = self.now.astimezone(ZONE).isoformat()
                assert (given["state"], set(given["open_invoices"])) == (expected.state, expected.open_invoices), (
                    account,
                    product,
                    local,
                    given,
                    expected,
                    self.model.of(account, product),
                )
                # what a payment collects now, as the page and the mails ask for it, oldest first (3.5, 3.6, 3.10)
                owed = self.model.owed_now(account, product, self.now)
                assert given["owed_now"] == owed, (account, product, local, given, owed)
                self.reach.blocked |= expected.state == "blocked"
                late = [invoice for invoice in self.model.of(account, product) if invoice.unpaid]
                two_months = product == "mentorship" and expected.state == "blocked" and len(late) > 1
                self.reach.mentorship_late_two_months |= two_months

    # -- reading the test's record

    def charges(self) -> list[Charge]:
        return self.world.runtime.read(
            lambda session: sorted(
                session.scalars(select(Charge)),
                # ids are random: order by what the sequence decides, so a replay picks the same charge
                key=lambda c: (c.created_at, c.account_id, c.product, c.method, c.amount_cents, c.status),
            )
        )

    def invoices_of(self, charge_id: str) -> list[str]:
        """What a charge collects, as the rules said when it was opened (not as billing's rows say now)."""
        return self.collected[charge_id]

    def unpaid(self) -> list[ModelInvoice]:
        unpaid = (i for i in self.model.invoices.values() if i.unpaid)
        return sorted(unpaid, key=lambda i: (i.period_start, i.account, i.product))

    def verifiable(self, charge_id: str) -> bool:
        invoices = [self.model.invoices[i] for i in self.invoices_of(charge_id)]
        return any(i.unpaid for i in invoices)

    def refundable(self, key: str) -> bool:
        """Money a payment still holds that its gateway can send back (or take back): never a receipt in cash."""
        payment = self.model.payments[key]
        if payment.charged_back or payment.undone or payment.refunded_cents >= payment.amount_cents:
            return False
        channel, _, payment_id = key.partition(":")
        return channel != "asaas" or self.sim_seen[payment_id][0] in ("CONFIRMED", "RECEIVED")
