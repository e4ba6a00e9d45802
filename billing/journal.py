"""What passed through regua's doors: webhook events stored, emails decided, reconciliation passes run.

They hold no money; `billing.db` loads them with the models so the schema is whole.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from billing.models import Base
from billing.states import EventStatus, NotificationStatus


class TickRun(Base):
    """One reconciliation pass: when it ran, for which `now`, and what it did."""

    __tablename__ = "tick_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    now: Mapped[datetime]
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime]
    actions: Mapped[dict[str, Any]]


class WebhookEvent(Base):
    """One accepted delivery (or one item of a PIX batch), raw body kept, unique per provider and key."""

    __tablename__ = "webhook_events"
    __table_args__ = (
        UniqueConstraint("provider", "dedupe_key"),
        Index("ix_webhook_events_status_received_at", "status", "received_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    provider: Mapped[str] = mapped_column(String(16))
    dedupe_key: Mapped[str] = mapped_column(String(200))
    event_type: Mapped[str] = mapped_column(String(64))
    body: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default=EventStatus.RECEIVED)
    received_at: Mapped[datetime]
    processed_at: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(default=0)
    outcome: Mapped[str | None] = mapped_column(String(200))
    charge_id: Mapped[str | None] = mapped_column(String(32))


class Notification(Base):
    """An email regua decided to send: once per (invoice or account, kind, step), whatever retries."""

    __tablename__ = "notifications"
    __table_args__ = (
        Index("ix_notifications_status_created_at", "status", "created_at"),
        Index("ix_notifications_kind_step", "kind", "step"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    dedupe_key: Mapped[str] = mapped_column(String(200), unique=True)
    """"<invoice or account id>:<kind>:<step>"."""
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    invoice_id: Mapped[str | None] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(32))
    step: Mapped[str] = mapped_column(String(64))
    recipients: Mapped[list[str]]
    context: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(16), default=NotificationStatus.PENDING)
    created_at: Mapped[datetime]
    sent_at: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(String(500))
    message_id: Mapped[str | None] = mapped_column(String(200))


# The ops dashboard's searches: events by day and by charge, an account's charges.
Index("ix_webhook_events_received_at", WebhookEvent.received_at)
Index("ix_webhook_events_charge_id", WebhookEvent.charge_id)
