"""Blocks per account and product: when one must exist (rules 3.4 to 3.7), applying and lifting them."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from billing.db import insert_ignoring_conflicts
from billing.models import UNPAID, Account, Block, Invoice, InvoiceStatus, Product, new_id
from billing.plan_changes import ended_products


class UnpaidInvoice(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def block_at(self) -> datetime: ...
    @property
    def verifying_until(self) -> datetime | None: ...


def is_open_at(invoice: UnpaidInvoice, now: datetime) -> bool:
    """Open, or verifying past its window: the rules hold at `now`, not only after the next tick."""
    if invoice.status == InvoiceStatus.OPEN:
        return True
    return invoice.status == InvoiceStatus.VERIFYING and (
        invoice.verifying_until is None or invoice.verifying_until <= now
    )


def blocking_invoices(
    product: str, unpaid: Sequence[UnpaidInvoice], currently_blocked: bool, now: datetime
) -> list[str]:
    """The invoices that keep `product` blocked at `now`; empty when it must be (or become) free.

    Platform (3.5): an open invoice past its block instant blocks; paying it is enough.
    Mentorship (3.6): the same starts a block, but once blocked, every open invoice issued so far
    keeps it, overdue or not. Verifying invoices (3.7) never block while their window lasts: they
    hold off or lift a block until the verification expires and they are open again.
    """
    open_invoices = [invoice for invoice in unpaid if is_open_at(invoice, now)]
    overdue = [invoice.id for invoice in open_invoices if invoice.block_at <= now]
    if product == Product.MENTORSHIP and (overdue or currently_blocked):
        return [invoice.id for invoice in open_invoices]
    return overdue


@dataclass
class BlockChanges:
    applied: list[Block] = field(default_factory=list)
    lifted: list[Block] = field(default_factory=list)


def lock_accounts(session: Session, account_ids: Iterable[str]) -> None:
    """Take the account rows' locks, in id order: block decisions on an account are serialized.

    Settling a payment and a tick deciding a block take the same lock first, so a tick can never
    block an account on the strength of an invoice that a concurrent settlement has just paid.
    """
    ids = sorted(set(account_ids))
    if ids:
        session.execute(select(Account.id).where(Account.id.in_(ids)).order_by(Account.id).with_for_update())


def reconcile_blocks(session: Session, account_ids: Sequence[str], now: datetime) -> BlockChanges:
    """Make the blocks of these accounts what the rules say they must be at `now`.

    The caller holds the accounts' locks (see lock_accounts).
    """
    unpaid: dict[tuple[str, str], list[Invoice]] = defaultdict(list)
    for invoice in session.scalars(
        select(Invoice).where(Invoice.account_id.in_(account_ids), Invoice.status.in_(UNPAID))
    ):
        unpaid[(invoice.account_id, invoice.product)].append(invoice)
    active = {
        (block.account_id, block.product): block
        for block in session.scalars(select(Block).where(Block.account_id.in_(account_ids), Block.lifted_at.is_(None)))
    }
    changes = BlockChanges()
    to_apply = []
    ended = ended_products(session, account_ids, now)
    for key in sorted(set(unpaid) | set(active)):
        block = active.get(key)
        keeping = blocking_invoices(key[1], unpaid.get(key, []), block is not None, now)
        if keeping and block is None and key not in ended:  # a subscription that ended blocks nothing more
            to_apply.append(
                {
                    "id": new_id("blk"),
                    "account_id": key[0],
                    "product": key[1],
                    "invoice_ids": keeping,
                    "started_at": now,
                }
            )
        elif not keeping and block is not None:
            verifying = any(not is_open_at(invoice, now) for invoice in unpaid.get(key, []))
            block.lifted_at = now
            block.lift_reason = "verifying" if verifying else "paid"
            changes.lifted.append(block)
    inserted = insert_ignoring_conflicts(
        session,
        Block,
        to_apply,
        index_elements=["account_id", "product"],
        index_where=text("lifted_at IS NULL"),
    )
    if inserted:
        changes.applied = list(session.scalars(select(Block).where(Block.id.in_(inserted))))
    session.flush()
    return changes


def accounts_to_reconcile(session: Session, now: datetime) -> list[str]:
    """Accounts whose blocks may be wrong at `now`: an overdue open invoice, or a block in force."""
    overdue = select(Invoice.account_id).where(Invoice.status == InvoiceStatus.OPEN, Invoice.block_at <= now)
    blocked = select(Block.account_id).where(Block.lifted_at.is_(None))
    return sorted(set(session.scalars(overdue.union(blocked))))


def owed_now(invoices: Sequence[Invoice], product: str, now: datetime) -> list[Invoice]:
    """What a checkout collects: rule 3.5 for the platform, rule 3.6 for a mentorship.

    Overdue means past its tolerance (the invoices that block): a platform pays those and the month
    still in its tolerance follows its own cycle; with none overdue, every open invoice.
    """
    unpaid = [invoice for invoice in invoices if is_open_at(invoice, now)]
    if product == "mentorship":
        return unpaid
    overdue = [invoice for invoice in unpaid if invoice.block_at <= now]
    return overdue or unpaid
