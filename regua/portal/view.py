"""What the payment page shows, read from the books: plain data for the templates, no HTML."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from datetime import date, datetime

import segno
from sqlalchemy import select
from sqlalchemy.orm import Session

from billing.access import account_access
from billing.accounts import get_account
from billing.blocking import is_open_at
from billing.calendar import BillingCalendar
from billing.history import payment_history
from billing.models import UNPAID, Charge, ChargeInvoice, ChargeStatus, Invoice, InvoiceKind, RefundStatus
from billing.policy import Policy
from billing.records import ReceiptReview, ReviewStatus
from regua.mail import MONTH_NAMES
from regua.mail_variables import printed_boleto_line

PRODUCTS = {"platform": "Mensalidade da plataforma", "mentorship": "Mentoria"}
STATES = {
    "trial": "Período de teste",
    "active": "Em dia",
    "grace": "Aguardando pagamento",
    "verifying": "Verificação de pagamento",
    "blocked": "Acesso bloqueado",
    "canceled": "Assinatura encerrada",
}
METHODS = {"pix": "PIX", "boleto": "Boleto", "card": "Cartão de crédito", "other": "Outro"}
PAYMENT_STATUSES = {
    "confirmed": "Confirmado",
    "duplicate": "Pagamento em duplicidade",
    "refunded": "Reembolsado",
    "chargeback": "Contestado no cartão",
    "undone": "Recebimento em dinheiro desfeito",
}
REFUND_REASONS = {
    "duplicate": "Pagamento em duplicidade",
    "overpayment": "Valor pago a mais",
    "amount_mismatch": "Valor diferente do cobrado",
    "gateway": "Reembolso",
}
REFUND_STATUSES = {"owed": "Em andamento", "pending": "Em processamento no banco", "done": "Concluído"}


def day_text(day: date) -> str:
    return f"{day.day:02d}/{day.month:02d}/{day.year:04d}"


def period_text(start: date, end: date) -> str:
    """dezembro/2026, or "janeiro/2027 a março/2027" for a prepaid period."""
    first = f"{MONTH_NAMES[start.month - 1]}/{start.year}"
    if (start.year, start.month) == (end.year, end.month):
        return first
    return f"{first} a {MONTH_NAMES[end.month - 1]}/{end.year}"


@dataclass(frozen=True)
class PaymentCodes:
    """How a charge is paid: the PIX copy-paste code, the boleto's line and PDF, the gateway's own page."""

    pix_code: str | None
    boleto_line: str | None
    boleto_url: str | None
    invoice_url: str | None


def payment_codes(charge: Charge) -> PaymentCodes:
    """The one place the page reads how a charge is paid."""
    line = printed_boleto_line(charge.boleto_line) if charge.boleto_line else None
    return PaymentCodes(charge.pix_code, line, charge.boleto_url, charge.invoice_url)


@functools.lru_cache(maxsize=256)
def qr_data_uri(payload: str) -> str:
    """The PIX code as a QR image made here (SVG), ready for an <img src>: nothing loaded from elsewhere.

    Kept for the codes seen lately: drawing one takes about 25 ms, and a customer reloads the page."""
    return str(segno.make(payload, error="m").svg_data_uri(scale=5, border=2, dark="#000", light="#fff"))


@dataclass(frozen=True)
class InvoiceView:
    id: str
    period: str
    due_date: str
    subtotal_cents: int
    discount_cents: int
    total_cents: int
    status: str


@dataclass(frozen=True)
class ReviewView:
    """The latest review of an unpaid invoice's receipt, as the customer is told it."""

    invoice: InvoiceView
    status: str
    """waiting, granted (its window still runs) or rejected."""
    sent_on: str
    decided_on: str | None
    verifying_until: str | None


@dataclass(frozen=True)
class ProductView:
    product: str
    label: str
    state: str
    state_label: str
    block_at: str | None
    blocked_since: str | None
    owed: list[InvoiceView]
    later: list[InvoiceView]
    verifying: list[InvoiceView]
    verifying_until: str | None
    reviews: list[ReviewView] = field(default_factory=list)
    """Receipts sent after an invoice's window: waiting for a person, or what the person decided."""

    @property
    def owed_total_cents(self) -> int:
        return sum(invoice.total_cents for invoice in self.owed)


@dataclass(frozen=True)
class HistoryRow:
    when: str
    what: str
    amount_cents: int
    method: str
    status: str


@dataclass(frozen=True)
class PortalView:
    account_name: str
    products: list[ProductView]
    payments: list[HistoryRow] = field(default_factory=list)
    refunds: list[HistoryRow] = field(default_factory=list)


@dataclass(frozen=True)
class ChargeView:
    id: str
    product: str
    label: str
    method: str
    status: str
    amount_cents: int
    invoices: list[InvoiceView]
    codes: PaymentCodes
    gateway_payment_id: str | None
    access_state: str
    access_label: str

    @property
    def confirmed(self) -> bool:
        return self.status == ChargeStatus.CONFIRMED

    @property
    def pix_qr(self) -> str | None:
        return qr_data_uri(self.codes.pix_code) if self.codes.pix_code else None


def _invoice_view(invoice: Invoice) -> InvoiceView:
    period = period_text(invoice.period_start, invoice.period_end)
    if invoice.kind == InvoiceKind.PRORATION:  # an upgrade's difference, not a month of its own
        period = f"Mudança de plano, {day_text(invoice.period_start)} a {day_text(invoice.period_end)}"
    return InvoiceView(
        invoice.id,
        period,
        day_text(invoice.due_date),
        invoice.subtotal_cents,
        invoice.discount_cents,
        invoice.total_cents,
        invoice.status,
    )


