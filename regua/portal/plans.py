"""The payment page's plan choice: the catalog offered, a choice read from a form, and what it would do.

Nothing here states a rule of its own. What a choice charges now and from when is found by running the
billing services themselves (`subscribe`, `issue_due_invoices`, `owed_now`, `cancel`) in a unit of work
that the preview rolls back and the confirmation commits: the review can never promise what the
confirmation does not do.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from urllib.parse import urlencode

from sqlalchemy import select
from sqlalchemy.orm import Session

from billing.accounts import SubscriptionInput, cancel_subscription, get_account, subscribe
from billing.blocking import owed_now
from billing.calendar import BillingCalendar, Frequency, billing_period
from billing.catalog import catalog
from billing.invoicing import InvoiceDraft, draft_invoice, first_billable_day, issue_due_invoices
from billing.models import UNPAID, Invoice, InvoiceKind, PaymentMethod, Subscription
from billing.plan_changes import Change
from regua.portal.view import PRODUCTS, day_text

FREQUENCIES = {
    Frequency.MONTHLY: "Mensal",
    Frequency.QUARTERLY: "Trimestral (3 meses)",
    Frequency.SEMIANNUAL: "Semestral (6 meses)",
    Frequency.ANNUAL: "Anual (12 meses)",
}
METHODS = {
    PaymentMethod.CARD_AUTO_DEBIT: "Cartão de crédito com débito automático",
    PaymentMethod.BOLETO: "Boleto bancário",
    PaymentMethod.PIX: "PIX",
    PaymentMethod.CARD: "Cartão de crédito",
}
MAX_INSTALLMENTS = 12
PREPAID_DAYS = 60
"""A period this long is prepaid (the checkout splits only these in installments)."""
CARD_METHODS = (PaymentMethod.CARD, PaymentMethod.CARD_AUTO_DEBIT)


class ChoiceRefused(Exception):
    """A form that does not name a valid choice; the message is for the customer (pt-BR)."""


@dataclass(frozen=True)
class Item:
    id: str
    name: str
    monthly_price_cents: int


@dataclass(frozen=True)
class PayOption:
    """One way to pay a plan: a frequency and a method, at the price of each invoice it issues."""

    frequency: Frequency
    method: PaymentMethod
    subtotal_cents: int
    total_cents: int

    @property
    def value(self) -> str:
        return f"{self.frequency.value}.{self.method.value}"

    @property
    def label(self) -> str:
        return METHODS[self.method]

    @property
    def discount_cents(self) -> int:
        return self.subtotal_cents - self.total_cents


@dataclass(frozen=True)
class Offer:
    """A product's catalog as the customer chooses from it, and what they have now."""

    product: str
    label: str
    plans: list[Item]
    modules: list[Item]
    current: Choice | None

    def plan(self, plan_id: str) -> Item | None:
        return next((plan for plan in self.plans if plan.id == plan_id), None)

    def monthly_price(self, choice: Choice) -> int:
        chosen = self.plan(choice.plan)
        assert chosen is not None
        return chosen.monthly_price_cents + sum(m.monthly_price_cents for m in self.modules if m.id in choice.modules)

    def options(self, plan: str, modules: Sequence[str]) -> list[tuple[Frequency, list[PayOption]]]:
        """Per frequency, the methods it may be paid by, each with the amount of one invoice (rules 3.1-3.3)."""
        monthly = self.monthly_price(Choice(plan, tuple(modules), Frequency.MONTHLY, PaymentMethod.PIX, 1))
        found = []
        for frequency in FREQUENCIES:
            methods = [PaymentMethod.CARD_AUTO_DEBIT] if frequency is Frequency.MONTHLY else [PaymentMethod.CARD]
            methods += [PaymentMethod.BOLETO, PaymentMethod.PIX]
            period = billing_period(date(2000, 1, 1), frequency)  # whole months: any first day prices them
            found.append(
                (
                    frequency,
                    [
                        PayOption(frequency, method, draft.subtotal_cents, draft.total_cents)
                        for method in methods
                        for draft in [draft_invoice(period, monthly, method.value)]
                    ],
                )
            )
        return found


@dataclass(frozen=True)
class Choice:
    plan: str
    modules: tuple[str, ...]
    frequency: Frequency
    method: PaymentMethod
    installments: int

    def query(self) -> str:
        pairs = [("plano", self.plan), *[("modulo", module) for module in self.modules]]
        pairs += [("opcao", f"{self.frequency.value}.{self.method.value}"), ("parcelas", str(self.installments))]
        return urlencode(pairs)

    @property
    def frequency_label(self) -> str:
        return FREQUENCIES[self.frequency]

    @property
    def method_label(self) -> str:
        return METHODS[self.method]

    @property
    def by_card(self) -> bool:
        return self.method in CARD_METHODS


