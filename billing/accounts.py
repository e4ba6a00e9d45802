"""Accounts, their billing contacts and their subscriptions: validated input and upserts."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from billing import validation as v
from billing.blocking import lock_accounts
from billing.calendar import BillingCalendar, Frequency
from billing.catalog import catalog_price, in_catalog
from billing.documents import normalize_document
from billing.errors import InvalidInput, NotFound
from billing.models import Account, Contact, PaymentMethod, PriceSource, Product, Subscription, new_id
from billing.plan_changes import Change, Terms, cancel, change_terms, reactivate
from billing.remote_ip import FIELD as REMOTE_IP
from billing.remote_ip import read_remote_ip
from billing.subscription_changes import record_change

ACCOUNT_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
EMAIL = re.compile(r"[^@\s<>\"]+@[^@\s<>\"]+\.[^@\s<>\"]+")
EMAIL_DESCRIBED = "an email address such as ana@empresa.com.br"
PRODUCTS = tuple(p.value for p in Product)
FREQUENCIES = tuple(f.value for f in Frequency)
METHODS = tuple(m.value for m in PaymentMethod)
MAX_PRICE_CENTS = 100_000_000  # R$ 1.000.000,00 a month: anything above is a typo, not a plan


@dataclass(frozen=True)
class ContactInput:
    email: str
    name: str
    manage_payments: bool


@dataclass(frozen=True)
class AccountInput:
    name: str
    document: str
    contacts: tuple[ContactInput, ...]
    trial_ends_at: datetime | None
    gateway_customer_id: str | None

    @classmethod
    def parse(cls, payload: Mapping[str, Any], calendar: BillingCalendar) -> AccountInput:
        name = v.text(payload, "name")
        document_text = v.text(payload, "document", max_length=20)
        assert name is not None
        assert document_text is not None
        try:
            document = normalize_document(document_text)
        except ValueError as error:
            raise InvalidInput("document", str(error)) from None
        contacts = []
        seen: set[str] = set()
        for index, item in enumerate(v.object_list(payload, "contacts")):
            prefix = f"contacts[{index}]."
            email = v.text(item, "email", prefix=prefix, pattern=EMAIL, described=EMAIL_DESCRIBED, max_length=254)
            assert email is not None
            if email.lower() in seen:
                raise InvalidInput(prefix + "email", "appears twice")
            seen.add(email.lower())
            contacts.append(
                ContactInput(
                    email=email,
                    name=v.text(item, "name", prefix=prefix, required=False) or "",
                    manage_payments=v.boolean(item, "manage_payments", prefix=prefix, default=False),
                )
            )
        return cls(
            name=name,
            document=document,
            contacts=tuple(contacts),
            trial_ends_at=_trial_end(payload, calendar),
            gateway_customer_id=v.text(payload, "gateway_customer_id", required=False, max_length=100),
        )


def _trial_end(payload: Mapping[str, Any], calendar: BillingCalendar) -> datetime | None:
    """An instant with its offset, or a bare date meaning 00:00 of that day in the billing zone."""
    return v.day_or_instant(payload, "trial_ends_at", calendar.start_of_day, required=False)


@dataclass(frozen=True)
class SubscriptionInput:
    plan: str
    modules: tuple[str, ...]
    monthly_price_cents: int | None
    """A negotiated price, overriding the catalog; None: the catalog's price for the plan and modules."""
    frequency: Frequency
    payment_method: PaymentMethod
    card_token: str | None
    remote_ip: str | None
    """The customer's IP when they gave `card_token`; see `card_and_ip` for when it may be left out."""
    installments: int
    starts_on: date | None

    @classmethod
    def parse(cls, payload: Mapping[str, Any]) -> SubscriptionInput:
        plan = v.text(payload, "plan", max_length=64)
        price = v.integer(payload, "monthly_price_cents", required=False, minimum=1, maximum=MAX_PRICE_CENTS)
        frequency = Frequency(v.choice(payload, "frequency", FREQUENCIES))
        method = PaymentMethod(v.choice(payload, "payment_method", METHODS))
        card_token = v.text(payload, "card_token", required=False)
        remote_ip = read_remote_ip(payload)
        installments = v.integer(payload, "installments", required=False, minimum=1, maximum=12, default=1)
        assert plan is not None
        assert installments is not None
        if method is PaymentMethod.CARD_AUTO_DEBIT and frequency is not Frequency.MONTHLY:
            raise InvalidInput("payment_method", "card_auto_debit exists for monthly subscriptions only")
        if method is PaymentMethod.CARD_AUTO_DEBIT and not card_token:
            raise InvalidInput("card_token", "is required for card_auto_debit")
        if remote_ip is not None and not card_token:
            raise InvalidInput(REMOTE_IP, "is the IP a card_token was given from: send it with the card_token")
        if installments > 1 and (method is not PaymentMethod.CARD or frequency is Frequency.MONTHLY):
            raise InvalidInput("installments", "more than 1 only for a prepaid subscription paid by card")
        return cls(
            plan=plan,
            modules=tuple(v.string_list(payload, "modules")),
            monthly_price_cents=price,
            frequency=frequency,
            payment_method=method,
            card_token=card_token,
            remote_ip=remote_ip,
            installments=installments,
            starts_on=v.day(payload, "starts_on", required=False),
        )


