"""Receipts reviewed by a person (rule 3.7): after an invoice's one window, only ops grant another or reject."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from billing.blocking import BlockChanges, lock_accounts, reconcile_blocks
from billing.errors import Conflict, InvalidInput, NotFound
from billing.ids import new_id
from billing.models import UNPAID, Invoice, InvoiceStatus
from billing.policy import Policy
from billing.records import ReceiptReview, ReviewStatus

NOTE_CHARS = 500


def request_review(session: Session, invoice: Invoice, now: datetime) -> ReceiptReview:
    """The review waiting for this invoice, asked for now if none waits (later receipts join it).

    The caller holds the account's lock, so two receipts at once find or make the same one.
    """
    waiting = session.scalar(
        select(ReceiptReview).where(
            ReceiptReview.invoice_id == invoice.id, ReceiptReview.status == ReviewStatus.WAITING.value
        )
    )
    if waiting is not None:
        return waiting
    review = ReceiptReview(
        id=new_id("rrv"),
        account_id=invoice.account_id,
        invoice_id=invoice.id,
        requested_at=now,
        status=ReviewStatus.WAITING.value,
    )
    session.add(review)
    session.flush()
    return review


@dataclass(frozen=True)
class Decision:
    review: ReceiptReview
    invoice: Invoice
    changes: BlockChanges


def grant_review(session: Session, review_id: str, by: str, note: str, now: datetime, policy: Policy) -> Decision:
    """A person saw the receipt and gives the invoice a new window from now: the block lifts provisionally."""
    review, invoice = _waiting(session, review_id, by, note)
    if invoice.status not in UNPAID:
        raise Conflict(f"invoice {invoice.id} is {invoice.status}: there is nothing left to verify")
    invoice.status = InvoiceStatus.VERIFYING.value
    invoice.verifying_until = now + policy.verification_window
    # Granted on a person's word: a failure of some gateway payment does not end this window.
    invoice.verifying_charge_id = None
    _decide(review, ReviewStatus.GRANTED, by, note, now)
    review.verifying_until = invoice.verifying_until
    session.flush()
    return Decision(review, invoice, reconcile_blocks(session, [invoice.account_id], now))


def reject_review(session: Session, review_id: str, by: str, note: str, now: datetime) -> Decision:
    """A person found no payment behind the receipt: the invoice stays as it is."""
    review, invoice = _waiting(session, review_id, by, note)
    _decide(review, ReviewStatus.REJECTED, by, note, now)
    session.flush()
    return Decision(review, invoice, BlockChanges())


def _waiting(session: Session, review_id: str, by: str, note: str) -> tuple[ReceiptReview, Invoice]:
    if not by.strip():
        raise InvalidInput("by", "a review is decided by a named person")
    if not note.strip():
        raise InvalidInput("note", "say what was checked: the note is required")
    account_id = session.scalar(select(ReceiptReview.account_id).where(ReceiptReview.id == review_id))
    if account_id is None:
        raise NotFound(f"no receipt review {review_id!r}")
    lock_accounts(session, [account_id])
    review = session.get(ReceiptReview, review_id, with_for_update=True)
    assert review is not None
    if review.status != ReviewStatus.WAITING:
        raise Conflict(f"receipt review {review_id} was already {review.status} by {review.decided_by}")
    invoice = session.get(Invoice, review.invoice_id, with_for_update=True)
    assert invoice is not None
    return review, invoice


def _decide(review: ReceiptReview, status: ReviewStatus, by: str, note: str, now: datetime) -> None:
    review.status = status.value
    review.decided_at = now
    review.decided_by = by.strip()[:100]
    review.note = note.strip()[:NOTE_CHARS]