def offer_of(session: Session, account_id: str, product: str) -> Offer | None:
    """The product's plans and modules (None when its catalog has no plan), and the subscription's terms."""
    listed = catalog(session).get(product)
    if not listed or not listed["plans"]:
        return None
    plans = [Item(item.id, item.name, item.monthly_price_cents) for item in listed["plans"]]
    modules = [Item(item.id, item.name, item.monthly_price_cents) for item in listed["modules"]]
    subscription = _subscription(session, account_id, product)
    current = None
    if subscription is not None:
        current = Choice(
            subscription.plan,
            tuple(subscription.modules),
            Frequency(subscription.frequency),
            PaymentMethod(subscription.payment_method),
            subscription.installments,
        )
    return Offer(product, PRODUCTS.get(product, product), plans, modules, current)


def read_choice(offer: Offer, plan: str, modules: Sequence[str], option: str | None, installments: str) -> Choice:
    """The choice a form names, checked against the catalog and the rules of section 2; ChoiceRefused else."""
    if offer.plan(plan) is None:
        raise ChoiceRefused("Escolha um dos planos da lista.")
    known = [module.id for module in offer.modules]
    if any(module not in known for module in modules):
        raise ChoiceRefused("Escolha os módulos da lista.")
    chosen_modules = tuple(module for module in known if module in modules)
    if option is None:
        return Choice(plan, chosen_modules, Frequency.MONTHLY, PaymentMethod.PIX, 1)
    frequency_text, _, method_text = option.partition(".")
    try:
        frequency, method = Frequency(frequency_text), PaymentMethod(method_text)
    except ValueError:
        raise ChoiceRefused("Escolha a frequência e a forma de pagamento.") from None
    if (method is PaymentMethod.CARD_AUTO_DEBIT) != (frequency is Frequency.MONTHLY and method in CARD_METHODS):
        raise ChoiceRefused("O cartão de crédito é débito automático no plano mensal e parcelado nos demais.")
    count = int(installments) if installments.isdigit() else 0
    if method is PaymentMethod.CARD and frequency is not Frequency.MONTHLY:
        if not 1 <= count <= MAX_INSTALLMENTS:
            raise ChoiceRefused("Escolha de 1 a 12 parcelas.")
    else:
        count = 1
    return Choice(plan, chosen_modules, frequency, method, count)


@dataclass(frozen=True)
class OwedLine:
    id: str
    what: str
    period: str
    subtotal_cents: int
    discount_cents: int
    total_cents: int
    prepaid: bool
    """A whole prepaid period (3 months or more): a card may split it in installments."""


@dataclass(frozen=True)
class Outcome:
    """What confirming a choice does: the change by rule 3.10, what is owed at once, and what follows."""

    effect: str
    """created, unchanged, withdrawn (a waiting change given up), now (an upgrade, or new terms before anything was
    issued), next_period, reactivated."""
    effective_on: str | None
    monthly_price_cents: int
    owed: list[OwedLine]
    regular_from: str | None
    """The first day of the next regular invoice at the chosen terms."""
    regular_total_cents: int
    proration_cents: int = 0
    proration_days: int = 0
    first_on: str | None = None
    """When nothing is issued yet (a trial still running): the day the first invoice comes, for the rest of
    that month, and its amount."""
    first_total_cents: int = 0
    saved_card: bool = False
    """Auto-debit with a card already saved (and the IP it came with): the régua's next pass charges it."""

    @property
    def owed_total_cents(self) -> int:
        return sum(line.total_cents for line in self.owed)

    def installments(self, choice: Choice) -> int:
        """The card installments the payment now may be split in: the choice's, for prepaid periods only."""
        return choice.installments if self.owed and all(line.prepaid for line in self.owed) else 1


def apply_choice(
    session: Session, account_id: str, offer: Offer, choice: Choice, now: datetime, calendar: BillingCalendar
) -> Outcome:
    """Subscribe or change by rule 3.10 and issue what is due now; the caller commits (confirm) or not (review).

    A card for auto-debit cannot be typed here: the card already saved stays (with the IP it came with) and
    is charged by the régua's next pass, as every auto-debit month; without one, the first payment is made
    on the gateway's card page.
    """
    saved = _subscription(session, account_id, offer.product)
    card_token = saved.card_token if saved is not None and choice.method is PaymentMethod.CARD_AUTO_DEBIT else None
    data = SubscriptionInput(
        plan=choice.plan,
        modules=choice.modules,
        monthly_price_cents=None,
        frequency=choice.frequency,
        payment_method=choice.method,
        card_token=card_token,
        remote_ip=None,
        installments=choice.installments,
        starts_on=None,
    )
    subscribed = subscribe(session, account_id, offer.product, data, now, calendar)
    issue_due_invoices(session, now, calendar, account_id)
    outcome = _outcome(session, subscribed.subscription, subscribed.change, now, calendar)
    kept = subscribed.subscription
    if choice.method is PaymentMethod.CARD_AUTO_DEBIT and kept.card_token and kept.remote_ip:
        return replace(outcome, saved_card=True)
    return outcome