def validate_account_id(account_id: str) -> str:
    if not ACCOUNT_ID.fullmatch(account_id):
        raise InvalidInput("id", "must be 1 to 64 letters, digits, '_' or '-'")
    return account_id


def validate_product(product: str) -> Product:
    if product not in PRODUCTS:
        raise InvalidInput("product", f"must be one of {', '.join(PRODUCTS)}")
    return Product(product)


def get_account(session: Session, account_id: str) -> Account:
    account = session.scalar(select(Account).where(Account.id == account_id).options(selectinload(Account.contacts)))
    if account is None:
        raise NotFound(f"no account {account_id!r}")
    return account


def upsert_account(session: Session, account_id: str, data: AccountInput, now: datetime) -> tuple[Account, bool]:
    """Create or replace an account's details and contacts; returns (account, created)."""
    validate_account_id(account_id)
    account = session.get(Account, account_id)
    created = account is None
    if account is None:
        account = Account(id=account_id, created_at=now)
        session.add(account)
    account.name = data.name
    account.document = data.document
    account.trial_ends_at = data.trial_ends_at
    account.gateway_customer_id = data.gateway_customer_id
    account.updated_at = now
    existing = {contact.email.lower(): contact for contact in account.contacts}
    contacts = []
    for item in data.contacts:
        contact = existing.get(item.email.lower()) or Contact(email=item.email)
        contact.email, contact.name, contact.manage_payments = item.email, item.name, item.manage_payments
        contacts.append(contact)
    account.contacts = contacts
    session.flush()
    return account, created


def upsert_subscription(
    session: Session,
    account_id: str,
    product: str,
    data: SubscriptionInput,
    now: datetime,
    calendar: BillingCalendar,
) -> tuple[Subscription, bool]:
    """Create or change a subscription (see `subscribe`); returns (subscription, created)."""
    subscribed = subscribe(session, account_id, product, data, now, calendar)
    return subscribed.subscription, subscribed.created


@dataclass(frozen=True)
class Subscribed:
    subscription: Subscription
    created: bool
    change: Change