def portal_view(
    session: Session, account_id: str, now: datetime, calendar: BillingCalendar, policy: Policy
) -> PortalView:
    """Per product: the access, what is owed now (rules 3.5, 3.6), what falls due later, what is verifying."""
    account = get_account(session, account_id)
    access = account_access(session, account_id, now, calendar, policy)
    unpaid = list(
        session.scalars(
            select(Invoice)
            .where(Invoice.account_id == account_id, Invoice.status.in_(UNPAID))
            .order_by(Invoice.period_start)
        )
    )
    reviews = _latest_reviews(session, [invoice.id for invoice in unpaid])
    products = []
    for product, state in access.items():
        mine = [invoice for invoice in unpaid if invoice.product == product]
        owed = [invoice for invoice in mine if invoice.id in state.owed]  # the account view's, as /access has it
        later = [invoice for invoice in mine if invoice not in owed and is_open_at(invoice, now)]
        verifying = [invoice for invoice in mine if not is_open_at(invoice, now)]
        until = max((i.verifying_until for i in verifying if i.verifying_until), default=None)
        told = [_review_view(reviews[i.id], i, now, calendar) for i in mine if i.id in reviews]
        products.append(
            ProductView(
                product,
                PRODUCTS.get(product, product),
                state.state,
                STATES.get(state.state, state.state),
                day_text(calendar.local_date(state.block_at)) if state.block_at else None,
                day_text(calendar.local_date(state.blocked_since)) if state.blocked_since else None,
                [_invoice_view(invoice) for invoice in owed],
                [_invoice_view(invoice) for invoice in later],
                [_invoice_view(invoice) for invoice in verifying],
                day_text(calendar.local_date(until)) if until else None,
                [review for review in told if review is not None],
            )
        )
    history = payment_history(session, account_id, calendar)
    payments = [
        HistoryRow(
            day_text(calendar.local_date(payment.paid_at)),
            _periods(session, payment.invoice_ids),
            payment.amount_cents,
            METHODS.get(payment.method, payment.method),
            PAYMENT_STATUSES.get(payment.status, payment.status),
        )
        for payment in history.payments
    ]
    refunds = [
        HistoryRow(
            day_text(calendar.local_date(refund.refunded_at or refund.created_at)),
            REFUND_REASONS.get(refund.reason, refund.reason),
            refund.amount_cents,
            "",
            REFUND_STATUSES.get(refund.status, refund.status),
        )
        for refund in history.refunds
        if refund.status != RefundStatus.CANCELED  # superseded by the gateway's own, or charged back
    ]
    return PortalView(account.name, products, payments, refunds)


def _latest_reviews(session: Session, invoice_ids: list[str]) -> dict[str, ReceiptReview]:
    latest: dict[str, ReceiptReview] = {}
    if invoice_ids:
        for review in session.scalars(
            select(ReceiptReview)
            .where(ReceiptReview.invoice_id.in_(invoice_ids))
            .order_by(ReceiptReview.requested_at, ReceiptReview.id)
        ):
            latest[review.invoice_id] = review
    return latest


def _review_view(
    review: ReceiptReview, invoice: Invoice, now: datetime, calendar: BillingCalendar
) -> ReviewView | None:
    """A grant is news while its window runs; after it, the invoice speaks for itself (open, overdue)."""
    granted_running = review.verifying_until is not None and review.verifying_until > now
    if review.status == ReviewStatus.GRANTED and not granted_running:
        return None
    return ReviewView(
        _invoice_view(invoice),
        review.status,
        day_text(calendar.local_date(review.requested_at)),
        day_text(calendar.local_date(review.decided_at)) if review.decided_at else None,
        day_text(calendar.local_date(review.verifying_until)) if review.verifying_until else None,
    )


def _periods(session: Session, invoice_ids: list[str]) -> str:
    """What a payment paid, as people say it: "Mentoria, novembro/2026; Mentoria, dezembro/2026"."""
    invoices = session.scalars(select(Invoice).where(Invoice.id.in_(invoice_ids)).order_by(Invoice.period_start))
    names = [(PRODUCTS.get(i.product, i.product), period_text(i.period_start, i.period_end)) for i in invoices]
    return "; ".join(f"{label}, {period}" for label, period in names)


def charge_view(
    session: Session, account_id: str, charge_id: str, now: datetime, calendar: BillingCalendar, policy: Policy
) -> ChargeView | None:
    """A charge of this account (None for any other: a link never shows another account's charge)."""
    charge = session.get(Charge, charge_id)
    if charge is None or charge.account_id != account_id:
        return None
    invoices = list(
        session.scalars(
            select(Invoice)
            .join(ChargeInvoice, ChargeInvoice.invoice_id == Invoice.id)
            .where(ChargeInvoice.charge_id == charge.id)
            .order_by(Invoice.period_start)
        )
    )
    access = account_access(session, account_id, now, calendar, policy).get(charge.product)
    state = access.state if access else "active"
    return ChargeView(
        charge.id,
        charge.product,
        PRODUCTS.get(charge.product, charge.product),
        charge.method,
        charge.status,
        charge.amount_cents,
        [_invoice_view(invoice) for invoice in invoices],
        payment_codes(charge),
        charge.gateway_payment_id,
        state,
        STATES.get(state, state),
    )


def invoice_of_account(session: Session, account_id: str, invoice_id: str) -> Invoice | None:
    invoice = session.get(Invoice, invoice_id)
    if invoice is None or invoice.account_id != account_id:
        return None
    return invoice
