"""The régua's email schedule as pure functions of an invoice and an instant, and what a due email carries."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import Connection, func, select
from sqlalchemy.orm import Session

from billing.blocking import is_open_at, owed_now
from billing.calendar import BillingCalendar
from billing.dunning import NotificationKind, Step, invoice_steps, regua_day_start
from billing.models import (
    UNPAID,
    Account,
    Block,
    Invoice,
)
from billing.plan_changes import ended_products
from billing.policy import Policy

K = NotificationKind
LOOKBACK = timedelta(days=3)
"""How far back a pass looks for happenings to tell: keys make repeats harmless, the window keeps it cheap."""
FAILED_CHARGE_HORIZON = timedelta(days=35)
"""Failed charges are found by creation first (indexed columns only), then by when they failed."""

SCHEDULED_KINDS = frozenset({K.INVOICE_ISSUED, K.PAYMENT_REMINDER, K.BLOCK_WARNING, K.TRIAL_ENDED})
PAYMENT_DUE_KINDS = SCHEDULED_KINDS | {K.PAYMENT_FAILED, K.ACCOUNT_BLOCKED}
"""Kinds that ask for money, and so carry the PIX code and the boleto line when there are any."""
PAYMENT_CODE_KEYS = ("pix_code", "boleto_line", "boleto_url")
NOT_THE_CUSTOMERS = frozenset({"gateway_rejected"})
"""Charge failures that are regua's business with its gateway, not a payment the customer tried."""
CHUNK = 900

T = TypeVar("T")


# The schedule, as pure functions of an invoice and an instant.


def email_steps(
    payment_method: str, due_date: date, policy: Policy, calendar: BillingCalendar, *, after_trial: bool = False
) -> list[Step]:
    """The emails of an invoice's régua in day order; the first invoice after a trial opens with trial_ended.

    Auto-debit customers have no `invoice_issued` (they hear the charge result), but a trial's end
    is news to everyone.
    """
    steps = [step for step in invoice_steps(payment_method, due_date, policy, calendar) if step.action == "email"]
    if after_trial:
        steps = [step for step in steps if step.kind != K.INVOICE_ISSUED]
        steps.append(Step("email", K.TRIAL_ENDED, 1, regua_day_start(due_date, 1, calendar)))
    return sorted(steps, key=lambda step: step.day)


def latest_email_step(steps: Sequence[Step], now: datetime) -> Step | None:
    """The one step still true at `now`: the latest whose day has come (None before the first)."""
    come = [step for step in steps if step.at <= now]
    return max(come, key=lambda step: step.day) if come else None


def dedupe_key(subject_id: str, kind: str, step: str) -> str:
    return f"{subject_id}:{kind}:{step}"


def invoice_line(invoice: Invoice) -> dict[str, Any]:
    """An invoice as the email shows it, JSON-ready."""
    return {
        "invoice_id": invoice.id,
        "product": invoice.product,
        "period_start": invoice.period_start.isoformat(),
        "period_end": invoice.period_end.isoformat(),
        "due_date": invoice.due_date.isoformat(),
        "subtotal_cents": invoice.subtotal_cents,
        "discount_cents": invoice.discount_cents,
        "total_cents": invoice.total_cents,
    }


@dataclass(frozen=True)
class DueNotification:
    """An email that is due at `now`, before it is recorded."""

    key: str
    account_id: str
    kind: str
    step: str
    invoices: tuple[Invoice, ...]
    facts: dict[str, Any]
    """The kind's own context entries (amounts, dates, method), on top of the invoices and recipients."""


def scheduled_notifications(
    session: Session, now: datetime, calendar: BillingCalendar, policy: Policy
) -> list[DueNotification]:
    """Per open invoice not yet blocking, the latest email step whose day has come."""
    invoices = [
        invoice
        for invoice in session.scalars(
            select(Invoice).where(Invoice.status.in_(UNPAID), Invoice.block_at > now).order_by(Invoice.id)
        )
        if is_open_at(invoice, now)
    ]
    ended = ended_products(session, None, now)
    invoices = [invoice for invoice in invoices if (invoice.account_id, invoice.product) not in ended]
    trials = trial_invoices(session, invoices, calendar)
    blocked = blocks_in_force(session, {invoice.account_id for invoice in invoices})
    due = []
    for invoice in invoices:
        trial_ended_on = trials.get(invoice.id)
        steps = email_steps(
            invoice.payment_method, invoice.due_date, policy, calendar, after_trial=trial_ended_on is not None
        )
        step = latest_email_step(steps, now)
        if step is None or step.kind not in SCHEDULED_KINDS:
            continue
        block = blocked.get((invoice.account_id, invoice.product))
        if block is not None and step.kind in (K.PAYMENT_REMINDER, K.BLOCK_WARNING):
            # Blocked already for an older month: "pay by day 6 to keep access" would be false. The customer is
            # told their real state instead: blocked since when, and what to pay to be unblocked (3.5, 3.6).
            due.append(_still_blocked(session, invoice, step.key, block, now, calendar))
            continue
        facts: dict[str, Any] = {
            "payment_method": invoice.payment_method,
            "block_on": calendar.local_date(invoice.block_at).isoformat(),
        }
        if step.kind == K.TRIAL_ENDED and trial_ended_on is not None:
            facts["trial_ended_on"] = trial_ended_on.isoformat()
        due.append(
            DueNotification(
                dedupe_key(invoice.id, step.kind, step.key), invoice.account_id, step.kind, step.key, (invoice,), facts
            )
        )
    return due


