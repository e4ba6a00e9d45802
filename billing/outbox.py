"""The outbox: how a notification's delivery went, and the pending ones whose job was lost."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from billing.journal import Notification
from billing.models import NotificationStatus
from billing.ports import Books

LEASE = timedelta(seconds=60)
"""Nobody starts another attempt within this long of the latest one (an attempt lasts well under a minute)."""
REQUEUE_AFTER = timedelta(minutes=5)
"""A pending notification younger than this is still in its first job's hands."""
QUIET_AFTER = timedelta(minutes=15)
"""Not tried for this long while pending: its job is gone (Dramatiq retries it every 10 minutes at most)."""


class Outcome(StrEnum):
    SENT = "sent"
    FAILED = "failed"
    OBSOLETE = "obsolete"
    DEFERRED = "deferred"
    """A temporary failure: still pending, to be retried."""
    BUSY = "busy"
    """Another attempt holds the lease: still pending, to be looked at later."""
    DONE = "done"
    """Nothing to do: already sent, failed, obsolete or without contact (or unknown)."""


@dataclass(frozen=True)
class Delivery:
    outcome: Outcome
    detail: str = ""
    unreachable: bool = False


def defer_notifications(books: Books, notification_ids: Sequence[str], now: datetime, reason: str) -> None:
    """Count these as tried at `now` without trying them (the server is unreachable): left for a later pass."""
    if not notification_ids:
        return
    books.transaction(
        lambda session: session.execute(
            update(Notification)
            .where(
                Notification.id.in_(list(notification_ids)),
                Notification.status == NotificationStatus.PENDING,
                or_(Notification.sent_at.is_(None), Notification.sent_at <= now - LEASE),
            )
            .values(sent_at=now, last_error=reason[:500])
            .execution_options(synchronize_session=False)
        )
    )


def notifications_to_send(session: Session, now: datetime, *, quiet_for: timedelta = QUIET_AFTER) -> list[str]:
    """Pending notifications older than 5 minutes that nobody has tried for `quiet_for`: their job is lost."""
    return list(
        session.scalars(
            select(Notification.id)
            .where(
                Notification.status == NotificationStatus.PENDING,
                Notification.created_at <= now - REQUEUE_AFTER,
                or_(Notification.sent_at.is_(None), Notification.sent_at <= now - quiet_for),
            )
            .order_by(Notification.created_at, Notification.id)
            .limit(10_000)
        )
    )
