"""Invariants of invoices: one per month, paid only by a payment, and priced by the rules."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import aliased

from billing.check import rules
from billing.check.scope import Scope
from billing.models import Invoice, InvoiceKind, InvoiceStatus, Payment, PaymentStatus, Subscription


def overlapping_invoices(scope: Scope) -> Iterator[dict[str, Any]]:
    """One invoice per subscription and month: no two period invoices of a subscription cover the same day. (Two
    upgrades in one period each invoice their difference for the rest of it: `prorations_against_the_rule`.)"""
    other = aliased(Invoice)
    query = select(Invoice.subscription_id, Invoice.id, other.id.label("other")).join(
        other,
        and_(
            other.subscription_id == Invoice.subscription_id,
            other.id > Invoice.id,
            other.kind == InvoiceKind.PERIOD,  # upgrades' differences lie inside their period: their own invariant
            Invoice.kind == InvoiceKind.PERIOD,
            other.period_start <= Invoice.period_end,
            Invoice.period_start <= other.period_end,
        ),
    )
    for row in scope.session.execute(query):
        yield {"subscription": row.subscription_id, "invoice": row.id, "other": row.other}


def paid_without_payment(scope: Scope) -> Iterator[dict[str, Any]]:
    """Every paid invoice is paid by a recorded, confirmed payment of the charge it names."""
    query = (
        select(Invoice.id, Invoice.payment_id, Invoice.charge_id, Payment.status, Payment.charge_id.label("paid_by"))
        .outerjoin(Payment, Payment.id == Invoice.payment_id)
        .where(
            Invoice.status == InvoiceStatus.PAID,
            or_(
                Payment.id.is_(None),
                Payment.status != PaymentStatus.CONFIRMED,
                Invoice.charge_id.is_(None),
                Payment.charge_id != Invoice.charge_id,
            ),
        )
    )
    for row in scope.session.execute(query):
        yield {
            "invoice": row.id,
            "payment": row.payment_id,
            "payment_status": row.status,
            "charge": row.charge_id,
            "payment_charge": row.paid_by,
        }


def paid_without_paid_at(scope: Scope) -> Iterator[dict[str, Any]]:
    """A paid invoice says when it was paid."""
    query = select(Invoice.id, Invoice.payment_id).where(
        Invoice.status == InvoiceStatus.PAID, Invoice.paid_at.is_(None)
    )
    for row in scope.session.execute(query):
        yield {"invoice": row.id, "payment": row.payment_id}


def wrong_discounts(scope: Scope) -> Iterator[dict[str, Any]]:
    """Rule 3.3: an invoice of a card_auto_debit subscription takes 5% off its subtotal, rounded half up to the
    centavo; every other invoice takes nothing off; every total is the subtotal less the discount.

    The method is the invoice's own (the subscription's when it was issued): a later change of method
    changes no invoice already issued.
    """
    percent = rules.AUTO_DEBIT_PERCENT
    # 5% half up: floor(subtotal * 5 / 100 + 1/2), in integers.
    expected = (Invoice.subtotal_cents * (2 * percent) + 100) // 200
    auto = Invoice.payment_method == "card_auto_debit"
    query = select(
        Invoice.id, Invoice.payment_method, Invoice.subtotal_cents, Invoice.discount_cents, Invoice.total_cents
    ).where(
        or_(
            Invoice.total_cents != Invoice.subtotal_cents - Invoice.discount_cents,
            and_(auto, Invoice.discount_cents != expected),
            and_(~auto, Invoice.discount_cents != 0),
        )
    )
    for row in scope.session.execute(query):
        rule = rules.auto_debit_discount(row.subtotal_cents) if row.payment_method == "card_auto_debit" else 0
        yield {
            "invoice": row.id,
            "method": row.payment_method,
            "subtotal_cents": row.subtotal_cents,
            "discount_cents": row.discount_cents,
            "rule_discount_cents": rule,
            "total_cents": row.total_cents,
        }


def prices_against_subscriptions(scope: Scope) -> Iterator[dict[str, Any]]:
    """Each period invoice's subtotal is the price for its period (rules 3.1, 3.2, 3.9) at the monthly price in
    force when it was issued, which the invoice keeps (3.10: invoices keep their amounts when a subscription
    changes). An invoice issued before invoices kept their price is judged by its subscription's, and only
    when the subscription has not changed since (`updated_at` <= `issued_at`). A part of a month may only begin
    a run of periods (3.9: a trial's end; 3.10: a return after a cancellation's end).
    """
    # A part of a month is the first invoice of a run of periods: the subscription's first, or its first after a
    # gap (a canceled subscription given a plan again after its end starts again that day, rule 3.10).
    ends: set[tuple[str, date]] = set(
        scope.session.execute(
            select(Invoice.subscription_id, Invoice.period_end).where(Invoice.kind == InvoiceKind.PERIOD)
        )
    )
    query = (
        select(
            Invoice.id,
            Invoice.subscription_id,
            Invoice.period_start,
            Invoice.period_end,
            Invoice.subtotal_cents,
            Invoice.cut_from,
            Invoice.monthly_price_cents.label("kept_price"),
            Subscription.monthly_price_cents,
            Subscription.frequency,
        )
        .join(Subscription, Subscription.id == Invoice.subscription_id)
        .where(
            Invoice.kind == InvoiceKind.PERIOD,
            or_(Invoice.monthly_price_cents.is_not(None), Subscription.updated_at <= Invoice.issued_at),
        )
    )
    for row in scope.session.execute(query):
        monthly = row.kept_price if row.kept_price is not None else row.monthly_price_cents
        # With its own price kept, an invoice is whole months of any frequency (one may have changed since).
        frequency = None if row.kept_price is not None else row.frequency
        price, shape = rules.period_price(
            row.period_start,
            row.period_end,
            monthly,
            frequency,
            first=(row.subscription_id, row.period_start - timedelta(days=1)) not in ends,
            cut_from=row.cut_from,
        )
        if price is None or price != row.subtotal_cents:
            yield {
                "invoice": row.id,
                "subscription": row.subscription_id,
                "period": f"{row.period_start.isoformat()}..{row.period_end.isoformat()}",
                "subtotal_cents": row.subtotal_cents,
                "rule_subtotal_cents": price,
                "monthly_price_cents": monthly,
                "frequency": row.frequency,
                **({"problem": shape} if shape else {}),
            }
