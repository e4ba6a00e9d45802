"""Records kept beside the books: what ops did on the dashboard, the receipts customers sent and their
reviews, the shared test clock, each change of a subscription. They hold no money; `billing.db` loads them
with the models so the schema is whole."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum

from sqlalchemy import Date, ForeignKey, Index, Integer, String, text
from sqlalchemy.orm import Mapped, mapped_column

from billing.models import Base


class OpsAction(Base):
    """One thing a person did from the ops dashboard: who, when, what, on which records, and how it went."""

    __tablename__ = "ops_actions"
    __table_args__ = (Index("ix_ops_actions_at", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime]
    by: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(64))
    targets: Mapped[list[str]]
    """The ids acted on (events, messages, refunds)."""
    result: Mapped[str] = mapped_column(String(500))


class Receipt(Base):
    """A receipt the customer sent from the payment page: the file itself, kept for ops to check (rule 3.7)."""

    __tablename__ = "receipts"
    __table_args__ = (Index("ix_receipts_received_at", "received_at"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    invoice_id: Mapped[str] = mapped_column(ForeignKey("invoices.id"))
    filename: Mapped[str] = mapped_column(String(200))
    content_type: Mapped[str] = mapped_column(String(64))
    """Found from the file's first bytes (PDF, PNG or JPEG), never taken from the browser's word."""
    size_bytes: Mapped[int]
    sha256: Mapped[str] = mapped_column(String(64))
    content: Mapped[bytes]
    received_at: Mapped[datetime]


class ReviewStatus(StrEnum):
    WAITING = "waiting"
    GRANTED = "granted"
    REJECTED = "rejected"


class ReceiptReview(Base):
    """A receipt sent after its invoice's verification window ended: it lifts nothing until a person decides
    (rule 3.7). One waits per invoice at a time; a grant opens a new window from the grant."""

    __tablename__ = "receipt_reviews"
    __table_args__ = (
        Index(
            "uq_receipt_reviews_waiting",
            "invoice_id",
            unique=True,
            postgresql_where=text("status = 'waiting'"),
            sqlite_where=text("status = 'waiting'"),
        ),
        Index("ix_receipt_reviews_status_requested_at", "status", "requested_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    invoice_id: Mapped[str] = mapped_column(ForeignKey("invoices.id"))
    requested_at: Mapped[datetime]
    """The first receipt after the window that asked for it (later ones join the same review)."""
    status: Mapped[str] = mapped_column(String(16), default=ReviewStatus.WAITING)
    decided_at: Mapped[datetime | None]
    decided_by: Mapped[str | None] = mapped_column(String(100))
    note: Mapped[str | None] = mapped_column(String(500))
    verifying_until: Mapped[datetime | None]
    """The end of the window a grant opened."""


class SharedClock(Base):
    """The shared test clock outside production: one row, read by every process on this database.

    No row, or no instant, means the system time; once set, the instant stands until set or advanced.
    """

    __tablename__ = "shared_clock"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    instant: Mapped[datetime | None]
    updated_at: Mapped[datetime]


class SubscriptionChange(Base):
    """One change of a subscription by rule 3.10, as it was made: what it was, what it became, from when.

    Written when the change is made; the notification pass tells it (`subscription_changed`,
    `subscription_canceled`) once per row. A cancellation keeps no new terms.
    """

    __tablename__ = "subscription_changes"
    __table_args__ = (Index("ix_subscription_changes_at", "at"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    subscription_id: Mapped[str] = mapped_column(ForeignKey("subscriptions.id"))
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    product: Mapped[str] = mapped_column(String(16))
    at: Mapped[datetime]
    effect: Mapped[str] = mapped_column(String(16))
    """`now` (an upgrade, or a change before anything was issued), `next_period`, `withdrawn` (a waiting change
    given up: `old_*` are its terms, `new_*` the terms that stay), `canceled` or `reactivated`."""
    effective_on: Mapped[date | None] = mapped_column(Date)
    """The first day of the new terms; for a cancellation, the subscription's last day."""
    old_plan: Mapped[str] = mapped_column(String(64))
    old_modules: Mapped[list[str]]
    old_monthly_price_cents: Mapped[int]
    old_frequency: Mapped[str] = mapped_column(String(16))
    new_plan: Mapped[str | None] = mapped_column(String(64))
    new_modules: Mapped[list[str] | None]
    new_monthly_price_cents: Mapped[int | None]
    new_frequency: Mapped[str | None] = mapped_column(String(16))
    payment_method: Mapped[str] = mapped_column(String(16))
    """The method the subscription is paid with after the change (an upgrade's difference is charged by it)."""
    proration_invoice_id: Mapped[str | None] = mapped_column(ForeignKey("invoices.id"))
