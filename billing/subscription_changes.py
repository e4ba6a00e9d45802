"""Each change of a subscription, recorded when it is made and told once to the billing contacts (rule 3.10).

The record keeps what the subscription was and what it became, so the mail says what changes and from
when long after the subscription has moved on. The notification pass is level-triggered: it reads the
changes made since its window began and records the mails that are missing, one per change
(`subscription_changed`, or `subscription_canceled` for a cancellation).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from billing.calendar import BillingCalendar
from billing.catalog import CatalogItem
from billing.journal import Notification
from billing.models import UNPAID, Invoice, Subscription, new_id
from billing.plan_changes import Change, Terms
from billing.records import SubscriptionChange
from billing.schedule import DueNotification, K, dedupe_key

KINDS = (K.SUBSCRIPTION_CHANGED.value, K.SUBSCRIPTION_CANCELED.value)
TOLD_EFFECTS = frozenset({"now", "next_period", "withdrawn", "canceled", "reactivated"})
"""A new subscription (`created`) and terms sent again unchanged are no change to tell."""


def record_change(
    session: Session, subscription: Subscription, before: Terms, after: Terms | None, change: Change, now: datetime
) -> SubscriptionChange | None:
    """Keep a change just made (`after` None for a cancellation); None when `change` changed nothing."""
    if change.effect not in TOLD_EFFECTS:
        return None
    if change.withdrawn is not None:  # what was to come, and what stays
        before, after = change.withdrawn, before
    record = SubscriptionChange(
        id=new_id("sch"),
        subscription_id=subscription.id,
        account_id=subscription.account_id,
        product=subscription.product,
        at=now,
        effect=change.effect,
        effective_on=change.effective_on,
        old_plan=before.plan,
        old_modules=list(before.modules),
        old_monthly_price_cents=before.monthly_price_cents,
        old_frequency=before.frequency.value,
        new_plan=after.plan if after else None,
        new_modules=list(after.modules) if after else None,
        new_monthly_price_cents=after.monthly_price_cents if after else None,
        new_frequency=after.frequency.value if after else None,
        payment_method=subscription.payment_method,
        proration_invoice_id=change.proration_invoice_id,
    )
    session.add(record)
    session.flush()
    return record


def changes_to_tell(session: Session, calendar: BillingCalendar, *, since: datetime) -> list[DueNotification]:
    """A mail per change made since `since`: the upgrade's invoice with it, or for a cancellation what stays
    owed of the product; keyed by the account and the change, so it is recorded once. Changes already told
    are left out before their invoices are read (a pass looks days back)."""
    changes = list(
        session.scalars(
            select(SubscriptionChange)
            .where(SubscriptionChange.at >= since)
            .order_by(SubscriptionChange.at, SubscriptionChange.id)
        )
    )
    told = set(
        session.scalars(
            select(Notification.step).where(
                Notification.kind.in_(KINDS), Notification.step.in_([change.id for change in changes])
            )
        )
    )
    changes = [change for change in changes if change.id not in told]
    if not changes:
        return []
    names = {
        (item.kind, item.id): item.name
        for item in session.scalars(
            select(CatalogItem).where(CatalogItem.product.in_({change.product for change in changes}))
        )
    }
    due = []
    for change in changes:
        if change.effect == "canceled":
            kind, invoices = K.SUBSCRIPTION_CANCELED, _still_owed(session, change)
        else:
            kind = K.SUBSCRIPTION_CHANGED
            proration = session.get(Invoice, change.proration_invoice_id) if change.proration_invoice_id else None
            invoices = (proration,) if proration is not None else ()
        facts = {
            "payment_method": change.payment_method,
            "change": {**change_facts(change, names), "changed_on": calendar.local_date(change.at).isoformat()},
        }
        due.append(
            DueNotification(
                dedupe_key(change.account_id, kind, change.id), change.account_id, kind, change.id, invoices, facts
            )
        )
    return due


def change_facts(change: SubscriptionChange, names: dict[tuple[str, str], str]) -> dict[str, Any]:
    """What the mail says of a change, JSON-ready: the terms before and after, by the catalog's names."""

    def terms(plan: str | None, modules: Sequence[str] | None, price: int | None, frequency: str | None) -> Any:
        if plan is None:
            return None
        return {
            "plan": names.get(("plan", plan), plan),
            "modules": [names.get(("module", module), module) for module in modules or ()],
            "monthly_price_cents": price,
            "frequency": frequency,
        }

    return {
        "product": change.product,
        "effect": change.effect,
        "effective_on": change.effective_on.isoformat() if change.effective_on else None,
        "old": terms(change.old_plan, change.old_modules, change.old_monthly_price_cents, change.old_frequency),
        "new": terms(change.new_plan, change.new_modules, change.new_monthly_price_cents, change.new_frequency),
    }


def _still_owed(session: Session, change: SubscriptionChange) -> tuple[Invoice, ...]:
    return tuple(
        session.scalars(
            select(Invoice)
            .where(Invoice.subscription_id == change.subscription_id, Invoice.status.in_(UNPAID))
            .order_by(Invoice.period_start, Invoice.id)
        )
    )
