"""A send batch reads its own rows, whatever PostgreSQL's statistics say about pending notifications.

The statistics a database keeps can be old: taken mid-month when nothing was pending (or never, with
autovacuum off), while day 1 has just recorded thousands of pending notifications. Whatever plan they
lead to, claiming and recording a batch of sixteen must not read every pending notification.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import event, text

from bench.emails import customers
from billing.models import NotificationStatus
from regua.mailer import SmtpPostman
from regua.runtime import Runtime
from regua.settings import Settings
from tests.integration.notification_helpers import mail_settings, notifications
from tests.integration.smtp_sink import SmtpSink, smtp_sink

__all__ = ["smtp_sink"]

PENDING = 600
BATCH = 16


@pytest.fixture
def settings(settings: Settings, smtp_sink: SmtpSink) -> Settings:
    return mail_settings(settings, smtp_sink.url)


def statistics_taken_when_none_was_pending(runtime: Runtime) -> None:
    with runtime.engine.begin() as connection:
        connection.execute(text("UPDATE notifications SET status = 'sent'"))
        connection.execute(text("ANALYZE notifications"))
        connection.execute(text("UPDATE notifications SET status = 'pending'"))


@contextmanager
def explained(runtime: Runtime) -> Iterator[list[dict[str, Any]]]:
    """The plan of every statement the engine's connections run meanwhile, as executed (auto_explain)."""
    found: list[dict[str, Any]] = []

    def explain(dbapi_connection: Any, _record: Any) -> None:
        def noticed(diagnostic: Any) -> None:
            message = diagnostic.message_primary or ""
            if "plan:" in message:
                found.append(json.loads(message.split("plan:", 1)[1]))

        dbapi_connection.add_notice_handler(noticed)
        with dbapi_connection.cursor() as cursor:
            cursor.execute("LOAD 'auto_explain'")
            for setting in ("log_min_duration = 0", "log_analyze = on", "log_format = json", "log_level = notice"):
                cursor.execute(f"SET auto_explain.{setting}")
        dbapi_connection.commit()

    runtime.engine.dispose()  # the connections opened from now on are explained
    event.listen(runtime.engine, "connect", explain)
    try:
        yield found
    finally:
        event.remove(runtime.engine, "connect", explain)
        runtime.engine.dispose()


def scans(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every node of the plan that reads notifications (the table or one of its indexes)."""
    if node.get("Relation Name") == "notifications" or str(node.get("Index Name", "")).startswith(
        ("pk_notifications", "ix_notifications")
    ):
        yield node
    for child in node.get("Plans", []):
        yield from scans(child)


def rows_read(node: dict[str, Any]) -> int:
    """Row versions a scan went through, over all its loops: those it passed on and those it filtered out."""
    removed = node.get("Rows Removed by Filter", 0) + node.get("Rows Removed by Index Recheck", 0)
    return (node["Actual Rows"] + removed) * node["Actual Loops"]


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_batch_claims_and_records_its_sixteen_rows_without_reading_every_pending_notification(
    runtime: Runtime, smtp_sink: SmtpSink
) -> None:
    ids = customers(runtime, PENDING, "cliente")  # boleto customers' December notifications, as bench.emails sets up
    assert len(ids) == PENDING
    statistics_taken_when_none_was_pending(runtime)
    batch = ids[:BATCH]

    postman = SmtpPostman(runtime)
    try:
        with explained(runtime) as plans:
            deliveries = postman.deliver(batch)
    finally:
        postman.close()

    assert [delivery.outcome.value for delivery in deliveries] == ["sent"] * BATCH
    assert len(smtp_sink.messages) == BATCH
    sent = [n.id for n in notifications(runtime) if n.status == NotificationStatus.SENT]
    assert sorted(sent) == sorted(batch)
    updates = [plan for plan in plans if plan["Query Text"].lstrip().upper().startswith("UPDATE NOTIFICATIONS")]
    assert len(updates) >= 2  # the claim and the record
    for plan in updates:
        for scan in scans(plan["Plan"]):
            assert scan.get("Index Name") != "ix_notifications_status_created_at", plan["Query Text"][:120]
            # a row's versions: recorded, the statistics' two updates, the claim: never the 600 pending
            assert rows_read(scan) <= 4 * BATCH, (plan["Query Text"][:120], json.dumps(scan)[:2000])
