"""Reading the demo's books: what changed since the last look, told as lines, and the final table."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TextIO
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from billing.journal import Notification
from billing.models import Block, Charge, Invoice, NotificationStatus, Payment, Refund, Subscription
from billing.money import format_brl
from billing.records import SubscriptionChange
from regua.runtime import Runtime


@dataclass
class Books:
    """What the story tells from: every row that matters, as (id -> what a reader notices)."""

    invoices: dict[str, tuple[Any, ...]]
    charges: dict[str, tuple[Any, ...]]
    payments: dict[str, tuple[Any, ...]]
    refunds: dict[str, tuple[Any, ...]]
    mails: dict[str, tuple[Any, ...]]
    blocks: dict[str, tuple[Any, ...]]

    @classmethod
    def read(cls, runtime: Runtime) -> Books:
        def work(session: Session) -> Books:
            return cls(
                invoices={
                    i.id: (
                        i.account_id,
                        i.product,
                        i.status,
                        i.period_start,
                        i.subtotal_cents,
                        i.discount_cents,
                        i.total_cents,
                        i.payment_method,
                    )
                    for i in session.scalars(select(Invoice))
                },
                charges={
                    c.id: (
                        c.account_id,
                        c.product,
                        c.status,
                        c.method,
                        c.amount_cents,
                        c.failure_code,
                        len(c.invoice_links),
                    )
                    for c in session.scalars(select(Charge))
                },
                payments={
                    p.id: (p.account_id, "", p.status, p.method, p.amount_cents)
                    for p in session.scalars(select(Payment))
                },
                refunds={
                    r.id: (r.account_id, "", r.status, r.reason, r.amount_cents)
                    for r in session.scalars(select(Refund))
                },
                mails={
                    n.id: (n.account_id, "", n.status, n.kind, tuple(n.recipients))
                    for n in session.scalars(select(Notification))
                },
                blocks={
                    b.id: (
                        b.account_id,
                        b.product,
                        "lifted" if b.lifted_at else "active",
                        b.lift_reason or "",
                        len(b.invoice_ids),
                    )
                    for b in session.scalars(select(Block))
                },
            )

        return runtime.read(work)


def _news(before: dict[str, tuple[Any, ...]], after: dict[str, tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Rows that are new, or whose status changed, in the order they were read; each ends with "is new"."""
    return [(*row, key not in before) for key, row in after.items() if key not in before or before[key][2] != row[2]]


def happenings(before: Books, after: Books) -> list[tuple[str, str, str]]:
    """(account, product, what happened) for every change between two readings of the books."""
    told: list[tuple[str, str, str]] = []
    settled: list[tuple[str, str, str]] = []  # told after the money that moved them
    for account, product, status, start, subtotal, discount, total, method, new in _news(
        before.invoices, after.invoices
    ):
        month = f"{start:%m/%Y}" if start.day == 1 else f"{start:%m/%Y} from {start:%d/%m} (pro rata)"
        if new:
            price = f"{format_brl(subtotal)} - 5% = {format_brl(total)}" if discount else format_brl(subtotal)
            told.append((account, product, f"invoice {month} issued: {price} ({method})"))
        if status != "open":
            settled.append((account, product, f"invoice {month} {status}"))
    for account, product, status, method, amount, failure, invoices, _ in _news(before.charges, after.charges):
        what = {"pending": "opened", "confirmed": "confirmed", "failed": f"declined ({failure})"}.get(status, status)
        months = f", {invoices} invoices in one" if invoices > 1 else ""
        told.append((account, product, f"{method} charge of {format_brl(amount)} {what}{months}"))
    for account, _, status, method, amount, _ in _news(before.payments, after.payments):
        told.append((account, "", f"payment of {format_brl(amount)} by {method}: {status}"))
    for account, _, status, reason, amount, _ in _news(before.refunds, after.refunds):
        told.append((account, "", f"refund of {format_brl(amount)} ({reason}): {status}"))
    told += settled
    for account, product, status, reason, invoices, _ in _news(before.blocks, after.blocks):
        if status == "active":
            told.append((account, product, f"BLOCKED for {invoices} unpaid invoice{'s' if invoices > 1 else ''}"))
        else:
            told.append((account, product, f"UNBLOCKED ({reason})"))
    for account, _, status, kind, recipients, _ in _news(before.mails, after.mails):
        if status == NotificationStatus.SENT.value:
            told.append((account, "", f"email {kind} sent to {', '.join(recipients)}"))
        elif status != NotificationStatus.PENDING.value:
            told.append((account, "", f"email {kind}: {status}"))
    return told


