"""Invariants of subscriptions that change (rule 3.10): upgrades priced by the rule, nothing after an end."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sqlalchemy import and_, select
from sqlalchemy.orm import aliased

from billing.check import rules
from billing.check.scope import Scope
from billing.models import Invoice, InvoiceKind, Subscription


def prorations_against_the_rule(scope: Scope) -> Iterator[dict[str, Any]]:
    """Each upgrade's invoice lies inside one period invoice of its subscription, to that period's end, and its
    subtotal is the monthly difference it keeps times the days left over the days of the period, rounded half up."""
    period = aliased(Invoice)
    query = (
        select(
            Invoice.id,
            Invoice.subscription_id,
            Invoice.period_start,
            Invoice.period_end,
            Invoice.subtotal_cents,
            Invoice.monthly_price_cents,
            period.id.label("period_id"),
            period.period_start.label("start"),
            period.period_end.label("end"),
        )
        .outerjoin(
            period,
            and_(
                period.subscription_id == Invoice.subscription_id,
                period.kind == InvoiceKind.PERIOD,
                period.period_start <= Invoice.period_start,
                period.period_end == Invoice.period_end,
            ),
        )
        .where(Invoice.kind == InvoiceKind.PRORATION)
    )
    for row in scope.session.execute(query):
        if row.period_id is None or row.monthly_price_cents is None or row.monthly_price_cents <= 0:
            yield {
                "invoice": row.id,
                "subscription": row.subscription_id,
                "problem": "not inside a period of its subscription, or without the difference it charges",
            }
            continue
        rule = rules.proration(row.monthly_price_cents, row.start, row.end, row.period_start)
        if rule != row.subtotal_cents:
            yield {
                "invoice": row.id,
                "period": f"{row.start.isoformat()}..{row.end.isoformat()}",
                "from": row.period_start.isoformat(),
                "monthly_difference_cents": row.monthly_price_cents,
                "subtotal_cents": row.subtotal_cents,
                "rule_subtotal_cents": rule,
            }


def invoices_after_the_end(scope: Scope) -> Iterator[dict[str, Any]]:
    """No invoice for a period that begins after a canceled subscription's last day."""
    query = (
        select(Invoice.id, Invoice.subscription_id, Invoice.period_start, Subscription.ends_on)
        .join(Subscription, Subscription.id == Invoice.subscription_id)
        .where(
            Subscription.ends_on.is_not(None),
            Invoice.period_start > Subscription.ends_on,
            Invoice.issued_at >= Subscription.canceled_at,
        )
    )
    for row in scope.session.execute(query):
        yield {
            "invoice": row.id,
            "subscription": row.subscription_id,
            "period_start": row.period_start.isoformat(),
            "ends_on": row.ends_on.isoformat(),
        }
