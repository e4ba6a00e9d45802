"""Payment verification (rule 3.7): receipts and pending payments hold off or lift a block for a window
counted from the first of them; only the window's end, a payment, or the gateway failing that very payment
ends it. One window per invoice: a receipt after it waits for a person (`billing.reviews`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from billing.blocking import BlockChanges, lock_accounts, reconcile_blocks
from billing.errors import Conflict, NotFound
from billing.models import UNPAID, ChargeStatus, Invoice, InvoiceStatus
from billing.policy import Policy
from billing.records import ReceiptReview
from billing.reviews import request_review
from billing.settlement import lock_charge


@dataclass(frozen=True)
class ReceiptRecorded:
    """What a receipt did: opened the invoice's window, stood behind the running one, or waits for a person."""

    invoice: Invoice
    changes: BlockChanges
    review: ReceiptReview | None = None
    """Set when the invoice had its window already: the receipt lifts nothing until a person decides."""


def in_window(invoice: Invoice, now: datetime) -> bool:
    """Verifying, and its window still runs at `now` (the tick may not have closed an ended one yet)."""
    until = invoice.verifying_until
    return invoice.status == InvoiceStatus.VERIFYING and until is not None and until > now


def record_receipt(session: Session, invoice_id: str, now: datetime, policy: Policy) -> ReceiptRecorded:
    """A receipt the customer sent (from the payment page, or through ops): rule 3.7.

    The first one opens the invoice's verification window; one during the window backs it without
    extending it; one after the window ended (however it ended) waits for a person.
    """
    account_id = session.scalar(select(Invoice.account_id).where(Invoice.id == invoice_id))
    if account_id is None:
        raise NotFound(f"no invoice {invoice_id!r}")
    lock_accounts(session, [account_id])
    invoice = session.get(Invoice, invoice_id, with_for_update=True)
    assert invoice is not None
    if invoice.status not in UNPAID:
        raise Conflict(f"invoice {invoice_id} is {invoice.status}: only an unpaid invoice can be verified")
    if in_window(invoice, now):
        # Backed by a receipt, a failure of the gateway's own payment no longer ends the window.
        invoice.verifying_charge_id = None
    elif invoice.verification_started_at is None:
        invoice.status = InvoiceStatus.VERIFYING.value
        invoice.verifying_until = now + policy.verification_window
        invoice.verification_started_at = now
        invoice.verifying_charge_id = None
    else:
        return ReceiptRecorded(invoice, BlockChanges(), request_review(session, invoice, now))
    session.flush()
    return ReceiptRecorded(invoice, reconcile_blocks(session, [account_id], now))


def mark_charge_verifying(session: Session, charge_id: str, now: datetime, policy: Policy) -> BlockChanges:
    """A gateway reports the charge's payment started but not cleared: its invoices are verifying.

    Once per invoice: a report after the invoice's window ended (the same payment told again, or another
    one) opens no other window; the invoice stays overdue until paid (rule 3.7).
    """
    charge = lock_charge(session, charge_id)
    if charge.status != ChargeStatus.PENDING:
        return BlockChanges()
    session.execute(
        update(Invoice)
        .where(
            Invoice.id.in_(charge.invoice_ids),
            Invoice.status == InvoiceStatus.OPEN,
            Invoice.verification_started_at.is_(None),
        )
        .values(
            status=InvoiceStatus.VERIFYING.value,
            verifying_until=now + policy.verification_window,
            verifying_charge_id=charge.id,
            verification_started_at=now,
        )
    )
    return reconcile_blocks(session, [charge.account_id], now)


def expire_verifications(session: Session, now: datetime) -> list[str]:
    """Verifications past their window: the invoices are open (and overdue) again.

    The charge it came from is kept: a later report of the same payment opens no new window.
    """
    expired = list(
        session.scalars(
            select(Invoice.id).where(Invoice.status == InvoiceStatus.VERIFYING, Invoice.verifying_until <= now)
        )
    )
    if expired:
        session.execute(
            update(Invoice)
            .where(Invoice.id.in_(expired), Invoice.status == InvoiceStatus.VERIFYING)
            .values(status=InvoiceStatus.OPEN.value, verifying_until=None)
        )
    return expired
