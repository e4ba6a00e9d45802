"""a charge's state in typed columns and attempt rows; refunds that know their charge; chargeback amounts

Moves what `charges.details` held (a JSON bag the code branched on) into columns: the source and
régua day, the lease, the card digest, the gateway's status and codes, the cancel owed at the gateway;
each decline becomes an attempt row; refund claims and refunds that arrived before their payment
become refund rows and columns. `details` is dropped once its values have arrived.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29 22:40:00
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_CHARGE_COLUMNS = [
    sa.Column("source", sa.String(16), nullable=False, server_default="checkout"),
    sa.Column("regua_day", sa.Integer(), nullable=True),
    sa.Column("card_ref", sa.String(16), nullable=True),
    sa.Column("lease_holder", sa.String(64), nullable=True),
    sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
    sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("gateway_status", sa.String(40), nullable=True),
    sa.Column("rechecked_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("failed_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("canceled_reason", sa.String(40), nullable=True),
    sa.Column("superseded_by", sa.String(32), nullable=True),
    sa.Column("gateway_cancel_owed", sa.Boolean(), nullable=False, server_default=sa.false()),
    sa.Column("gateway_cancel_result", sa.String(200), nullable=True),
    sa.Column("gateway_canceled_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("pix_code", sa.Text(), nullable=True),
    sa.Column("pix_qr", sa.Text(), nullable=True),
    sa.Column("pix_expires_at", sa.String(40), nullable=True),
    sa.Column("boleto_line", sa.String(100), nullable=True),
    sa.Column("boleto_url", sa.String(500), nullable=True),
    sa.Column("boleto_bar_code", sa.String(100), nullable=True),
    sa.Column("invoice_url", sa.String(500), nullable=True),
]
_PLAIN = {
    "card_ref": "card_ref",
    "gateway_status": "gateway_status",
    "superseded_by": "superseded_by",
    "pix_code": "pix_code",
    "pix_qr": "pix_qr",
    "pix_expires_at": "pix_expires_at",
    "boleto_line": "boleto_line",
    "boleto_url": "boleto_url",
    "boleto_bar_code": "boleto_bar_code",
    "invoice_url": "invoice_url",
    "canceled": "canceled_reason",
    "gateway_cancel": "gateway_cancel_result",
}
_INSTANTS = {
    "lease_until": "lease_until",
    "sent_at": "sent_at",
    "rechecked_at": "rechecked_at",
    "failed_at": "failed_at",
    "gateway_canceled_at": "gateway_canceled_at",
}
_HARD_CODES = {"expired", "expired_card", "card_expired", "stolen_or_lost", "stolen_card", "lost_card"} | {
    "invalid_token",
    "invalid_card",
    "card_canceled",
}


def _instant(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _stored(value: datetime | None, sqlite: bool) -> datetime | None:
    if value is None:
        return None
    value = value.astimezone(UTC)
    return value.replace(tzinfo=None) if sqlite else value


def upgrade() -> None:
    bind = op.get_bind()
    sqlite = bind.dialect.name == "sqlite"
    # Plain ALTER TABLE ... ADD COLUMN: recreating tables that others point at would trip SQLite's foreign keys.
    for column in _CHARGE_COLUMNS:
        op.add_column("charges", column)
    op.create_table(
        "charge_attempts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("charge_id", sa.String(32), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("idempotency_key", sa.String(120), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("holder", sa.String(64), nullable=True),
        sa.Column("card_ref", sa.String(16), nullable=True),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("decline_code", sa.String(100), nullable=True),
        sa.Column("decline_class", sa.String(8), nullable=True),
        sa.Column("message", sa.String(300), nullable=True),
        sa.ForeignKeyConstraint(["charge_id"], ["charges.id"], name=op.f("fk_charge_attempts_charge_id_charges")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_charge_attempts")),
        sa.UniqueConstraint("charge_id", "number", name=op.f("uq_charge_attempts_charge_id_number")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_charge_attempts_idempotency_key")),
    )
    op.create_index("ix_charge_attempts_decline_class", "charge_attempts", ["decline_class"])
    with op.batch_alter_table("refunds") as batch:
        batch.add_column(sa.Column("charge_id", sa.String(32), nullable=True))
        batch.add_column(sa.Column("gateway_payment_id", sa.String(100), nullable=True))
        batch.add_column(sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("gateway_note", sa.String(200), nullable=True))
        batch.add_column(sa.Column("done_by", sa.String(100), nullable=True))
        batch.add_column(sa.Column("note", sa.String(500), nullable=True))
        batch.alter_column("payment_id", existing_type=sa.String(32), nullable=True)
        batch.create_index("ix_refunds_status", ["status"])
    op.add_column("payments", sa.Column("chargeback_cents", sa.Integer(), nullable=False, server_default="0"))
    op.add_column("payments", sa.Column("charged_back_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("invoices", sa.Column("payment_id", sa.String(32), nullable=True))
    op.add_column("invoices", sa.Column("verifying_charge_id", sa.String(32), nullable=True))

    _move_charge_details(bind, sqlite)
    _link_refunds_and_invoices(bind)

    with op.batch_alter_table("refunds") as batch:
        batch.alter_column("charge_id", existing_type=sa.String(32), nullable=False)
        batch.alter_column("gateway_payment_id", existing_type=sa.String(100), nullable=False)
        batch.create_foreign_key("fk_refunds_charge_id_charges", "charges", ["charge_id"], ["id"])
    # A plain ALTER TABLE ... DROP COLUMN (SQLite 3.35+ too): recreating `charges` would trip the foreign
    # keys of the tables that point at it.
    op.drop_column("charges", "details")


def _move_charge_details(bind: sa.Connection, sqlite: bool) -> None:
    charges = sa.table(
        "charges",
        sa.column("id", sa.String),
        sa.column("account_id", sa.String),
        sa.column("idempotency_key", sa.String),
        sa.column("status", sa.String),
        sa.column("failure_code", sa.String),
        sa.column("created_at", sa.DateTime),
        sa.column("details", sa.JSON),
        *(sa.column(column.name) for column in _CHARGE_COLUMNS),
    )
    attempts = sa.table(
        "charge_attempts",
        *(
            sa.column(name)
            for name in (
                "charge_id",
                "number",
                "idempotency_key",
                "started_at",
                "finished_at",
                "card_ref",
                "outcome",
                "decline_code",
                "decline_class",
                "message",
            )
        ),
    )
    refunds = sa.table(
        "refunds",
        *(
            sa.column(name)
            for name in (
                "id",
                "charge_id",
                "gateway_payment_id",
                "account_id",
                "amount_cents",
                "reason",
                "status",
                "gateway_refund_id",
                "created_at",
                "refunded_at",
                "claimed_until",
                "gateway_note",
            )
        ),
    )
    rows = bind.execute(
        sa.select(
            charges.c.id,
            charges.c.account_id,
            charges.c.idempotency_key,
            charges.c.status,
            charges.c.failure_code,
            charges.c.created_at,
            charges.c.details,
        )
    ).all()
    for row in rows:
        details = row.details if isinstance(row.details, dict) else json.loads(row.details or "{}")
        values: dict[str, Any] = {}
        source = details.get("source")
        if source in ("auto_debit", "manual", "checkout"):
            values["source"] = source
        if isinstance(details.get("day"), int):
            values["regua_day"] = details["day"]
        for key, column in _PLAIN.items():
            if isinstance(details.get(key), str):
                values[column] = details[key][:500] if column != "pix_qr" and column != "pix_code" else details[key]
        for key, column in _INSTANTS.items():
            values[column] = _stored(_instant(details.get(key)), sqlite)
        values["gateway_cancel_owed"] = details.get("gateway_cancel_owed") is True
        bind.execute(sa.update(charges).where(charges.c.id == row.id).values(**values))
        tried = int(details.get("attempts") or (1 if details.get("sent_at") else 0))
        reason = details.get("decline_reason")
        for number in range(1, tried + 1):
            last = number == tried
            declined = last and row.status == "failed" and (reason or row.failure_code)
            hard = details.get("hard_decline") is True or (row.failure_code or "").lower() in _HARD_CODES
            bind.execute(
                sa.insert(attempts).values(
                    charge_id=row.id,
                    number=number,
                    idempotency_key=f"{row.idempotency_key}#{number}",
                    started_at=_stored(_instant(details.get("sent_at")), sqlite) or row.created_at,
                    finished_at=None if last and details.get("lease_until") else row.created_at,
                    card_ref=details.get("card_ref") if isinstance(details.get("card_ref"), str) else None,
                    outcome="declined" if declined else ("in_flight" if last and details.get("lease_until") else "answered"),
                    decline_code=(reason or row.failure_code) if declined else None,
                    decline_class=("hard" if hard else "soft") if declined else None,
                    message=str(details.get("decline_message") or "")[:300] or None if declined else None,
                )
            )
        for early in details.get("early_refunds") or []:
            bind.execute(
                sa.insert(refunds).values(
                    id=f"ref_{early['refund_id'][-20:]}"[:32],
                    charge_id=row.id,
                    gateway_payment_id=early["payment_id"],
                    account_id=row.account_id,
                    amount_cents=int(early["amount_cents"]),
                    reason="gateway",
                    status="done",
                    gateway_refund_id=early["refund_id"],
                    created_at=_stored(_instant(early.get("at")), sqlite) or row.created_at,
                    refunded_at=_stored(_instant(early.get("at")), sqlite),
                )
            )
        for refund_id, claim in (details.get("refund_claims") or {}).items():
            if isinstance(claim, dict):
                bind.execute(
                    sa.update(refunds)
                    .where(refunds.c.id == refund_id)
                    .values(
                        claimed_until=_stored(_instant(claim.get("until")), sqlite),
                        gateway_note=str(claim.get("last") or "")[:200] or None,
                    )
                )


def _link_refunds_and_invoices(bind: sa.Connection) -> None:
    refunds = sa.table(
        "refunds", sa.column("id"), sa.column("payment_id"), sa.column("charge_id"), sa.column("gateway_payment_id")
    )
    payments = sa.table(
        "payments",
        sa.column("id"),
        sa.column("charge_id"),
        sa.column("gateway_payment_id"),
        sa.column("status"),
        sa.column("invoice_ids", sa.JSON),
        sa.column("amount_cents"),
        sa.column("chargeback_cents"),
    )
    invoices = sa.table("invoices", sa.column("id"), sa.column("charge_id"), sa.column("status"), sa.column("payment_id"))
    for payment in bind.execute(sa.select(payments)).all():
        bind.execute(
            sa.update(refunds)
            .where(refunds.c.payment_id == payment.id)
            .values(charge_id=payment.charge_id, gateway_payment_id=payment.gateway_payment_id)
        )
        if payment.status == "chargeback":
            bind.execute(
                sa.update(payments).where(payments.c.id == payment.id).values(chargeback_cents=payment.amount_cents)
            )
        if payment.status in ("confirmed", "refunded"):
            ids = payment.invoice_ids if isinstance(payment.invoice_ids, list) else json.loads(payment.invoice_ids)
            bind.execute(
                sa.update(invoices)
                .where(
                    invoices.c.id.in_(ids),
                    invoices.c.charge_id == payment.charge_id,
                    invoices.c.status.in_(("paid", "refunded")),
                    invoices.c.payment_id.is_(None),
                )
                .values(payment_id=payment.id)
            )


def downgrade() -> None:
    raise NotImplementedError("0005 moves data out of a JSON bag; restore a backup to go back")