@dataclass
class Teller:
    out: TextIO
    zone: ZoneInfo
    books: Books
    order: list[str]

    def line(self, at: datetime, account: str, product: str, text: str) -> None:
        local = at.astimezone(self.zone)
        print(f"{local:%d/%m %H:%M}  {account:<16} {product:<10} {text}", file=self.out, flush=True)

    def catch_up(self, runtime: Runtime, at: datetime) -> None:
        """Tell what changed since the last time, account by account, in the cast's order, dated `at`
        (the step's instant: the clock may have moved a minute on while an email waited)."""
        after = Books.read(runtime)
        told = happenings(self.books, after)
        told.sort(key=lambda item: self.order.index(item[0]) if item[0] in self.order else len(self.order))
        for account, product, text in told:
            self.line(at, account, product, text)
        self.books = after


def _table(headers: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=True)]
    lines = [
        "  ".join(f"{cell:<{width}}" for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [headers, *rows]
    ]
    return [lines[0], "  ".join("-" * width for width in widths), *lines[1:]]


def emails_sent(runtime: Runtime) -> Counter[tuple[str, str]]:
    """(account, kind) -> emails regua recorded as sent."""

    def work(session: Session) -> Counter[tuple[str, str]]:
        sent = session.execute(
            select(Notification.account_id, Notification.kind).where(
                Notification.status == NotificationStatus.SENT.value
            )
        )
        return Counter((account, kind) for account, kind in sent)

    return runtime.read(work)


def summary(runtime: Runtime, subscriptions: list[tuple[str, str, str]]) -> list[str]:
    """The books at the end, one row per (account, product, method): invoices, charges, payments,
    refunds, emails, blocks."""
    sent = emails_sent(runtime)

    def work(session: Session) -> list[list[str]]:
        rows = []
        sent_to = Counter[str]()
        for (account, _kind), count in sent.items():
            sent_to[account] += count
        for account, product, method in subscriptions:
            invoices = list(session.scalars(select(Invoice).where(Invoice.account_id == account)))
            charges = list(session.scalars(select(Charge).where(Charge.account_id == account)))
            payments = list(session.scalars(select(Payment).where(Payment.account_id == account)))
            refunds = list(session.scalars(select(Refund).where(Refund.account_id == account)))
            blocks = list(session.scalars(select(Block).where(Block.account_id == account)))
            rows.append(
                [
                    account,
                    product,
                    method,
                    str(len(invoices)),
                    str(sum(1 for i in invoices if i.status == "paid")),
                    format_brl(sum(i.total_cents for i in invoices)),
                    format_brl(sum(i.discount_cents for i in invoices)),
                    str(len(charges)),
                    str(sum(1 for c in charges if c.status == "failed")),
                    str(len(payments)),
                    format_brl(sum(p.amount_cents for p in payments)),
                    str(len(refunds)),
                    str(sent_to[account]),
                    str(len(blocks)),
                    str(sum(1 for b in blocks if b.lifted_at is not None)),
                    _subscription(session, account, product),
                ]
            )
        return rows

    headers = [
        "account",
        "product",
        "method",
        "invoices",
        "paid",
        "billed",
        "discount",
        "charges",
        "declined",
        "payments",
        "received",
        "refunds",
        "emails",
        "blocks",
        "lifted",
        "subscription",
    ]
    return _table(headers, runtime.read(work))


def _subscription(session: Session, account: str, product: str) -> str:
    """The subscription at the end: its plan and modules, the day an upgrade took effect, or the day it ended."""
    subscription = session.scalar(
        select(Subscription).where(Subscription.account_id == account, Subscription.product == product)
    )
    if subscription is None:
        return "-"
    if subscription.ends_on is not None:
        return f"ended {subscription.ends_on:%d/%m}"
    upgraded = session.scalar(
        select(SubscriptionChange.effective_on)
        .where(
            SubscriptionChange.subscription_id == subscription.id, SubscriptionChange.proration_invoice_id.is_not(None)
        )
        .order_by(SubscriptionChange.at.desc())
        .limit(1)
    )
    offer = "+".join([subscription.plan, *subscription.modules])
    return f"{offer}, upgraded {upgraded:%d/%m}" if upgraded is not None else offer