def blocks_in_force(session: Session, account_ids: set[str]) -> dict[tuple[str, str], Block]:
    """The blocks in force of these accounts, by account and product."""
    found: dict[tuple[str, str], Block] = {}
    for chunk in chunks(sorted(account_ids)):
        for block in session.scalars(select(Block).where(Block.account_id.in_(chunk), Block.lifted_at.is_(None))):
            found[(block.account_id, block.product)] = block
    return found


def _still_blocked(
    session: Session, invoice: Invoice, step_key: str, block: Block, now: datetime, calendar: BillingCalendar
) -> DueNotification:
    """An `account_blocked` reminder, on the day a newer invoice's reminder or warning would go out: the invoices
    that keep the block (for the mentorship, every open one, rule 3.6), keyed by the newer invoice and its day."""
    unpaid = list(
        session.scalars(
            select(Invoice)
            .where(Invoice.account_id == invoice.account_id, Invoice.product == invoice.product)
            .where(Invoice.status.in_(UNPAID))
            .order_by(Invoice.period_start)
        )
    )
    keeping = owed_now(unpaid, invoice.product, now)  # what the payment page and the checkout ask for
    facts = {
        "payment_method": (keeping or [invoice])[0].payment_method,
        "blocked_since": calendar.local_date(block.started_at).isoformat(),
    }
    return DueNotification(
        dedupe_key(invoice.id, K.ACCOUNT_BLOCKED, step_key),
        invoice.account_id,
        K.ACCOUNT_BLOCKED,
        block.id,
        tuple(keeping or [invoice]),
        facts,
    )


def trial_invoices(session: Session, invoices: Sequence[Invoice], calendar: BillingCalendar) -> dict[str, date]:
    """The first invoice after a trial, by id, with the day the trial ended: it begins that day.

    The accounts and subscriptions are read CHUNK ids at a time: day 1 has an open invoice for every
    account, more than a statement's 65,535 parameters at 100,000 accounts.
    """
    account_ids = sorted({invoice.account_id for invoice in invoices})
    if not account_ids:
        return {}
    trial_ends = {
        account_id: calendar.local_date(ends_at)
        for chunk in chunks(account_ids)
        for account_id, ends_at in session.execute(
            select(Account.id, Account.trial_ends_at).where(Account.id.in_(chunk), Account.trial_ends_at.is_not(None))
        )
        if ends_at is not None
    }
    candidates = [invoice for invoice in invoices if trial_ends.get(invoice.account_id) == invoice.period_start]
    if not candidates:
        return {}
    firsts: dict[str, date] = {}
    for chunk in chunks(sorted({invoice.subscription_id for invoice in candidates})):
        firsts.update(
            dict(
                session.execute(
                    select(Invoice.subscription_id, func.min(Invoice.period_start))
                    .where(Invoice.subscription_id.in_(chunk))
                    .group_by(Invoice.subscription_id)
                ).all()
            )
        )
    return {
        invoice.id: invoice.period_start
        for invoice in candidates
        if firsts.get(invoice.subscription_id) == invoice.period_start
    }


def active_blocks(executor: Session | Connection, account_ids: set[str]) -> set[tuple[str, str]]:
    if not account_ids:
        return set()
    return {
        (account_id, product)
        for account_id, product in executor.execute(
            select(Block.account_id, Block.product).where(
                Block.account_id.in_(sorted(account_ids)), Block.lifted_at.is_(None)
            )
        )
    }


def invoices_by_id(session: Session, ids: Iterable[str]) -> dict[str, Invoice]:
    found: dict[str, Invoice] = {}
    for chunk in chunks(sorted(set(ids))):
        found.update({invoice.id: invoice for invoice in session.scalars(select(Invoice).where(Invoice.id.in_(chunk)))})
    return found


def chunks(items: Sequence[T]) -> Iterator[Sequence[T]]:
    for offset in range(0, len(items), CHUNK):
        yield items[offset : offset + CHUNK]
