"""The books' invariants, checked over the whole database in one snapshot: what `regua check` reports.

Read-only and set-based: each invariant is one query (grouped in the database, not row by row in
Python), so a database of 100,000 accounts is checked in seconds. On PostgreSQL the queries share
one REPEATABLE READ snapshot, so a check running beside live traffic sees one consistent moment.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session, aliased

from billing.blocking import blocking_invoices
from billing.models import (
    OWED_BACK,
    UNPAID,
    Block,
    Charge,
    ChargeInvoice,
    Invoice,
    InvoiceStatus,
    Notification,
    NotificationStatus,
    Payment,
    PaymentMethod,
    PaymentStatus,
    Refund,
    RefundReason,
    RefundStatus,
    TickRun,
)
from billing.money import AUTO_DEBIT_DISCOUNT_PERCENT

LIMIT = 50
"""Violations listed per invariant (the count is always exact)."""


@dataclass(frozen=True)
class Violation:
    name: str
    details: dict[str, Any]

    def line(self) -> str:
        return f"{self.name}: " + " ".join(f"{key}={value}" for key, value in self.details.items())


@dataclass
class Report:
    violations: list[Violation] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    """Per invariant, how many rows break it."""

    @property
    def clean(self) -> bool:
        return not self.violations

    def as_dict(self) -> dict[str, Any]:
        return {
            "clean": self.clean,
            "counts": self.counts,
            "violations": [{"name": v.name, **v.details} for v in self.violations],
        }


Invariant = Callable[[Session, datetime], Iterator[dict[str, Any]]]


def _overlapping_invoices(session: Session, _now: datetime) -> Iterator[dict[str, Any]]:
    """One invoice per subscription and month: no two invoices of a subscription cover the same day."""
    other = aliased(Invoice)
    query = select(Invoice.subscription_id, Invoice.id, other.id.label("other")).join(
        other,
        and_(
            other.subscription_id == Invoice.subscription_id,
            other.id > Invoice.id,
            other.period_start <= Invoice.period_end,
            Invoice.period_start <= other.period_end,
        ),
    )
    for row in session.execute(query):
        yield {"subscription": row.subscription_id, "invoice": row.id, "other": row.other}


def _paid_without_payment(session: Session, _now: datetime) -> Iterator[dict[str, Any]]:
    """Every paid invoice is paid by a recorded, confirmed payment of the charge it names."""
    query = (
        select(Invoice.id, Invoice.payment_id, Payment.status)
        .outerjoin(Payment, Payment.id == Invoice.payment_id)
        .where(
            Invoice.status == InvoiceStatus.PAID,
            or_(
                Payment.id.is_(None),
                Payment.status != PaymentStatus.CONFIRMED,
                Payment.charge_id != Invoice.charge_id,
            ),
        )
    )
    for row in session.execute(query):
        yield {"invoice": row.id, "payment": row.payment_id, "payment_status": row.status}


def _payments_paying_nothing(session: Session, _now: datetime) -> Iterator[dict[str, Any]]:
    """Every captured payment pays invoices, or is owed back (or was given back) whole."""
    paid = select(Invoice.payment_id).where(Invoice.payment_id.is_not(None)).scalar_subquery()
    back = (
        select(func.coalesce(func.sum(Refund.amount_cents), 0))
        .where(Refund.payment_id == Payment.id, Refund.status.in_((RefundStatus.OWED, RefundStatus.DONE)))
        .scalar_subquery()
    )
    confirmed_idle = and_(Payment.status == PaymentStatus.CONFIRMED, Payment.id.not_in(paid))
    unrefunded = and_(Payment.status == PaymentStatus.DUPLICATE, back + Payment.chargeback_cents < Payment.amount_cents)
    query = select(Payment.id, Payment.status, Payment.amount_cents, back.label("back")).where(
        or_(confirmed_idle, unrefunded)
    )
    for row in session.execute(query):
        yield {"payment": row.id, "status": row.status, "amount_cents": row.amount_cents, "owed_back": row.back}


def _balances(session: Session, _now: datetime) -> Iterator[dict[str, Any]]:
    """Per account, to the centavo: money in less money back equals what paid invoices keep plus refunds owed.

    money in: captured payments; money back: refunds made and chargebacks. A payment that still pays
    its invoices may have given part back at the gateway (a partial refund, a disputed installment):
    that part is what its invoices no longer keep.
    """
    totals: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    sums = (
        ("in", select(Payment.account_id, func.sum(Payment.amount_cents)).group_by(Payment.account_id)),
        ("chargebacks", select(Payment.account_id, func.sum(Payment.chargeback_cents)).group_by(Payment.account_id)),
        (
            "refunds_made",
            select(Refund.account_id, func.sum(Refund.amount_cents))
            .where(Refund.status == RefundStatus.DONE)
            .group_by(Refund.account_id),
        ),
        (
            "refunds_owed",
            select(Refund.account_id, func.sum(Refund.amount_cents))
            .where(Refund.status == RefundStatus.OWED)
            .group_by(Refund.account_id),
        ),
        (
            "paid_invoices",
            select(Invoice.account_id, func.sum(Invoice.total_cents))
            .where(Invoice.status == InvoiceStatus.PAID)
            .group_by(Invoice.account_id),
        ),
        (
            "given_back_while_paid",
            select(Refund.account_id, func.sum(Refund.amount_cents))
            .join(Payment, Payment.id == Refund.payment_id)
            .where(
                Refund.status == RefundStatus.DONE,
                Refund.reason.not_in(OWED_BACK),
                Payment.status == PaymentStatus.CONFIRMED,
            )
            .group_by(Refund.account_id),
        ),
    )
    for name, query in sums:
        for account_id, amount in session.execute(query):
            totals[account_id][name] = int(amount or 0)
    for account_id, t in sorted(totals.items()):
        kept = t["in"] - t["refunds_made"] - t["chargebacks"]
        owed = t["paid_invoices"] - t["given_back_while_paid"] + t["refunds_owed"]
        if kept != owed:
            yield {"account": account_id, "money_kept_cents": kept, "books_say_cents": owed, **dict(t)}


def _wrong_blocks(session: Session, now: datetime) -> Iterator[dict[str, Any]]:
    """No block in force that the rules would lift; no overdue account left unblocked after the last tick."""
    last_tick = session.scalar(select(func.max(TickRun.now)))
    unpaid: dict[tuple[str, str], list[Invoice]] = defaultdict(list)
    for invoice in session.scalars(select(Invoice).where(Invoice.status.in_(UNPAID))):
        unpaid[(invoice.account_id, invoice.product)].append(invoice)
    active = {
        (block.account_id, block.product): block
        for block in session.scalars(select(Block).where(Block.lifted_at.is_(None)))
    }
    for key, block in sorted(active.items()):
        if not blocking_invoices(key[1], unpaid.get(key, []), True, now):
            yield {"account": key[0], "product": key[1], "block": block.id, "problem": "nothing keeps it blocked"}
    if last_tick is None:
        return
    for key, invoices in sorted(unpaid.items()):
        if key not in active and blocking_invoices(key[1], invoices, False, last_tick):
            late = sorted(invoice.id for invoice in invoices if invoice.block_at <= last_tick)
            yield {"account": key[0], "product": key[1], "invoices": ",".join(late), "problem": "overdue, not blocked"}


def _wrong_discounts(session: Session, _now: datetime) -> Iterator[dict[str, Any]]:
    """Auto-debit invoices take 5% off the subtotal, rounded half up; every total is subtotal less discount."""
    expected = (Invoice.subtotal_cents * AUTO_DEBIT_DISCOUNT_PERCENT * 2 + 100) // 200
    auto = Invoice.payment_method == PaymentMethod.CARD_AUTO_DEBIT
    query = select(Invoice.id, Invoice.subtotal_cents, Invoice.discount_cents, Invoice.total_cents).where(
        or_(
            Invoice.total_cents != Invoice.subtotal_cents - Invoice.discount_cents,
            and_(auto, Invoice.discount_cents != expected),
            and_(~auto, Invoice.discount_cents != 0),
        )
    )
    for row in session.execute(query):
        yield {
            "invoice": row.id,
            "subtotal_cents": row.subtotal_cents,
            "discount_cents": row.discount_cents,
            "total_cents": row.total_cents,
        }


def _cards_captured_twice(session: Session, _now: datetime) -> Iterator[dict[str, Any]]:
    """At most one card capture kept per invoice (a card is never charged twice for one month).

    A capture that pays its invoices counts; so does a duplicate that is not owed back whole. A
    capture taken back (a chargeback) or given back whole, or owed back whole, does not: the month
    may then be paid again, on a new card.
    """
    back = (
        select(func.coalesce(func.sum(Refund.amount_cents), 0))
        .where(Refund.payment_id == Payment.id, Refund.status.in_((RefundStatus.OWED, RefundStatus.DONE)))
        .scalar_subquery()
    )
    kept = or_(
        Payment.status == PaymentStatus.CONFIRMED,
        and_(Payment.status == PaymentStatus.DUPLICATE, back + Payment.chargeback_cents < Payment.amount_cents),
    )
    query = (
        select(ChargeInvoice.invoice_id, func.count(func.distinct(Charge.id)).label("captured"))
        .join(Charge, Charge.id == ChargeInvoice.charge_id)
        .join(Payment, Payment.charge_id == Charge.id)
        .where(Charge.method == "card", kept)
        .group_by(ChargeInvoice.invoice_id)
        .having(func.count(func.distinct(Charge.id)) > 1)
    )
    for row in session.execute(query):
        yield {"invoice": row.invoice_id, "captured_card_charges": row.captured}


def _mails_sent_twice(session: Session, _now: datetime) -> Iterator[dict[str, Any]]:
    """Each notification (invoice or account, kind, step) sent at most once."""
    subject = func.coalesce(Notification.invoice_id, Notification.account_id)
    query = (
        select(subject.label("subject"), Notification.kind, Notification.step, func.count().label("sent"))
        .where(Notification.status == NotificationStatus.SENT)
        .group_by(subject, Notification.kind, Notification.step)
        .having(func.count() > 1)
    )
    for row in session.execute(query):
        yield {"subject": row.subject, "kind": row.kind, "step": row.step, "sent": row.sent}


def _owed_gateway_refunds(session: Session, _now: datetime) -> Iterator[dict[str, Any]]:
    """A refund made at the gateway is never left owed: `gateway` refunds exist only as made."""
    query = select(Refund.id, Refund.status).where(
        Refund.reason == RefundReason.GATEWAY, Refund.status != RefundStatus.DONE
    )
    for row in session.execute(query):
        yield {"refund": row.id, "status": row.status}


INVARIANTS: dict[str, Invariant] = {
    "invoice_twice_for_a_month": _overlapping_invoices,
    "paid_invoice_without_payment": _paid_without_payment,
    "payment_paying_nothing": _payments_paying_nothing,
    "account_books_do_not_add_up": _balances,
    "block_against_the_rules": _wrong_blocks,
    "wrong_discount_or_total": _wrong_discounts,
    "card_captured_twice_for_an_invoice": _cards_captured_twice,
    "email_sent_twice": _mails_sent_twice,
    "gateway_refund_not_made": _owed_gateway_refunds,
}


def check_books(session: Session, now: datetime) -> Report:
    """Every invariant over the whole database, in the session's snapshot (see `snapshot`)."""
    report = Report()
    for name, invariant in INVARIANTS.items():
        found = 0
        for details in invariant(session, now):
            found += 1
            if found <= LIMIT:
                report.violations.append(Violation(name, details))
        report.counts[name] = found
    return report


def snapshot(session: Session) -> None:
    """One consistent, read-only view for all the queries (PostgreSQL: REPEATABLE READ, READ ONLY)."""
    if session.get_bind().dialect.name == "postgresql":
        session.connection(execution_options={"isolation_level": "REPEATABLE READ", "postgresql_readonly": True})
