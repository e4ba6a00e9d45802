"""The régua's email schedule as pure functions of an invoice and an instant, and what a due email carries."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from billing.access import ProductAccess, access_by_product
from billing.batches import chunks
from billing.blocking import is_open_at
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
    """Per open invoice not yet blocking, the latest email step whose day has come, said as the account's access
    (billing.access, what `/access` and the payment page show) has it at `now`."""
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
    blocked = _blocked_products(session, {invoice.account_id for invoice in invoices}, now, calendar, policy)
    due = []
    for invoice in invoices:
        trial_ended_on = trials.get(invoice.id)
        steps = email_steps(
            invoice.payment_method, invoice.due_date, policy, calendar, after_trial=trial_ended_on is not None
        )
        step = latest_email_step(steps, now)
        if step is None or step.kind not in SCHEDULED_KINDS:
            continue
        key = (invoice.account_id, invoice.product)
        if key in blocked and step.kind in (K.PAYMENT_REMINDER, K.BLOCK_WARNING):
            # Blocked already for an older month: "pay by day 6 to keep access" would be false. The customer is
            # told their real state instead: blocked since when, and what to pay to be unblocked (3.5, 3.6). Blocked
            # by the rules before a pass applied the block, or by a block applied since this step's day began, nothing:
            # the block's own mail tells it (one mail, not two saying the same thing).
            access, block = blocked[key]
            if block is not None and block.started_at < step.at:
                due.append(_still_blocked(session, invoice, step.key, access, block, calendar))
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


def _blocked_products(
    session: Session, account_ids: set[str], now: datetime, calendar: BillingCalendar, policy: Policy
) -> dict[tuple[str, str], tuple[ProductAccess, Block | None]]:
    """The products the account view says are blocked at `now`, among these accounts, with their block in force.

    Only accounts with a block in force or an overdue invoice can be blocked: they alone are read in full (on day 1,
    every account has an open invoice and nearly none of them is blocked).
    """
    candidates: set[str] = set()
    for chunk in chunks(sorted(account_ids)):
        blocked = select(Block.account_id).where(Block.account_id.in_(chunk), Block.lifted_at.is_(None))
        overdue = select(Invoice.account_id).where(
            Invoice.account_id.in_(chunk), Invoice.status.in_(UNPAID), Invoice.block_at <= now
        )
        candidates.update(session.scalars(blocked.union(overdue)))
    blocks = blocks_in_force(session, candidates)
    return {
        key: (access, blocks.get(key))
        for key, access in access_by_product(session, candidates, now, calendar, policy).items()
        if access.state == "blocked"
    }


def blocks_in_force(session: Session, account_ids: set[str]) -> dict[tuple[str, str], Block]:
    """The blocks in force of these accounts, by account and product."""
    found: dict[tuple[str, str], Block] = {}
    for chunk in chunks(sorted(account_ids)):
        for block in session.scalars(select(Block).where(Block.account_id.in_(chunk), Block.lifted_at.is_(None))):
            found[(block.account_id, block.product)] = block
    return found


def _still_blocked(
    session: Session, invoice: Invoice, step_key: str, access: ProductAccess, block: Block, calendar: BillingCalendar
) -> DueNotification:
    """An `account_blocked` reminder, on the day a newer invoice's reminder or warning would go out: what the
    account view says a payment collects now (for the mentorship, every open invoice, rule 3.6), keyed by the
    newer invoice and its day."""
    owed = invoices_by_id(session, access.owed)
    keeping = [owed[invoice_id] for invoice_id in access.owed if invoice_id in owed] or [invoice]
    facts = {
        "payment_method": keeping[0].payment_method,
        "blocked_since": calendar.local_date(access.blocked_since or block.started_at).isoformat(),
    }
    return DueNotification(
        dedupe_key(invoice.id, K.ACCOUNT_BLOCKED, step_key),
        invoice.account_id,
        K.ACCOUNT_BLOCKED,
        block.id,
        tuple(keeping),
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


def active_blocks(session: Session, account_ids: set[str]) -> set[tuple[str, str]]:
    """The (account, product) pairs of these accounts with a block in force."""
    return set(blocks_in_force(session, account_ids))


def invoices_by_id(session: Session, ids: Iterable[str]) -> dict[str, Invoice]:
    found: dict[str, Invoice] = {}
    for chunk in chunks(sorted(set(ids))):
        found.update({invoice.id: invoice for invoice in session.scalars(select(Invoice).where(Invoice.id.in_(chunk)))})
    return found
