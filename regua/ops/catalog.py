"""The ops page of the catalog: each product's plans and modules, and how many subscriptions name each."""

from __future__ import annotations

from collections import Counter

from sqlalchemy import select
from sqlalchemy.orm import Session

from billing.catalog import CatalogItem, catalog
from billing.models import Subscription

Listed = dict[str, dict[str, list[tuple[CatalogItem, int]]]]


def catalog_page(session: Session) -> Listed:
    """Per product, its plans and modules with the number of subscriptions naming each (canceled ones aside)."""
    following: Counter[tuple[str, str, str]] = Counter()
    for subscription in session.scalars(select(Subscription).where(Subscription.canceled_at.is_(None))):
        following[(subscription.product, "plan", subscription.plan)] += 1
        for module in subscription.modules:
            following[(subscription.product, "module", module)] += 1
    return {
        product: {
            kind: [(item, following[(product, item.kind, item.id)]) for item in items] for kind, items in lists.items()
        }
        for product, lists in catalog(session).items()
    }
