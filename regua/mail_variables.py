"""What an email says: its context, the words for the codes in it, and the variables its templates read."""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from datetime import date, timedelta
from typing import Any

from billing.calendar import TOLERANCE_DAYS
from billing.money import AUTO_DEBIT_DISCOUNT_PERCENT


@dataclass(frozen=True)
class InvoiceLine:
    """One invoice as an email shows it; amounts in integer centavos."""

    invoice_id: str
    product: str
    period_start: date
    period_end: date
    due_date: date
    subtotal_cents: int
    discount_cents: int
    total_cents: int


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    html: str
    text: str


@dataclass(frozen=True)
class EmailContext:
    """Everything one email says; `block_on` is the first blocked day (day 7 for an invoice due on day 1)."""

    kind: str
    account_id: str
    account_name: str
    recipients: tuple[tuple[str, str], ...]
    invoices: tuple[InvoiceLine, ...]
    portal_url: str
    payment_method: str | None = None
    amount_cents: int | None = None
    next_retry_on: date | None = None
    block_on: date | None = None
    blocked_since: date | None = None
    pix_code: str | None = None
    boleto_line: str | None = None
    boleto_url: str | None = None
    failure_reason: str | None = None
    refund_amount_cents: int | None = None
    refund_reason: str | None = None
    verifying_until: date | None = None
    trial_ended_on: date | None = None
    change: dict[str, Any] | None = None
    """A subscription mail's change, as recorded (`billing.subscription_changes.change_facts`)."""


# Payment codes are shown only where money is still owed: a PIX code in a receipt invites a second payment.
_PAYMENT_DUE_KINDS = frozenset(
    {
        "invoice_issued",
        "payment_failed",
        "payment_reminder",
        "block_warning",
        "account_blocked",
        "trial_ended",
    }
)
# Kinds that tell the customer when the block starts; the date follows from the due date when not given.
_BLOCK_DATE_KINDS = frozenset({"invoice_issued", "payment_failed", "payment_reminder", "block_warning", "trial_ended"})

_PRODUCTS = {"platform": "Plataforma", "mentorship": "Mentoria"}
_PAYMENT_METHODS = {
    "card_auto_debit": "cartão de crédito (débito automático)",
    "card": "cartão de crédito",
    "boleto": "boleto",
    "pix": "PIX",
}
_MANUAL_METHODS = frozenset({"boleto", "pix"})
_PREPAID_PLANS = {3: "plano trimestral", 6: "plano semestral", 12: "plano anual"}
# Gateway codes worth translating; anything else is shown as the caller gave it.
_FAILURE_REASONS = {
    "insufficient_funds": "saldo ou limite insuficiente",
    "card_declined": "cartão recusado pelo banco emissor",
    "do_not_honor": "cartão recusado pelo banco emissor",
    "expired_card": "cartão vencido",
    "card_expired": "cartão vencido",
    "invalid_card": "dados do cartão inválidos",
    "stolen_card": "cartão bloqueado pelo banco emissor",
    "lost_card": "cartão bloqueado pelo banco emissor",
    "timeout": "o banco emissor não respondeu a tempo",
    # The reasons regua.gateway.asaas gives a refused card.
    "expired": "cartão vencido",
    "stolen_or_lost": "cartão bloqueado pelo banco emissor",
    "invalid_token": "dados do cartão inválidos",
    "card_canceled": "cartão cancelado ou bloqueado",
    "generic": "transação não autorizada pelo banco emissor",
    # Not the bank's: regua does not charge a card saved without the customer's IP (see the README).
    "remote_ip_missing": "o cartão salvo precisa ser cadastrado de novo",
}
_REFUND_REASONS = {
    "duplicate": "pagamento em duplicidade",
    "requested_by_customer": "solicitação do cliente",
    "canceled": "cancelamento do serviço",
}


def product_label(line: InvoiceLine) -> str:
    """What the invoice pays for: the product and, for the platform, which kind of period."""
    label = _PRODUCTS[line.product]
    if line.product != "platform":
        return label
    months = (line.period_end.year - line.period_start.year) * 12 + line.period_end.month - line.period_start.month + 1
    if months == 1:
        prorated = line.period_start.day != 1
        return f"{label} (mensalidade{' proporcional' if prorated else ''})"
    plan = _PREPAID_PLANS.get(months)
    return f"{label} ({plan})" if plan else label


