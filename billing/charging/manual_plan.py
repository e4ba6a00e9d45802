"""Planning the PIX or boleto charge of every issued manual invoice (rule 3.3), a page of invoices at a time."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from billing.charging.inserts import insert_charges
from billing.db import BULK, refresh_statistics
from billing.models import (
    MANUAL_METHODS,
    ChargeInvoice,
    ChargeSource,
    ChargeStatus,
    Invoice,
    InvoiceStatus,
    new_charge_id,
)

PAGE = 5000
"""Invoices planned per page, by id."""


def manual_charge_key(invoice_id: str) -> str:
    return f"manual:{invoice_id}"


def plan_manual_charges(
    session: Session, now: datetime, *, on_batch: Callable[[list[str]], None] | None = None
) -> list[str]:
    """Open the PIX or boleto charge of every issued manual invoice that has no charge yet (rule 3.3).

    Returns the ids this pass created. An invoice with any charge (its own, or a checkout's, pending
    or not) is left alone: the customer has codes, or chose another way. Paid, void and verifying
    invoices get none. The charge exists before its codes do: a job asks the gateway for them.
    """
    charged = select(ChargeInvoice.invoice_id).where(ChargeInvoice.invoice_id == Invoice.id).exists()
    due = (
        Invoice.payment_method.in_(MANUAL_METHODS),
        Invoice.status == InvoiceStatus.OPEN.value,
        Invoice.issued_at <= now,
        Invoice.total_cents > 0,
        ~charged,
    )
    created: list[str] = []
    after = ""
    while True:  # PAGE invoices at a time, by id: day 1 at a million boleto and PIX payers never sits in memory
        candidates = session.execute(
            select(Invoice.id, Invoice.account_id, Invoice.product, Invoice.total_cents, Invoice.payment_method)
            .where(*due, Invoice.id > after)
            .order_by(Invoice.id)
            .limit(PAGE)
        ).all()
        if not candidates:
            return created
        drafts = [
            {
                "id": new_charge_id(),
                "account_id": row.account_id,
                "product": row.product,
                "method": row.payment_method,
                "amount_cents": row.total_cents,
                "installments": 1,
                "status": ChargeStatus.PENDING.value,
                "idempotency_key": manual_charge_key(row.id),
                "gateway": "asaas",
                "source": ChargeSource.MANUAL.value,
                "regua_day": None,
                "card_ref": None,
                "created_at": now,
                "invoice_id": row.id,
            }
            for row in candidates
        ]
        page = insert_charges(session, drafts, on_batch)
        if len(page) >= BULK and len(created) < BULK:  # the next pages read the links this one wrote
            refresh_statistics(session, "charges", "charge_invoices")
        created += page
        after = candidates[-1].id
