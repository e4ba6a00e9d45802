"""Planning charges: the day-1 and retry auto-debits (oldest month first), and the PIX or boleto charge of
every issued manual invoice.

The planner is level-triggered: at `now`, the oldest unpaid `card_auto_debit` invoice of an account's
product whose attempt day has come and that has no attempt for that step gets one pending charge, keyed
`auto:<invoice id>:day<N>`; a card token the invoice was never tried with is charged at once, keyed
`auto:<invoice id>:card-<digest>`. A card that was declined hard or charged back is never charged
automatically again. Every issued `boleto` or `pix` invoice without a charge gets its PIX or boleto
charge, keyed `manual:<invoice id>` (billing.charging.manual_plan). The unique keys make concurrent passes create
each once.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import lru_cache
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from billing.calendar import BillingCalendar
from billing.charging.inserts import insert_charges
from billing.db import BULK, refresh_statistics
from billing.dunning import attempt_days, regua_day_start
from billing.models import (
    UNPAID,
    Charge,
    ChargeAttempt,
    ChargeInvoice,
    ChargeSource,
    ChargeStatus,
    DeclineClass,
    Invoice,
    InvoiceStatus,
    Payment,
    PaymentMethod,
    PaymentStatus,
    Subscription,
    new_charge_id,
)
from billing.plan_changes import ended_in_range
from billing.policy import Policy


def auto_debit_key(invoice_id: str, step: str) -> str:
    """`auto:<invoice>:day1` or `auto:<invoice>:card-<digest>`: one key per attempt (a job run twice charges once)."""
    return f"auto:{invoice_id}:{step}"


def card_ref(card_token: str | None) -> str | None:
    """A digest that tells cards apart without keeping the token next to the attempt."""
    if not card_token:
        return None
    return hashlib.sha256(card_token.encode()).hexdigest()[:16]


def day_step(day: int) -> str:
    return f"day{day}"


def new_card_step(card: str) -> str:
    return f"card-{card}"


@dataclass(frozen=True)
class Attempt:
    """A charge already made for an invoice, as the planner sees it."""

    step: int | None
    """The régua day of an auto-debit attempt; None for any other charge (a checkout, a new card)."""
    status: str
    hard_decline: bool = False
    card_ref: str | None = None
    source: str = ChargeSource.AUTO_DEBIT.value
    created_at: datetime | None = None
    charge_id: str | None = None

    def holds(self, now: datetime) -> bool:
        """Whether this charge keeps the next auto-debit attempt from starting: an attempt of regua's still in
        flight, or a payment the customer opened (on the payment page, by the product's checkout) less than
        `CUSTOMER_HOLD` ago. One left open longer is superseded by the attempt (canceled at the gateway first)."""
        if self.status != ChargeStatus.PENDING:
            return False
        if self.source == ChargeSource.AUTO_DEBIT or self.created_at is None:
            return True
        return now - self.created_at < CUSTOMER_HOLD


PAGE = 5000
"""Accounts planned per page (invoices, for PIX and boleto): what they need is read, and their charges written,
together."""
CUSTOMER_HOLD = timedelta(hours=1)
"""How long a payment the customer opened and left pending keeps a due auto-debit attempt waiting."""


def due_attempt(
    due_date: date,
    period_end: date,
    now: datetime,
    calendar: BillingCalendar,
    policy: Policy,
    attempts: Sequence[Attempt],
    current_card: str | None,
    *,
    dead_cards: frozenset[str] = frozenset(),
) -> str | None:
    """The attempt to make now for the oldest open invoice of a product (see the module docstring), or None.

    Only the latest attempt day reached counts, so a pass after a gap makes one attempt, not a burst.
    Nothing while another charge holds it (see `Attempt.holds`), once this step was tried, or with a card
    declined hard or charged back. A card the invoice was never tried with (the account gave a new one) is charged now,
    retry day or not. Catching up on attempt days ends with the billing period (or the last attempt
    day, for a short pro-rata period).
    """
    if current_card is None or current_card in dead_cards:
        return None
    if any(attempt.holds(now) for attempt in attempts):
        return None
    if any(attempt.hard_decline and attempt.card_ref in (None, current_card) for attempt in attempts):
        return None
    tried_cards = {attempt.card_ref for attempt in attempts if attempt.card_ref is not None}
    if tried_cards and current_card not in tried_cards:
        return new_card_step(current_card)
    days = attempt_days(policy)
    reached = [day for day, start in zip(days, _attempt_starts(due_date, days, calendar), strict=True) if start <= now]
    if not reached:
        return None
    if calendar.local_date(now) > max(period_end, due_date + timedelta(days=days[-1] - 1)):
        return None
    step = reached[-1]
    if any(attempt.step == step for attempt in attempts):
        return None
    return day_step(step)


@lru_cache(maxsize=512)
def _attempt_starts(due_date: date, days: tuple[int, ...], calendar: BillingCalendar) -> tuple[datetime, ...]:
    """00:00 of each attempt day (a day-1 pass asks this for the same due date many thousands of times)."""
    return tuple(regua_day_start(due_date, day, calendar) for day in days)


def dead_cards(session: Session, account_ids: Sequence[str]) -> dict[str, frozenset[str]]:
    """Per account, the cards never to be charged automatically again: declined hard, or charged back."""
    if not account_ids:
        return {}
    found: dict[str, set[str]] = defaultdict(set)
    hard = (
        select(Charge.account_id, ChargeAttempt.card_ref)
        .join(ChargeAttempt, ChargeAttempt.charge_id == Charge.id)
        .where(ChargeAttempt.decline_class == DeclineClass.HARD.value, ChargeAttempt.card_ref.is_not(None))
    )
    charged_back = (
        select(Charge.account_id, Charge.card_ref)
        .join(Payment, Payment.charge_id == Charge.id)
        .where(Payment.status == PaymentStatus.CHARGEBACK.value, Charge.card_ref.is_not(None))
    )
    wanted = set(account_ids)
    for query in (hard, charged_back):  # few rows in all: read whole, not account by account
        for account_id, card in session.execute(query):
            if card is not None and account_id in wanted:
                found[account_id].add(card)
    return {account_id: frozenset(cards) for account_id, cards in found.items()}


def plan_auto_debits(
    session: Session,
    now: datetime,
    calendar: BillingCalendar,
    policy: Policy,
    *,
    on_batch: Callable[[list[str]], None] | None = None,
) -> list[str]:
    """Open the auto-debit charges due at `now`; returns the ids this pass created (a racing pass's are not).

    Charges are written in batches; `on_batch`, if given, is called after each with its new ids (to
    commit them and queue their jobs while the next batch is written).
    """
    today = calendar.local_date(now)
    due: tuple[Any, ...] = (
        Invoice.payment_method == PaymentMethod.CARD_AUTO_DEBIT.value,
        Invoice.status == InvoiceStatus.OPEN.value,
        Invoice.due_date <= today,
        Invoice.total_cents > 0,
    )
    held = (
        select(ChargeInvoice.invoice_id)
        .join(Charge, Charge.id == ChargeInvoice.charge_id)
        .where(
            ChargeInvoice.invoice_id == Invoice.id,
            Charge.status == ChargeStatus.PENDING.value,
            Charge.source == ChargeSource.AUTO_DEBIT.value,
        )
        .exists()
    )
    due = (*due, ~held)  # an attempt in flight holds its invoice (Attempt.holds): not even read
    created: list[str] = []
    after = ""
    while True:  # PAGE accounts at a time: day 1 at a million subscriptions never sits in memory at once
        last = session.scalar(
            select(func.max(Invoice.account_id)).where(
                Invoice.account_id.in_(
                    select(Invoice.account_id)
                    .where(*due, Invoice.account_id > after)
                    .distinct()
                    .order_by(Invoice.account_id)
                    .limit(PAGE)
                    .scalar_subquery()
                )
            )
        )
        if last is None:
            return created
        page = _plan_auto_debits_of(session, after, last, due, now, calendar, policy, on_batch)
        if len(page) >= BULK and len(created) < BULK:  # the next pages read the charges this one wrote
            refresh_statistics(session, "charges", "charge_invoices")
        created += page
        after = last


def _plan_auto_debits_of(
    session: Session,
    after: str,
    last: str,
    due: tuple[Any, ...],
    now: datetime,
    calendar: BillingCalendar,
    policy: Policy,
    on_batch: Callable[[list[str]], None] | None,
) -> list[str]:
    """The auto-debits due at `now` of the accounts whose ids sort after `after`, up to `last` (ranges, not lists of
    ids: a statement with thousands of parameters costs more to build and parse than its rows cost to read)."""
    due = (*due, Invoice.account_id > after, Invoice.account_id <= last)
    candidates = session.execute(
        select(
            Invoice.id,
            Invoice.account_id,
            Invoice.product,
            Invoice.due_date,
            Invoice.period_start,
            Invoice.period_end,
            Invoice.total_cents,
            Subscription.card_token,
        )
        .join(Subscription, Subscription.id == Invoice.subscription_id)
        .where(*due)
    ).all()
    accounts = sorted({row.account_id for row in candidates})
    oldest = _oldest_unpaid(session, after, last)
    ended = ended_in_range(session, after, last, now)
    candidates = [
        row
        for row in candidates
        if oldest.get((row.account_id, row.product)) == row.period_start and (row.account_id, row.product) not in ended
    ]
    attempts = _attempts(session, due)
    dead = dead_cards(session, accounts)
    drafts: list[dict[str, Any]] = []
    superseded: list[tuple[str, str]] = []
    for row in candidates:
        current = card_ref(row.card_token)
        step = due_attempt(
            row.due_date,
            row.period_end,
            now,
            calendar,
            policy,
            attempts.get(row.id, ()),
            current,
            dead_cards=dead.get(row.account_id, frozenset()),
        )
        if step is not None:
            stale = [a.charge_id for a in attempts.get(row.id, ()) if a.status == ChargeStatus.PENDING and a.charge_id]
            superseded += [(charge_id, row.id) for charge_id in stale]
            drafts.append(
                {
                    "id": new_charge_id(),
                    "account_id": row.account_id,
                    "product": row.product,
                    "method": "card",
                    "amount_cents": row.total_cents,
                    "installments": 1,
                    "status": ChargeStatus.PENDING.value,
                    "idempotency_key": auto_debit_key(row.id, step),
                    "gateway": "asaas",
                    "source": ChargeSource.AUTO_DEBIT.value,
                    "regua_day": int(step[3:]) if step.startswith("day") else None,
                    "card_ref": current,
                    "created_at": now,
                    "invoice_id": row.id,
                }
            )
    _supersede(session, superseded, {draft["invoice_id"]: draft["id"] for draft in drafts})
    return insert_charges(session, drafts, on_batch)


def _supersede(session: Session, stale: list[tuple[str, str]], attempt_of: dict[str, str]) -> None:
    """The customer's payments left open past `CUSTOMER_HOLD`, superseded by the attempt due for their invoice:
    canceled here and owed a cancel at the gateway (paid meanwhile, it arrives as a duplicate, owed back)."""
    for charge_id, invoice_id in stale:
        charge = session.get(Charge, charge_id, with_for_update=True)
        if charge is not None and charge.status == ChargeStatus.PENDING:
            charge.status, charge.canceled_reason = ChargeStatus.CANCELED.value, "auto_debit_retry"
            charge.gateway_cancel_owed, charge.superseded_by = True, attempt_of[invoice_id]


def _oldest_unpaid(session: Session, after: str, last: str) -> dict[tuple[str, str], date]:
    """Per account and product, the period start of its oldest unpaid invoice (open or in verification), for the
    accounts whose ids sort after `after`, up to `last`."""
    in_range = (Invoice.account_id > after, Invoice.account_id <= last)
    return {
        (account_id, product): start
        for account_id, product, start in session.execute(
            select(Invoice.account_id, Invoice.product, func.min(Invoice.period_start))
            .where(Invoice.status.in_(UNPAID), Invoice.total_cents > 0, *in_range)
            .group_by(Invoice.account_id, Invoice.product)
        )
    }


def _attempts(session: Session, due: tuple[Any, ...]) -> dict[str, list[Attempt]]:
    """The charges already made for the invoices `due` selects, in one read."""
    attempts: dict[str, list[Attempt]] = defaultdict(list)
    hard = (
        select(ChargeAttempt.id)
        .where(ChargeAttempt.charge_id == Charge.id, ChargeAttempt.decline_class == DeclineClass.HARD.value)
        .exists()
    )
    for link in session.execute(
        select(
            ChargeInvoice.invoice_id,
            Charge.id,
            Charge.status,
            Charge.regua_day,
            Charge.card_ref,
            Charge.source,
            Charge.created_at,
            hard.label("hard"),
        )
        .join(Charge, Charge.id == ChargeInvoice.charge_id)
        .join(Invoice, Invoice.id == ChargeInvoice.invoice_id)
        .where(*due)
    ):
        attempts[link.invoice_id].append(
            Attempt(link.regua_day, link.status, bool(link.hard), link.card_ref, link.source, link.created_at, link.id)
        )
    return attempts