def variables(context: EmailContext) -> dict[str, Any]:
    """The template's namespace: the context's fields and what follows from them."""
    if not context.invoices and context.kind not in SUBSCRIPTION_KINDS:
        raise ValueError(f"a {context.kind} email names the invoices it is about; none were given")
    for line in context.invoices:
        if line.product not in _PRODUCTS:
            raise ValueError(f"unknown product {line.product!r} on invoice {line.invoice_id!r}")
    if context.payment_method is not None and context.payment_method not in _PAYMENT_METHODS:
        raise ValueError(f"unknown payment method {context.payment_method!r}")

    values: dict[str, Any] = {field.name: getattr(context, field.name) for field in fields(context)}
    invoices = context.invoices
    first_due = min((line.due_date for line in invoices), default=None)
    block_on = context.block_on
    if block_on is None and first_due is not None and context.kind in _BLOCK_DATE_KINDS:
        block_on = first_due + timedelta(days=TOLERANCE_DAYS)
    products = tuple(dict.fromkeys(_PRODUCTS[line.product] for line in invoices))
    total_cents = sum(line.total_cents for line in invoices)
    last_end = max((line.period_end for line in invoices), default=None)
    amount_cents = total_cents if context.amount_cents is None else context.amount_cents
    names = [name for name, _ in context.recipients]
    values.update(
        block_on=block_on,
        last_day_to_pay=block_on - timedelta(days=1) if block_on is not None else None,
        amount_cents=amount_cents,
        refund_amount_cents=amount_cents if context.refund_amount_cents is None else context.refund_amount_cents,
        invoices_total_cents=total_cents,
        product=" e ".join(products),
        mentorship=any(line.product == "mentorship" for line in invoices),
        first_month=min((line.period_start for line in invoices), default=None),
        last_month=max((line.period_start for line in invoices), default=None),
        next_invoice_on=last_end + timedelta(days=1) if last_end is not None else None,
        method=_PAYMENT_METHODS.get(context.payment_method or ""),
        auto_debit=context.payment_method == "card_auto_debit",
        manual=context.payment_method in _MANUAL_METHODS,
        payment_due=context.kind in _PAYMENT_DUE_KINDS,
        greeting=names[0].strip() if len(names) == 1 else "",
        failure_text=_FAILURE_REASONS.get(context.failure_reason or "", context.failure_reason),
        refund_reason_text=_REFUND_REASONS.get(context.refund_reason or "", context.refund_reason),
        discount_percent=AUTO_DEBIT_DISCOUNT_PERCENT,
    )
    if context.kind in SUBSCRIPTION_KINDS:
        values.update(subscription_variables(context))
    return values


# The subscription's own mails (rule 3.10): what changes and from when.

SUBSCRIPTION_KINDS = frozenset({"subscription_changed", "subscription_canceled"})
_FREQUENCIES = {"monthly": "mensal", "quarterly": "trimestral", "semiannual": "semestral", "annual": "anual"}


@dataclass(frozen=True)
class TermsView:
    """A subscription's plan, modules, monthly price and frequency as the mail names them."""

    plan: str
    modules: tuple[str, ...]
    monthly_price_cents: int
    frequency: str

    @property
    def offer(self) -> str:
        """The plan and its modules, and how often it is paid: "Pro com Delivery e Fiscal, pagamento mensal"."""
        *first, last = self.modules or ("",)
        modules = f"{', '.join(first)} e {last}" if first else last
        return f"{self.plan}{' com ' + modules if modules else ''}, pagamento {self.frequency}"

    @classmethod
    def of(cls, recorded: dict[str, Any]) -> TermsView:
        frequency = recorded["frequency"]
        if frequency not in _FREQUENCIES:
            raise ValueError(f"unknown frequency {frequency!r}")
        return cls(
            str(recorded["plan"]),
            tuple(str(module) for module in recorded["modules"]),
            int(recorded["monthly_price_cents"]),
            _FREQUENCIES[frequency],
        )


def subscription_variables(context: EmailContext) -> dict[str, Any]:
    """The change a subscription mail tells (`context.change`, as the notification recorded it).

    `change_case` is what the template says: `upgrade` (in force today, its difference invoiced now),
    `now` (in force today, nothing to pay: a change before anything was issued), `later` (from the next
    period, not a payment), `withdrawn` (the change `old` that would have applied on `effective_on` is given up:
    `new` stays), `reactivated` or `canceled` (access until `effective_on`, the invoices still owed;
    `ended_at_once` when nothing was issued, so it ended before the day it was asked).
    """
    change = context.change
    if not change:
        raise ValueError(f"a {context.kind} email says what changed; no change was given")
    product = change["product"]
    if product not in _PRODUCTS:
        raise ValueError(f"unknown product {product!r}")
    effect = change["effect"]
    if (effect == "canceled") != (context.kind == "subscription_canceled"):
        raise ValueError(f"a {effect} change is not told by a {context.kind} email")
    old = TermsView.of(change["old"])
    new = TermsView.of(change["new"]) if change.get("new") else None
    if effect == "now":
        case = "upgrade" if context.invoices else "now"
    elif effect == "next_period":
        case = "later"
    elif effect in ("withdrawn", "reactivated", "canceled"):
        case = effect
    else:
        raise ValueError(f"unknown change effect {effect!r}")
    if case != "canceled" and new is None:
        raise ValueError(f"a {effect} change names the new terms")
    effective_on = date.fromisoformat(change["effective_on"]) if change.get("effective_on") else None
    if effective_on is None and case in ("later", "withdrawn", "canceled"):
        raise ValueError(f"a {effect} change says from when")
    changed_on = date.fromisoformat(change["changed_on"]) if change.get("changed_on") else None
    return {
        "change_case": case,
        "changed_on": changed_on,
        # Canceled before any period was issued (a trial, a start ahead): it ended the eve of that day.
        "ended_at_once": case == "canceled"
        and changed_on is not None
        and effective_on is not None
        and effective_on < changed_on,
        "old": old,
        "new": new,
        "effective_on": effective_on,
        "product": _PRODUCTS[product],
        "mentorship": product == "mentorship",
    }


_NOT_DIGITS = re.compile(r"[^0-9]")


def printed_boleto_line(line: str) -> str:
    """A boleto's typeable line as it is printed (FEBRABAN: 5.5 5.6 5.6 1 14 digits), from its 47 digits; any other
    text is left as it came (a gateway that already grouped it, or a line of another length)."""
    digits = _NOT_DIGITS.sub("", line)
    if len(digits) != 47 or len(digits) != len(line.replace(".", "").replace(" ", "")):
        return line
    fields = (digits[0:10], digits[10:21], digits[21:32])
    grouped = [f"{field[:5]}.{field[5:]}" for field in fields]
    return " ".join([*grouped, digits[32], digits[33:]])
