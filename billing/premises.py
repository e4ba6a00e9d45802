"""A recorded notification's premise, checked again when its turn to be sent comes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, func, select
from sqlalchemy.orm import Session, aliased

from billing.batches import chunks
from billing.blocking import is_open_at
from billing.calendar import BillingCalendar
from billing.models import (
    Block,
    Invoice,
    InvoiceStatus,
)
from billing.policy import Policy
from billing.schedule import K, email_steps, latest_email_step

# The premise, checked again when a notification's turn to be sent comes (one read per kind, no ORM:
# it runs once per email sent).

_ACTIVE = aliased(Block)
_INVOICE_FACTS = select(
    Invoice.id,
    Invoice.status,
    Invoice.block_at,
    Invoice.verifying_until,
    Invoice.payment_method,
    Invoice.due_date,
    select(func.count())
    .where(_ACTIVE.account_id == Invoice.account_id, _ACTIVE.product == Invoice.product, _ACTIVE.lifted_at.is_(None))
    .scalar_subquery()
    .label("blocks_in_force"),
).where(Invoice.id.in_(bindparam("ids", expanding=True)))
"""An invoice's state, and how many blocks of its account and product are in force now (an older month's)."""
_KEEP_ACCESS_KINDS = (K.PAYMENT_REMINDER, K.BLOCK_WARNING)
"""Kinds that tell the customer how to keep access: false once the product is blocked, for this month or another."""
_BLOCK_FACTS = select(
    Block.id,
    Block.lifted_at,
    select(func.count())
    .where(_ACTIVE.account_id == Block.account_id, _ACTIVE.product == Block.product, _ACTIVE.lifted_at.is_(None))
    .scalar_subquery()
    .label("active_blocks"),
).where(Block.id.in_(bindparam("ids", expanding=True)))
"""A block's end, and how many blocks of its account and product are in force now."""
_BLOCK_KINDS = (K.ACCOUNT_BLOCKED, K.ACCOUNT_UNBLOCKED)
_ALWAYS_TRUE = (K.PAYMENT_CONFIRMED, K.REFUND_ISSUED, K.SUBSCRIPTION_CHANGED, K.SUBSCRIPTION_CANCELED)


@dataclass(frozen=True)
class Premise:
    """What a recorded notification claims: its kind, its step and the invoices of its context."""

    kind: str
    step: str
    context: dict[str, Any]

    @property
    def invoice_ids(self) -> list[str]:
        return [line["invoice_id"] for line in self.context.get("invoices", [])]


def still_true(
    executor: Session | Connection,
    premises: Sequence[Premise],
    now: datetime,
    calendar: BillingCalendar,
    policy: Policy,
) -> list[bool]:
    """Whether what each notification says is still so at `now` (a reminder for a paid invoice is not).

    Two reads for the lot, whatever their number: the invoices and the blocks they speak of.
    """
    invoice_ids = sorted({i for p in premises if p.kind not in _BLOCK_KINDS + _ALWAYS_TRUE for i in p.invoice_ids})
    block_ids = sorted({p.step for p in premises if p.kind in _BLOCK_KINDS})
    invoices: dict[str, Any] = {}
    blocks: dict[str, Any] = {}
    for chunk in chunks(invoice_ids):
        invoices.update((row.id, row) for row in executor.execute(_INVOICE_FACTS, {"ids": list(chunk)}))
    for chunk in chunks(block_ids):
        blocks.update((row.id, row) for row in executor.execute(_BLOCK_FACTS, {"ids": list(chunk)}))
    return [_holds(premise, invoices, blocks, now, calendar, policy) for premise in premises]


def _holds(
    premise: Premise,
    invoices: dict[str, Any],
    blocks: dict[str, Any],
    now: datetime,
    calendar: BillingCalendar,
    policy: Policy,
) -> bool:
    kind = premise.kind
    if kind in _ALWAYS_TRUE:
        return True
    if kind in _BLOCK_KINDS:
        block = blocks.get(premise.step)
        if block is None:
            return False
        if kind == K.ACCOUNT_BLOCKED:
            return block.lifted_at is None
        return block.lifted_at is not None and block.active_blocks == 0
    ids = premise.invoice_ids
    if not ids or any(invoice_id not in invoices for invoice_id in ids):
        return False
    about = [invoices[invoice_id] for invoice_id in ids]
    if kind == K.VERIFICATION_PENDING:
        return all(
            invoice.status == InvoiceStatus.VERIFYING
            and invoice.verifying_until is not None
            and invoice.verifying_until > now
            for invoice in about
        )
    if not all(is_open_at(invoice, now) for invoice in about):
        return False
    if kind == K.PAYMENT_FAILED:
        return True
    invoice = about[0]
    if now >= invoice.block_at or (kind in _KEEP_ACCESS_KINDS and invoice.blocks_in_force):
        return False
    steps = email_steps(invoice.payment_method, invoice.due_date, policy, calendar, after_trial=kind == K.TRIAL_ENDED)
    latest = latest_email_step(steps, now)
    return latest is not None and (latest.kind, latest.key) == (kind, premise.step)
