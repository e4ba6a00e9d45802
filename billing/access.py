"""What the product may show and allow, per product: state, alert, block instant, open invoices, what is owed now.

One computed view of an account: `/access` answers it, the payment page shows it, and every email that speaks
of access or of what to pay reads it (billing.schedule, billing.happenings), so none can say what another denies.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from billing.batches import chunks
from billing.blocking import blocking_invoices, is_open_at, owed_now
from billing.calendar import BillingCalendar
from billing.errors import NotFound
from billing.models import UNPAID, Account, Block, Invoice, Subscription
from billing.policy import Policy

Key = tuple[str, str]
"""(account id, product)."""


@dataclass(frozen=True)
class ProductAccess:
    state: str
    """trial, active, grace, verifying, blocked or canceled."""
    alert: str | None
    """None, "payment" (an invoice is open) or "block" (blocked, or the block warning day has come)."""
    block_at: datetime | None
    blocked_since: datetime | None
    open_invoices: list[str]
    owed: tuple[str, ...] = ()
    """What a payment now collects, in period order: rule 3.5 for the platform, 3.6 for a mentorship."""


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
    owed = tuple(invoice.id for invoice in owed_now(unpaid, product, now))
    if block is not None:
        return ProductAccess("blocked", "block", None, block.started_at, open_ids, owed)
    keeping = blocking_invoices(product, unpaid, False, now)
    if keeping:
        since = min(invoice.block_at for invoice in unpaid if invoice.id in keeping)
        return ProductAccess("blocked", "block", None, since, open_ids, owed)
    pending = [invoice for invoice in unpaid if is_open_at(invoice, now)]
    verifying = [invoice for invoice in unpaid if not is_open_at(invoice, now)]
    candidates = [invoice.block_at for invoice in pending] + [
        max(invoice.block_at, invoice.verifying_until or invoice.block_at) for invoice in verifying
    ]
    block_at = min(candidates) if candidates else None
    if verifying:
        return ProductAccess("verifying", "payment", block_at, None, open_ids, owed)
    if pending:
        warning_from = min(
            calendar.start_of_day(invoice.due_date + timedelta(days=policy.block_warning_day - 1))
            for invoice in pending
        )
        alert = "block" if now >= warning_from else "payment"
        return ProductAccess("grace", alert, block_at, None, open_ids, owed)
    if trial_ends_at is not None and now < trial_ends_at:
        return ProductAccess("trial", None, None, None, [])
    return ProductAccess("active", None, None, None, [])


def ended_access(unpaid: list[Invoice], now: datetime) -> ProductAccess:
    """A canceled subscription past its end: no access; what was issued and is unpaid is still owed (3.10)."""
    ids = [invoice.id for invoice in unpaid]
    owed = tuple(invoice.id for invoice in unpaid if is_open_at(invoice, now))
    return ProductAccess("canceled", "payment" if unpaid else None, None, None, ids, owed)


def account_access(
    session: Session, account_id: str, now: datetime, calendar: BillingCalendar, policy: Policy
) -> dict[str, ProductAccess]:
    """Every product of one account, by product name: what `/access`, the payment page and ops show."""
    if session.get(Account, account_id) is None:
        raise NotFound(f"no account {account_id!r}")
    found = access_by_product(session, [account_id], now, calendar, policy)
    return {product: access for (_, product), access in sorted(found.items())}


def access_by_product(
    session: Session, account_ids: Iterable[str], now: datetime, calendar: BillingCalendar, policy: Policy
) -> dict[Key, ProductAccess]:
    """The access of every subscribed product of these accounts at `now`, read a chunk of accounts at a time."""
    found: dict[Key, ProductAccess] = {}
    for chunk in chunks(sorted(set(account_ids))):
        trials = dict(session.execute(select(Account.id, Account.trial_ends_at).where(Account.id.in_(chunk))).all())
        unpaid: dict[Key, list[Invoice]] = defaultdict(list)
        for invoice in session.scalars(
            select(Invoice)
            .where(Invoice.account_id.in_(chunk), Invoice.status.in_(UNPAID))
            .order_by(Invoice.period_start, Invoice.id)
        ):
            unpaid[(invoice.account_id, invoice.product)].append(invoice)
        blocks = {
            (block.account_id, block.product): block
            for block in session.scalars(select(Block).where(Block.account_id.in_(chunk), Block.lifted_at.is_(None)))
        }
        subscriptions = session.execute(
            select(Subscription.account_id, Subscription.product, Subscription.ends_at).where(
                Subscription.account_id.in_(chunk)
            )
        )
        for account_id, product, ends_at in subscriptions:
            key = (account_id, product)
            mine = unpaid.get(key, [])
            if ends_at is not None and ends_at <= now:
                found[key] = ended_access(mine, now)
            else:
                found[key] = product_access(
                    product, mine, blocks.get(key), trials.get(account_id), now, calendar, policy
                )
    return found
