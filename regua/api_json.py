"""The product API's answers as JSON: accounts, subscriptions, invoices, charges, payments, refunds, checkouts."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from billing.checkout import CheckoutResult
from billing.models import Account, Charge, ChargeInvoice, ChargeStatus, Invoice, Payment, Refund, Subscription
from regua.api_catalog import pending_change_json


def utc_text(instant: datetime | None) -> str | None:
    """Instants of money movements, in UTC: "2026-12-01T03:05:00Z"."""
    if instant is None:
        return None
    return instant.astimezone(UTC).isoformat().replace("+00:00", "Z")


def invoice_json(invoice: Invoice, open_charge_id: str | None = None) -> dict[str, Any]:
    """An invoice as the appendix shows it; `open_charge_id` is the pending charge collecting it, if any."""
    return {
        "id": invoice.id,
        "account_id": invoice.account_id,
        "product": invoice.product,
        "period_start": invoice.period_start.isoformat(),
        "period_end": invoice.period_end.isoformat(),
        "kind": invoice.kind,
        "due_date": invoice.due_date.isoformat(),
        "subtotal_cents": invoice.subtotal_cents,
        "discount_cents": invoice.discount_cents,
        "total_cents": invoice.total_cents,
        "status": invoice.status,
        "paid_at": utc_text(invoice.paid_at),
        "charge_id": invoice.charge_id,
        "open_charge_id": open_charge_id,
        "payment_method": invoice.payment_method,
        "verifying_until": utc_text(invoice.verifying_until),
    }


def open_charges(session: Session, invoice_ids: list[str]) -> dict[str, str]:
    """Invoice id -> the pending charge collecting it (the newest, should a superseded one linger)."""
    if not invoice_ids:
        return {}
    rows = session.execute(
        select(ChargeInvoice.invoice_id, Charge.id)
        .join(Charge, Charge.id == ChargeInvoice.charge_id)
        .where(ChargeInvoice.invoice_id.in_(invoice_ids), Charge.status == ChargeStatus.PENDING.value)
        .order_by(Charge.created_at, Charge.id)
    )
    return dict(rows.all())


def invoices_json(session: Session, invoices: list[Invoice]) -> list[dict[str, Any]]:
    pending = open_charges(session, [invoice.id for invoice in invoices])
    return [invoice_json(invoice, pending.get(invoice.id)) for invoice in invoices]


def payment_codes(charge: Charge) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """How to pay a PIX or a boleto charge, once the gateway gave its codes: (pix, boleto)."""
    pix = boleto = None
    if charge.method == "pix" and charge.pix_code:
        pix = {"code": charge.pix_code, "qr_image": charge.pix_qr, "expires_at": charge.pix_expires_at}
    if charge.method == "boleto" and charge.boleto_line:
        boleto = {"line": charge.boleto_line, "url": charge.boleto_url, "bar_code": charge.boleto_bar_code}
    return pix, boleto


def charge_json(charge: Charge) -> dict[str, Any]:
    pix, boleto = payment_codes(charge)
    return {
        "id": charge.id,
        "account_id": charge.account_id,
        "product": charge.product,
        "method": charge.method,
        "amount_cents": charge.amount_cents,
        "installments": charge.installments,
        "status": charge.status,
        "failure_code": charge.failure_code,
        "created_at": utc_text(charge.created_at),
        "confirmed_at": utc_text(charge.confirmed_at),
        "invoice_ids": charge.invoice_ids,
        "pix": pix,
        "boleto": boleto,
    }


def account_json(account: Account) -> dict[str, Any]:
    return {
        "id": account.id,
        "name": account.name,
        "document": account.document,
        "contacts": [
            {"email": c.email, "name": c.name, "manage_payments": c.manage_payments} for c in account.contacts
        ],
        "trial_ends_at": utc_text(account.trial_ends_at),
        "gateway_customer_id": account.gateway_customer_id,
    }


def account_input(account: Account) -> dict[str, Any]:
    """An account as the body of a PUT that would leave it unchanged: the base a PATCH is laid on."""
    body = account_json(account)
    del body["id"]
    return body


def subscription_json(subscription: Subscription) -> dict[str, Any]:
    return {
        "id": subscription.id,
        "account_id": subscription.account_id,
        "product": subscription.product,
        "plan": subscription.plan,
        "modules": subscription.modules,
        "monthly_price_cents": subscription.monthly_price_cents,
        "frequency": subscription.frequency,
        "payment_method": subscription.payment_method,
        "installments": subscription.installments,
        "starts_on": subscription.starts_on.isoformat(),
        "has_card_token": bool(subscription.card_token),
        "remote_ip": subscription.remote_ip,
        "price_source": subscription.price_source,
        "pending_change": pending_change_json(subscription),
        "canceled_at": utc_text(subscription.canceled_at),
        "ends_on": subscription.ends_on.isoformat() if subscription.ends_on else None,
    }


def payment_json(payment: Payment) -> dict[str, Any]:
    return {
        "id": payment.id,
        "invoice_ids": payment.invoice_ids,
        "amount_cents": payment.amount_cents,
        "method": payment.method,
        "status": payment.status,
        "paid_at": utc_text(payment.paid_at),
        "gateway": payment.gateway,
    }


def refund_json(refund: Refund) -> dict[str, Any]:
    return {
        "id": refund.id,
        "payment_id": refund.payment_id,
        "amount_cents": refund.amount_cents,
        "refunded_at": utc_text(refund.refunded_at),
        "reason": refund.reason,
        "status": refund.status,
    }


def checkout_json(result: CheckoutResult) -> dict[str, Any]:
    """A checkout's answer: the charge, its invoices, and how to pay it (or how the card went)."""
    charge = result.charge
    pix, boleto = payment_codes(charge)
    card = None
    if charge.method == "card":
        decline = result.card.decline if result.card is not None else None
        card = {
            "status": charge.status,
            "installments": charge.installments,
            "decline": None
            if decline is None
            else {"hard": decline.hard, "reason": decline.reason, "message": decline.message},
            "page_url": charge.invoice_url if result.card is None else None,
        }
    open_charge = charge.id if charge.status == ChargeStatus.PENDING else None
    return {
        "charge_id": charge.id,
        "amount_cents": charge.amount_cents,
        "method": charge.method,
        "status": charge.status,
        "invoices": [invoice_json(invoice, open_charge) for invoice in result.invoices],
        "pix": pix,
        "boleto": boleto,
        "card": card,
    }
