"""Invariants of money: every payment pays or goes back, every account adds up, charges and refunds tell the truth."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from typing import Any

from sqlalchemy import and_, exists, func, or_, select

from billing.check.scope import Scope
from billing.models import (
    OWED_BACK,
    Charge,
    ChargeInvoice,
    ChargeStatus,
    Invoice,
    InvoiceStatus,
    Payment,
    PaymentStatus,
    Refund,
    RefundReason,
    RefundStatus,
)

STILL_HELD = (RefundStatus.OWED, RefundStatus.PENDING)
"""Refunds decided but not made: the money is still regua's to give back (a `pending` one is on its way, not back)."""
GOING_BACK = (*STILL_HELD, RefundStatus.DONE)
"""Refunds that account for a payment's money: given back, or owed back."""


def _going_back_of_payment() -> Any:
    return (
        select(func.coalesce(func.sum(Refund.amount_cents), 0))
        .where(Refund.payment_id == Payment.id, Refund.status.in_(GOING_BACK))
        .scalar_subquery()
    )


def payments_paying_nothing(scope: Scope) -> Iterator[dict[str, Any]]:
    """Every captured payment pays invoices, or is owed back (or was given back) whole."""
    paid = select(Invoice.payment_id).where(Invoice.payment_id.is_not(None)).scalar_subquery()
    back = _going_back_of_payment()
    confirmed_idle = and_(Payment.status == PaymentStatus.CONFIRMED, Payment.id.not_in(paid))
    unrefunded = and_(Payment.status == PaymentStatus.DUPLICATE, back + Payment.chargeback_cents < Payment.amount_cents)
    query = select(Payment.id, Payment.status, Payment.amount_cents, back.label("back")).where(
        or_(confirmed_idle, unrefunded)
    )
    for row in scope.session.execute(query):
        yield {"payment": row.id, "status": row.status, "amount_cents": row.amount_cents, "owed_back": row.back}


def balances(scope: Scope) -> Iterator[dict[str, Any]]:
    """Per account, to the centavo: money in less money back equals what paid invoices keep plus refunds owed.

    money in: captured payments; money back: refunds made, chargebacks and receipts undone. A payment
    that still pays its invoices may have given part back at the gateway (a partial refund, a disputed
    installment): that part is what its invoices no longer keep. A refund the gateway has accepted but
    not finished (`pending`) is still owed, not money back.
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
            .where(Refund.status.in_(STILL_HELD))
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
        for account_id, amount in scope.session.execute(query):
            totals[account_id][name] = int(amount or 0)
    for account_id, t in sorted(totals.items()):
        kept = t["in"] - t["refunds_made"] - t["chargebacks"]
        owed = t["paid_invoices"] - t["given_back_while_paid"] + t["refunds_owed"]
        if kept != owed:
            yield {"account": account_id, "money_kept_cents": kept, "books_say_cents": owed, **dict(t)}


def cards_captured_twice(scope: Scope) -> Iterator[dict[str, Any]]:
    """At most one card capture kept per invoice (a card is never charged twice for one month).

    A capture that pays its invoices counts; so does a duplicate that is not owed back whole. A
    capture taken back (a chargeback) or given back whole, or owed back whole, does not: the month
    may then be paid again, on a new card.
    """
    back = _going_back_of_payment()
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
    for row in scope.session.execute(query):
        yield {"invoice": row.invoice_id, "captured_card_charges": row.captured}


def owed_gateway_refunds(scope: Scope) -> Iterator[dict[str, Any]]:
    """A refund made at the gateway is never left owed: `gateway` refunds exist only as made."""
    query = select(Refund.id, Refund.status, Refund.amount_cents).where(
        Refund.reason == RefundReason.GATEWAY, Refund.status != RefundStatus.DONE
    )
    for row in scope.session.execute(query):
        yield {"refund": row.id, "status": row.status, "amount_cents": row.amount_cents}


def refunds_done_by_nobody(scope: Scope) -> Iterator[dict[str, Any]]:
    """A refund is done only when a gateway made it (its refund id) or a person recorded it made (who)."""
    query = select(Refund.id, Refund.payment_id, Refund.amount_cents, Refund.reason).where(
        Refund.status == RefundStatus.DONE, Refund.gateway_refund_id.is_(None), Refund.done_by.is_(None)
    )
    for row in scope.session.execute(query):
        yield {"refund": row.id, "payment": row.payment_id, "amount_cents": row.amount_cents, "reason": row.reason}


def confirmed_charges_without_payment(scope: Scope) -> Iterator[dict[str, Any]]:
    """A charge is confirmed only by a payment recorded for it."""
    recorded = exists().where(Payment.charge_id == Charge.id)
    query = select(Charge.id, Charge.account_id, Charge.method, Charge.amount_cents).where(
        Charge.status == ChargeStatus.CONFIRMED, ~recorded
    )
    for row in scope.session.execute(query):
        yield {"charge": row.id, "account": row.account_id, "method": row.method, "amount_cents": row.amount_cents}


def pending_charges_on_paid_invoices(scope: Scope) -> Iterator[dict[str, Any]]:
    """Once an invoice is paid, no charge for it is left payable (rule 3.5: every other pending charge is canceled).

    Settling a payment cancels the invoice's other pending charges in the same transaction (canceled in
    the books, `gateway_cancel_owed` until the gateway has canceled it too); a charge still `pending` on
    a paid invoice after that was left open, and the customer can pay the month again. A charge whose
    gateway cancel is owed is being canceled, and is not counted.
    """
    query = (
        select(Charge.id, Charge.method, Charge.amount_cents, Invoice.id.label("invoice"), Invoice.payment_id)
        .join(ChargeInvoice, ChargeInvoice.charge_id == Charge.id)
        .join(Invoice, Invoice.id == ChargeInvoice.invoice_id)
        .where(
            Charge.status == ChargeStatus.PENDING,
            Charge.gateway_cancel_owed.is_(False),
            Invoice.status == InvoiceStatus.PAID,
        )
        .order_by(Charge.id, Invoice.id)
    )
    for row in scope.session.execute(query):
        yield {
            "charge": row.id,
            "method": row.method,
            "amount_cents": row.amount_cents,
            "invoice": row.invoice,
            "paid_by": row.payment_id,
        }
