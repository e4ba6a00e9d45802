"""The reads behind "needs a person": what waits for someone's decision or hands, a page of each."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import exists, select
from sqlalchemy.orm import Session, defer

from billing.journal import Notification
from billing.models import (
    Account,
    Charge,
    ChargeStatus,
    Contact,
    Invoice,
    InvoiceStatus,
    NotificationStatus,
    Payment,
    PaymentStatus,
    Refund,
    Subscription,
)
from billing.records import Receipt, ReceiptReview, ReviewStatus
from billing.refunds import refunds_by_hand
from regua.ops.queries import DAY, PAGE, ChargeFacts, charge_facts, with_attempts

STUCK_AFTER = timedelta(minutes=15)
"""A charge with no gateway id this long after it was opened: the gateway never answered for it."""


@dataclass(frozen=True)
class ReviewRow:
    """A receipt sent after its invoice's window, waiting for a grant or a rejection."""

    review: ReceiptReview
    invoice: Invoice
    receipts: list[Receipt] = field(default_factory=list)
    """The files sent for this invoice, newest first (none: ops recorded it through the API)."""


@dataclass(frozen=True)
class NeedsPerson:
    refunds: list[Refund]
    duplicates: list[Payment]
    verifications: list[Invoice]
    stuck_charges: list[ChargeFacts]
    no_contact: list[Account]
    failed_emails: list[Notification]
    reviews: list[ReviewRow] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(
            len(part)
            for part in (
                self.refunds,
                self.duplicates,
                self.verifications,
                self.stuck_charges,
                self.no_contact,
                self.failed_emails,
                self.reviews,
            )
        )


def needs_person(session: Session, now: datetime) -> NeedsPerson:
    duplicates = session.scalars(
        select(Payment)
        .where(Payment.status == PaymentStatus.DUPLICATE.value)
        .order_by(Payment.paid_at.desc())
        .limit(PAGE)
    )
    verifications = session.scalars(
        select(Invoice)
        .where(Invoice.status == InvoiceStatus.VERIFYING.value, Invoice.verifying_until <= now + DAY)
        .order_by(Invoice.verifying_until)
        .limit(PAGE)
    )
    stuck = session.scalars(
        select(Charge)
        .where(
            Charge.status == ChargeStatus.PENDING.value,
            Charge.gateway_payment_id.is_(None),
            Charge.created_at <= now - STUCK_AFTER,
        )
        .order_by(Charge.created_at)
        .limit(PAGE)
    )
    billing_contact = exists().where(Contact.account_id == Account.id, Contact.manage_payments.is_(True))
    subscribed = exists().where(Subscription.account_id == Account.id)
    no_contact = session.scalars(
        select(Account).where(~billing_contact, subscribed).order_by(Account.created_at.desc()).limit(PAGE)
    )
    failed = session.scalars(
        select(Notification)
        .where(Notification.status == NotificationStatus.FAILED.value)
        .order_by(Notification.created_at.desc())
        .limit(PAGE)
    )
    return NeedsPerson(
        refunds=refunds_by_hand(session, now)[:PAGE],
        duplicates=list(duplicates),
        verifications=list(verifications),
        stuck_charges=[charge_facts(charge, found) for charge, found in with_attempts(session, list(stuck))],
        no_contact=list(no_contact),
        failed_emails=list(failed),
        reviews=waiting_reviews(session),
    )


def waiting_reviews(session: Session) -> list[ReviewRow]:
    """Oldest first (the customer who waits longest), with the invoice and its receipts' names, not files."""
    found = [
        (review, invoice)
        for review, invoice in session.execute(
            select(ReceiptReview, Invoice)
            .join(Invoice, Invoice.id == ReceiptReview.invoice_id)
            .where(ReceiptReview.status == ReviewStatus.WAITING.value)
            .order_by(ReceiptReview.requested_at, ReceiptReview.id)
            .limit(PAGE)
        )
    ]
    receipts: dict[str, list[Receipt]] = {invoice.id: [] for _, invoice in found}
    if receipts:
        for receipt in session.scalars(
            select(Receipt)
            .options(defer(Receipt.content))
            .where(Receipt.invoice_id.in_(list(receipts)))
            .order_by(Receipt.received_at.desc(), Receipt.id)
        ):
            receipts[receipt.invoice_id].append(receipt)
    return [ReviewRow(review, invoice, receipts[invoice.id]) for review, invoice in found]
