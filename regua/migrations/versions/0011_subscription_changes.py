"""each change of a subscription recorded: what it was, what it became, from when, the upgrade's invoice

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07 01:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "subscription_changes",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("subscription_id", sa.String(length=32), nullable=False),
        sa.Column("account_id", sa.String(length=64), nullable=False),
        sa.Column("product", sa.String(length=16), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("effect", sa.String(length=16), nullable=False),
        sa.Column("effective_on", sa.Date(), nullable=True),
        sa.Column("old_plan", sa.String(length=64), nullable=False),
        sa.Column("old_modules", sa.JSON(), nullable=False),
        sa.Column("old_monthly_price_cents", sa.Integer(), nullable=False),
        sa.Column("old_frequency", sa.String(length=16), nullable=False),
        sa.Column("new_plan", sa.String(length=64), nullable=True),
        sa.Column("new_modules", sa.JSON(), nullable=True),
        sa.Column("new_monthly_price_cents", sa.Integer(), nullable=True),
        sa.Column("new_frequency", sa.String(length=16), nullable=True),
        sa.Column("payment_method", sa.String(length=16), nullable=False),
        sa.Column("proration_invoice_id", sa.String(length=32), nullable=True),
        sa.ForeignKeyConstraint(
            ["subscription_id"],
            ["subscriptions.id"],
            name=op.f("fk_subscription_changes_subscription_id_subscriptions"),
        ),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_subscription_changes_account_id_accounts")
        ),
        sa.ForeignKeyConstraint(
            ["proration_invoice_id"],
            ["invoices.id"],
            name=op.f("fk_subscription_changes_proration_invoice_id_invoices"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_subscription_changes")),
    )
    op.create_index("ix_subscription_changes_at", "subscription_changes", ["at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_subscription_changes_at", table_name="subscription_changes")
    op.drop_table("subscription_changes")
