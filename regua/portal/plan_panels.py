"""The payment page's plan panel per product: the plan in force, a change that waits, a cancellation, a choice due."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from billing.accounts import get_account
from billing.calendar import BillingCalendar, Frequency
from billing.catalog import CatalogItem, catalog
from billing.models import PaymentMethod, Subscription
from regua.portal.plans import FREQUENCIES, METHODS
from regua.portal.view import PRODUCTS, day_text


@dataclass(frozen=True)
class Terms:
    plan: str
    modules: list[str]
    monthly_price_cents: int
    frequency: str
    method: str


@dataclass(frozen=True)
class PlanPanel:
    product: str
    label: str
    choosable: bool
    """The product's catalog has plans: the customer may choose or change on this page."""
    terms: Terms | None
    """The subscription in force; None when there is none (the customer chooses one)."""
    next_terms: Terms | None = None
    next_on: str | None = None
    ends_on: str | None = None
    """Set once canceled: the last day of access (the end of the period issued)."""
    ended: bool = False
    trial_until: str | None = None
    """A trial still running, for a product not chosen yet."""
    trial_ended: bool = False
    """The account's trial is over and this product was not chosen: the page asks for a choice."""


def plan_panels(session: Session, account_id: str, now: datetime, calendar: BillingCalendar) -> dict[str, PlanPanel]:
    """Per product with a subscription or plans in the catalog, what the page says of its plan."""
    account = get_account(session, account_id)
    listed = catalog(session)
    names = {(item.kind, item.id): item.name for item in session.scalars(select(CatalogItem))}
    subscriptions = {
        subscription.product: subscription
        for subscription in session.scalars(select(Subscription).where(Subscription.account_id == account.id))
    }
    panels = {}
    for product, label in PRODUCTS.items():
        choosable = bool(listed.get(product, {}).get("plans"))
        subscription = subscriptions.get(product)
        if subscription is None:
            if choosable:
                trial_end = account.trial_ends_at
                running = trial_end is not None and now < trial_end
                until = day_text(calendar.local_date(trial_end)) if trial_end is not None and running else None
                ended = trial_end is not None and not running
                panels[product] = PlanPanel(product, label, True, None, trial_until=until, trial_ended=ended)
            continue
        waiting = None
        if subscription.next_plan is not None and subscription.next_monthly_price_cents is not None:
            waiting = _terms(
                names,
                subscription.next_plan,
                subscription.next_modules or [],
                subscription.next_monthly_price_cents,
                subscription.next_frequency or subscription.frequency,
                subscription.payment_method,
            )
        panels[product] = PlanPanel(
            product,
            label,
            choosable,
            _terms(
                names,
                subscription.plan,
                subscription.modules,
                subscription.monthly_price_cents,
                subscription.frequency,
                subscription.payment_method,
            ),
            waiting,
            day_text(subscription.change_effective_on) if subscription.change_effective_on else None,
            day_text(subscription.ends_on) if subscription.ends_on else None,
            subscription.ends_at is not None and subscription.ends_at <= now,
        )
    return panels


def _terms(
    names: dict[tuple[str, str], str], plan: str, modules: list[str], price: int, frequency: str, method: str
) -> Terms:
    return Terms(
        names.get(("plan", plan), plan),
        [names.get(("module", module), module) for module in modules],
        price,
        FREQUENCIES[Frequency(frequency)],
        METHODS[PaymentMethod(method)],
    )
