"""Payment verification (rule 3.7): receipts and pending payments hold off or lift a block for a window
counted from the first of them; only the window's end, a payment, or the gateway failing that very payment
ends it."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from billing.blocking import BlockChanges, lock_accounts, reconcile_blocks
from billing.errors import Conflict, NotFound
from billing.models import UNPAID, ChargeStatus, Invoice, InvoiceStatus
from billing.policy import Policy
from billing.settlement import lock_charge


def record_receipt(session: Session, invoice_id: str, now: datetime, policy: Policy) -> tuple[Invoice, BlockChanges]:
    """Ops hold a receipt the customer sent: the invoice is in verification (rule 3.7)."""
    account_id = session.scalar(select(Invoice.account_id).where(Invoice.id == invoice_id))
    if account_id is None:
        raise NotFound(f"no invoice {invoice_id!r}")
    lock_accounts(session, [account_id])
    invoice = session.get(Invoice, invoice_id, with_for_update=True)
    assert invoice is not None
    if invoice.status not in UNPAID:
        raise Conflict(f"invoice {invoice_id} is {invoice.status}: only an unpaid invoice can be verified")
    if invoice.status != InvoiceStatus.VERIFYING:
        # A second receipt does not restart the window: it runs from the first (rule 3.7).
        invoice.status = InvoiceStatus.VERIFYING.value
        invoice.verifying_until = now + policy.verification_window
    invoice.verifying_charge_id = None
    session.flush()
    return invoice, reconcile_blocks(session, [account_id], now)


def mark_charge_verifying(session: Session, charge_id: str, now: datetime, policy: Policy) -> BlockChanges:
    """A gateway reports the charge's payment started but not cleared: its invoices are verifying.

    Once: a report about the same charge after its window ended (a gateway telling it again) does not
    open another window; the invoice stays overdue (rule 3.7, later reports do not extend it).
    """
    charge = lock_charge(session, charge_id)
    if charge.status != ChargeStatus.PENDING:
        return BlockChanges()
    session.execute(
        update(Invoice)
        .where(
            Invoice.id.in_(charge.invoice_ids),
            Invoice.status == InvoiceStatus.OPEN,
            or_(Invoice.verifying_charge_id.is_(None), Invoice.verifying_charge_id != charge.id),
        )
        .values(
            status=InvoiceStatus.VERIFYING.value,
            verifying_until=now + policy.verification_window,
            verifying_charge_id=charge.id,
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