def subscribe(
    session: Session,
    account_id: str,
    product: str,
    data: SubscriptionInput,
    now: datetime,
    calendar: BillingCalendar,
) -> Subscribed:
    """Create or change a subscription, by rule 3.10: an upgrade now (its difference invoiced pro rata), anything
    else that changes the offer from the next period; the method, card and installments at once. A canceled
    subscription given a plan again goes on. Invoices already issued keep their amounts."""
    checked = validate_product(product)
    account = get_account(session, account_id)
    lock_accounts(session, [account.id])
    subscription = session.scalar(
        select(Subscription).where(Subscription.account_id == account.id, Subscription.product == checked)
    )
    terms = _terms(session, checked.value, data)
    created = subscription is None
    before = None if subscription is None else Terms.of(subscription)
    card_token, remote_ip = card_and_ip(subscription, data)
    if subscription is None:
        subscription = Subscription(
            id=new_id("sub"),
            account_id=account.id,
            product=checked.value,
            starts_on=data.starts_on or calendar.local_date(now),
            created_at=now,
            plan=terms.plan,
            modules=list(terms.modules),
            monthly_price_cents=terms.monthly_price_cents,
            price_source=terms.price_source.value,
            frequency=terms.frequency.value,
        )
        session.add(subscription)
        change = Change("created", subscription.starts_on)
    else:
        if data.starts_on is not None:
            subscription.starts_on = data.starts_on
        reactivated = reactivate(subscription, now, calendar)
        # The method first: an upgrade's difference is invoiced, and discounted, by the method it is paid with.
        subscription.payment_method = data.payment_method.value
        change = change_terms(session, subscription, terms, now, calendar)
        if reactivated and change.effect == "unchanged":
            change = Change("reactivated", calendar.local_date(now))
    subscription.payment_method = data.payment_method.value
    subscription.card_token, subscription.remote_ip = card_token, remote_ip
    subscription.installments = data.installments
    subscription.updated_at = now
    session.flush()
    if before is not None:
        record_change(session, subscription, before, terms, change, now)
    return Subscribed(subscription, created, change)


def _terms(session: Session, product: str, data: SubscriptionInput) -> Terms:
    """The offer asked for: at the negotiated price when one is given, else at the catalog's."""
    if data.monthly_price_cents is not None:
        return Terms(data.plan, data.modules, data.monthly_price_cents, PriceSource.NEGOTIATED, data.frequency)
    if not in_catalog(session, product, data.plan):
        raise InvalidInput(
            "monthly_price_cents", f"is required: {data.plan!r} is not a plan of {product} in the catalog"
        )
    price = catalog_price(session, product, data.plan, data.modules)
    if price <= 0:
        raise InvalidInput("plan", "the plan and modules cost nothing in the catalog: set a price for them")
    return Terms(data.plan, data.modules, price, PriceSource.CATALOG, data.frequency)


def cancel_subscription(
    session: Session, account_id: str, product: str, now: datetime, calendar: BillingCalendar
) -> tuple[Subscription, Change]:
    """Cancel at the end of the period already issued (rule 3.10); canceling again changes nothing."""
    checked = validate_product(product)
    account = get_account(session, account_id)
    lock_accounts(session, [account.id])
    subscription = session.scalar(
        select(Subscription).where(Subscription.account_id == account.id, Subscription.product == checked)
    )
    if subscription is None:
        raise NotFound(f"account {account_id} has no {checked.value} subscription")
    already = subscription.canceled_at is not None
    change = cancel(session, subscription, now, calendar)
    subscription.updated_at = now
    session.flush()
    if not already:
        record_change(session, subscription, Terms.of(subscription), None, change, now)
    return subscription, change


def card_and_ip(current: Subscription | None, data: SubscriptionInput) -> tuple[str | None, str | None]:
    """The card a subscription keeps and the IP it came with: the IP belongs to the card.

    A new card needs the customer's IP (Asaas refuses a card charge without it, and the server's own IP
    must never stand in). The card already saved, sent again without an IP (a plan changed by the product's
    back office, with no customer at hand), keeps the IP it came with, or its lack of one.
    """
    if not data.card_token:
        return None, None
    if data.remote_ip is not None:
        return data.card_token, data.remote_ip
    if current is not None and current.card_token == data.card_token:
        return current.card_token, current.remote_ip
    raise InvalidInput(REMOTE_IP, "is required with a new card_token: the customer's IP when they gave the card")
