"""receipts after a verification window: reviewed by a person

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 00:30:00

An invoice keeps when its one verification window opened (rule 3.7). Invoices that already had one
get the earliest trace of it the books hold: the first receipt sent from the payment page, else the
charge whose pending report opened it, else the invoice's issue (a receipt ops recorded through the
API leaves no other trace). What matters after this revision is that the instant is there: the
window was had.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WAITING = sa.text("status = 'waiting'")


def upgrade() -> None:
    op.add_column("invoices", sa.Column("verification_started_at", sa.DateTime(timezone=True), nullable=True))
    op.execute(
        """
        UPDATE invoices SET verification_started_at = COALESCE(
            (SELECT MIN(receipts.received_at) FROM receipts WHERE receipts.invoice_id = invoices.id),
            (SELECT charges.created_at FROM charges WHERE charges.id = invoices.verifying_charge_id),
            invoices.issued_at
        )
        WHERE verifying_until IS NOT NULL
           OR verifying_charge_id IS NOT NULL
           OR EXISTS (SELECT 1 FROM receipts WHERE receipts.invoice_id = invoices.id)
        """
    )
    op.create_table(
        "receipt_reviews",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("account_id", sa.String(length=64), nullable=False),
        sa.Column("invoice_id", sa.String(length=32), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decided_by", sa.String(length=100), nullable=True),
        sa.Column("note", sa.String(length=500), nullable=True),
        sa.Column("verifying_until", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], name=op.f("fk_receipt_reviews_account_id_accounts")),
        sa.ForeignKeyConstraint(["invoice_id"], ["invoices.id"], name=op.f("fk_receipt_reviews_invoice_id_invoices")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_receipt_reviews")),
    )
    op.create_index(
        "uq_receipt_reviews_waiting",
        "receipt_reviews",
        ["invoice_id"],
        unique=True,
        postgresql_where=WAITING,
        sqlite_where=WAITING,
    )
    op.create_index(
        "ix_receipt_reviews_status_requested_at", "receipt_reviews", ["status", "requested_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_receipt_reviews_status_requested_at", table_name="receipt_reviews")
    op.drop_index("uq_receipt_reviews_waiting", table_name="receipt_reviews", postgresql_where=WAITING)
    op.drop_table("receipt_reviews")
    # In place (SQLite 3.35+ drops a plain column): copying the table would break the keys that point at it.
    with op.batch_alter_table("invoices", recreate="never") as batch_op:
        batch_op.drop_column("verification_started_at")
