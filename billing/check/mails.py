"""Invariants of emails: each (invoice or account, kind, step) sent at most once."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sqlalchemy import func, select

from billing.check.scope import Scope
from billing.journal import Notification
from billing.models import NotificationStatus


def mails_sent_twice(scope: Scope) -> Iterator[dict[str, Any]]:
    """Each notification (invoice or account, kind, step) sent at most once."""
    subject = func.coalesce(Notification.invoice_id, Notification.account_id)
    query = (
        select(subject.label("subject"), Notification.kind, Notification.step, func.count().label("sent"))
        .where(Notification.status == NotificationStatus.SENT)
        .group_by(subject, Notification.kind, Notification.step)
        .having(func.count() > 1)
    )
    for row in scope.session.execute(query):
        yield {"subject": row.subject, "kind": row.kind, "step": row.step, "sent": row.sent}
