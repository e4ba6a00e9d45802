"""What the product may show and allow, per product: state, alert, block instant, open invoices."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from billing.accounts import get_account
from billing.blocking import blocking_invoices, is_open_at
from billing.calendar import BillingCalendar
from billing.models import UNPAID, Block, Invoice, Subscription
from billing.policy import Policy


@dataclass(frozen=True)
class ProductAccess:
    state: str
    """trial, active, grace, verifying, blocked or canceled."""
    alert: str | None
    """None, "payment" (an invoice is open) or "block" (blocked, or the block warning day has come)."""
    block_at: datetime | None
    blocked_since: datetime | None
    open_invoices: list[str]


def product_access(
    product: str,
    unpaid: list[Invoice],
    block: Block | None,
    trial_ends_at: datetime | None,
    now: datetime,
    calendar: BillingCalendar,
    policy: Policy,
) -> ProductAccess:
    """The truth at `now` by the rules, not only by the last tick: login is refused from 00:00 of day 7.

    A block in force is honoured as it is: only a payment or a verification lifts one, and both
    reconcile the blocks in their own transaction.
    """
    open_ids = [invoice.id for invoice in unpaid]
    if block is not None:
        return ProductAccess("blocked", "block", None, block.started_at, open_ids)
    keeping = blocking_invoices(product, unpaid, False, now)
    if keeping:
        since = min(invoice.block_at for invoice in unpaid if invoice.id in keeping)
        return ProductAccess("blocked", "block", None, since, open_ids)
    pending = [invoice for invoice in unpaid if is_open_at(invoice, now)]
    verifying = [invoice for invoice in unpaid if not is_open_at(invoice, now)]
    candidates = [invoice.block_at for invoice in pending] + [
        max(invoice.block_at, invoice.verifying_until or invoice.block_at) for invoice in verifying
    ]
    block_at = min(candidates) if candidates else None
    if verifying:
        return ProductAccess("verifying", "payment", block_at, None, open_ids)
    if pending:
        warning_from = min(
            calendar.start_of_day(invoice.due_date + timedelta(days=policy.block_warning_day - 1))
            for invoice in pending
        )
        alert = "block" if now >= warning_from else "payment"
        return ProductAccess("grace", alert, block_at, None, open_ids)
    if trial_ends_at is not None and now < trial_ends_at:
        return ProductAccess("trial", None, None, None, [])
    return ProductAccess("active", None, None, None, [])


def ended_access(unpaid: list[Invoice]) -> ProductAccess:
    """A canceled subscription past its end: no access; what was issued and is unpaid is still owed (3.10)."""
    return ProductAccess("canceled", "payment" if unpaid else None, None, None, [invoice.id for invoice in unpaid])


def account_access(
    session: Session, account_id: str, now: datetime, calendar: BillingCalendar, policy: Policy
) -> dict[str, ProductAccess]:
    account = get_account(session, account_id)
    subscriptions = session.scalars(
        select(Subscription).where(Subscription.account_id == account.id).order_by(Subscription.product)
    ).all()
    products = [subscription.product for subscription in subscriptions]
    ended = {
        subscription.product for subscription in subscriptions if subscription.ends_at and subscription.ends_at <= now
    }
    unpaid = session.scalars(
        select(Invoice)
        .where(Invoice.account_id == account.id, Invoice.status.in_(UNPAID))
        .order_by(Invoice.period_start)
    ).all()
    blocks = {
        block.product: block
        for block in session.scalars(select(Block).where(Block.account_id == account.id, Block.lifted_at.is_(None)))
    }
    return {
        product: ended_access([invoice for invoice in unpaid if invoice.product == product])
        if product in ended
        else product_access(
            product,
            [invoice for invoice in unpaid if invoice.product == product],
            blocks.get(product),
            account.trial_ends_at,
            now,
            calendar,
            policy,
        )
        for product in products
    }
