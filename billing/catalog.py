"""The catalog: each product's plans and modules at their monthly prices, and a subscription's price from them.

A subscription names a plan and modules of its product. Its monthly price is the plan's plus its
modules', unless the product negotiated one (`monthly_price_cents`, which then overrides the catalog).
Invoices carry their own amounts from the day they are issued: a price changed in the catalog reprices
the subscriptions that follow it, and so reaches them from their next invoice, never one issued before.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import String, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from billing import validation as v
from billing.errors import InvalidInput
from billing.models import Base, PriceSource, Product, Subscription

ITEM_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
MAX_PRICE_CENTS = 100_000_000
PRODUCTS = tuple(product.value for product in Product)


class CatalogItem(Base):
    """A plan or a module of a product, at its monthly price: subscriptions name them (rule 3.10)."""

    __tablename__ = "catalog_items"

    kind: Mapped[str] = mapped_column(String(8), primary_key=True)
    """`plan` or `module`."""
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    product: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(200))
    monthly_price_cents: Mapped[int]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class ItemKind(StrEnum):
    PLAN = "plan"
    MODULE = "module"


@dataclass(frozen=True)
class ItemInput:
    product: str
    name: str
    monthly_price_cents: int

    @classmethod
    def parse(cls, payload: Mapping[str, Any]) -> ItemInput:
        product = v.choice(payload, "product", PRODUCTS)
        name = v.text(payload, "name", max_length=200)
        price = v.integer(payload, "monthly_price_cents", minimum=0, maximum=MAX_PRICE_CENTS)
        assert product is not None
        assert name is not None
        assert price is not None
        return cls(product, name, price)


def validate_item_id(item_id: str) -> str:
    if not ITEM_ID.fullmatch(item_id):
        raise InvalidInput("id", "must be 1 to 64 letters, digits, '_' or '-'")
    return item_id


def put_item(
    session: Session, kind: ItemKind, item_id: str, data: ItemInput, now: datetime
) -> tuple[CatalogItem, bool]:
    """Create or change a plan or a module; the subscriptions that follow the catalog are repriced with it."""
    validate_item_id(item_id)
    item = session.get(CatalogItem, (kind.value, item_id))
    created = item is None
    if item is None:
        item = CatalogItem(kind=kind.value, id=item_id, created_at=now)
        session.add(item)
    elif item.product != data.product:
        raise InvalidInput("product", f"{kind.value} {item_id} belongs to {item.product}; ids are kept per product")
    item.product, item.name, item.monthly_price_cents, item.updated_at = (
        data.product,
        data.name,
        data.monthly_price_cents,
        now,
    )
    session.flush()
    reprice(session, item.product, now)
    return item, created


def catalog(session: Session) -> dict[str, dict[str, list[CatalogItem]]]:
    """Per product, its plans and modules, by id."""
    found: dict[str, dict[str, list[CatalogItem]]] = {product: {"plans": [], "modules": []} for product in PRODUCTS}
    for item in session.scalars(select(CatalogItem).order_by(CatalogItem.product, CatalogItem.kind, CatalogItem.id)):
        found[item.product]["plans" if item.kind == ItemKind.PLAN else "modules"].append(item)
    return found


def catalog_price(session: Session, product: str, plan: str, modules: Sequence[str]) -> int:
    """The monthly price of a plan and modules of `product` in the catalog; InvalidInput names what is not in it."""
    plan_item = session.get(CatalogItem, (ItemKind.PLAN.value, plan))
    if plan_item is None or plan_item.product != product:
        raise InvalidInput("plan", f"{plan!r} is not a plan of {product} in the catalog (PUT /api/plans/{plan})")
    total = plan_item.monthly_price_cents
    for index, module in enumerate(modules):
        item = session.get(CatalogItem, (ItemKind.MODULE.value, module))
        if item is None or item.product != product:
            raise InvalidInput(f"modules[{index}]", f"{module!r} is not a module of {product} in the catalog")
        total += item.monthly_price_cents
    return total


def in_catalog(session: Session, product: str, plan: str) -> bool:
    item = session.get(CatalogItem, (ItemKind.PLAN.value, plan))
    return item is not None and item.product == product


def reprice(session: Session, product: str, now: datetime) -> list[str]:
    """Set each subscription of `product` that follows the catalog to its catalog price now (and any change it
    waits for); invoices already issued keep their amounts. Returns the ids repriced."""
    changed: list[str] = []
    for subscription in session.scalars(
        select(Subscription).where(Subscription.product == product, Subscription.price_source == PriceSource.CATALOG)
    ):
        price = catalog_price(session, product, subscription.plan, subscription.modules)
        if price != subscription.monthly_price_cents:
            subscription.monthly_price_cents, subscription.updated_at = price, now
            changed.append(subscription.id)
        if subscription.next_plan is not None and subscription.next_price_source == PriceSource.CATALOG:
            subscription.next_monthly_price_cents = catalog_price(
                session, product, subscription.next_plan, subscription.next_modules or []
            )
    return changed