def _outcome(
    session: Session, subscription: Subscription, change: Change, now: datetime, calendar: BillingCalendar
) -> Outcome:
    unpaid = list(
        session.scalars(
            select(Invoice)
            .where(
                Invoice.account_id == subscription.account_id,
                Invoice.product == subscription.product,
                Invoice.status.in_(UNPAID),
            )
            .order_by(Invoice.period_start, Invoice.kind)
        )
    )
    owed = owed_now(unpaid, subscription.product, now)
    frequency = Frequency(subscription.next_frequency or subscription.frequency)
    price = subscription.next_monthly_price_cents or subscription.monthly_price_cents
    method = subscription.payment_method
    first: InvoiceDraft | None = None
    if change.effect == "next_period" and change.effective_on is not None:
        regular_from = change.effective_on
    else:
        regular_from = _next_period_start(session, subscription, calendar)
        if regular_from.day != 1:  # nothing issued yet (a trial still running): the rest of that month first
            first = draft_invoice(billing_period(regular_from, frequency), price, method)
            regular_from = first.period.end + timedelta(days=1)
    regular = draft_invoice(billing_period(regular_from, frequency), price, method)
    proration = next((i for i in owed if i.kind == InvoiceKind.PRORATION), None)
    return Outcome(
        change.effect,
        day_text(change.effective_on) if change.effective_on else None,
        price,
        [_owed_line(invoice) for invoice in owed],
        day_text(regular_from),
        regular.total_cents,
        change.proration_cents,
        (proration.period_end - proration.period_start).days + 1 if proration is not None else 0,
        day_text(first.period.start) if first is not None else None,
        first.total_cents if first is not None else 0,
    )


def _next_period_start(session: Session, subscription: Subscription, calendar: BillingCalendar) -> date:
    """The day after the last period issued, or the first billable day (a trial's end) when none was."""
    last_end = session.scalar(
        select(Invoice.period_end)
        .where(Invoice.subscription_id == subscription.id, Invoice.kind == InvoiceKind.PERIOD)
        .order_by(Invoice.period_end.desc())
        .limit(1)
    )
    if last_end is not None:
        return last_end + timedelta(days=1)
    account = get_account(session, subscription.account_id)
    return first_billable_day(subscription.starts_on, account.trial_ends_at, calendar)


def _owed_line(invoice: Invoice) -> OwedLine:
    what = "Diferença da mudança de plano" if invoice.kind == InvoiceKind.PRORATION else "Fatura"
    period = f"{day_text(invoice.period_start)} a {day_text(invoice.period_end)}"
    prepaid = (invoice.period_end - invoice.period_start).days >= PREPAID_DAYS
    return OwedLine(
        invoice.id, what, period, invoice.subtotal_cents, invoice.discount_cents, invoice.total_cents, prepaid
    )


@dataclass(frozen=True)
class Ending:
    """What a cancellation does: the last day of access, and what stays owed (rules 3.5, 3.6)."""

    ends_on: str
    owed: list[OwedLine] = field(default_factory=list)

    @property
    def owed_total_cents(self) -> int:
        return sum(line.total_cents for line in self.owed)


def cancel_choice(session: Session, account_id: str, product: str, now: datetime, calendar: BillingCalendar) -> Ending:
    """Cancel by rule 3.10 (the caller commits, or rolls back to show it first); NotFound without a subscription."""
    subscription, change = cancel_subscription(session, account_id, product, now, calendar)
    assert change.effective_on is not None
    unpaid = session.scalars(
        select(Invoice)
        .where(Invoice.subscription_id == subscription.id, Invoice.status.in_(UNPAID))
        .order_by(Invoice.period_start, Invoice.kind)
    )
    return Ending(day_text(change.effective_on), [_owed_line(invoice) for invoice in unpaid])


def _subscription(session: Session, account_id: str, product: str) -> Subscription | None:
    return session.scalar(
        select(Subscription).where(Subscription.account_id == account_id, Subscription.product == product)
    )
