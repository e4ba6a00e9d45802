"""Invariants over the whole books, checked by the test itself from the rows (SPEC section 6)."""

from __future__ import annotations

from collections import Counter

from sqlalchemy import select
from sqlalchemy.orm import Session

from billing.journal import Notification
from billing.models import Block, Charge, Invoice, Payment, Refund

CAPTURED = ("confirmed",)


def broken_invariants(session: Session) -> list[str]:
    """Every invariant the books break, each named with its ids and figures; empty when they add up."""
    broken: list[str] = []
    invoices = list(session.scalars(select(Invoice)))
    payments = list(session.scalars(select(Payment)))
    charges = {charge.id: charge for charge in session.scalars(select(Charge))}

    # one invoice per period; an upgrade's difference (kind `proration`) is an invoice of its own beside it
    months = Counter((i.subscription_id, i.period_start) for i in invoices if i.kind == "period")
    broken += [f"two invoices for subscription {sub} and {month}" for (sub, month), n in months.items() if n > 1]

    paying: dict[str, list[Payment]] = {}
    for payment in payments:
        if payment.status in CAPTURED:
            for invoice_id in payment.invoice_ids:
                paying.setdefault(invoice_id, []).append(payment)
    for invoice in invoices:
        payers = paying.get(invoice.id, [])
        if invoice.status == "paid" and not payers:
            broken.append(f"invoice {invoice.id} is paid by no recorded payment")
        if len(payers) > 1:
            broken.append(f"invoice {invoice.id} paid twice: {[p.id for p in payers]}")
        cards = [p for p in payers if charges[p.charge_id].method in ("card", "card_auto_debit")]
        if len(cards) > 1:
            broken.append(f"invoice {invoice.id} has {len(cards)} captured card charges")
        if invoice.status == "paid" and payers:
            covered = sum(p.amount_cents for p in payers)
            if covered < invoice.total_cents and len(payers[0].invoice_ids) == 1:
                broken.append(f"invoice {invoice.id} paid with {covered} of {invoice.total_cents}")

    refunded: Counter[str] = Counter()
    for refund in session.scalars(select(Refund)):
        refunded[refund.payment_id] += refund.amount_cents
    broken += [
        f"payment {p.id} refunded {refunded[p.id]} of {p.amount_cents}"
        for p in payments
        if refunded[p.id] > p.amount_cents
    ]

    sent = Counter(
        (n.account_id, n.invoice_id, n.kind, n.step)
        for n in session.scalars(select(Notification).where(Notification.status == "sent"))
    )
    broken += [f"notification {key} sent {n} times" for key, n in sent.items() if n > 1]

    in_force = Counter(
        (b.account_id, b.product) for b in session.scalars(select(Block).where(Block.lifted_at.is_(None)))
    )
    broken += [f"{n} blocks in force on {key}" for key, n in in_force.items() if n > 1]
    return broken
