"""a catalog of plans and modules; subscriptions that change later or end; an upgrade's difference invoiced

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07 01:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "catalog_items",
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("product", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("monthly_price_cents", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("kind", "id", name=op.f("pk_catalog_items")),
    )
    # Every subscription so far had a price the product set: negotiated, until it names catalog items.
    with op.batch_alter_table("subscriptions", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("price_source", sa.String(length=16), server_default="negotiated", nullable=False)
        )
        batch_op.add_column(sa.Column("next_plan", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("next_modules", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("next_monthly_price_cents", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("next_price_source", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("next_frequency", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("change_effective_on", sa.Date(), nullable=True))
        batch_op.add_column(sa.Column("canceled_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("ends_on", sa.Date(), nullable=True))
        batch_op.add_column(sa.Column("ends_at", sa.DateTime(timezone=True), nullable=True))
    # One invoice per subscription, period and kind: an upgrade's difference starts inside a period.
    with op.batch_alter_table("invoices", schema=None) as batch_op:
        batch_op.add_column(sa.Column("kind", sa.String(length=16), server_default="period", nullable=False))
        batch_op.add_column(sa.Column("monthly_price_cents", sa.Integer(), nullable=True))
        batch_op.drop_constraint("uq_invoices_subscription_id_period_start", type_="unique")
        batch_op.create_unique_constraint(
            batch_op.f("uq_invoices_subscription_id_period_start_kind"), ["subscription_id", "period_start", "kind"]
        )


def downgrade() -> None:
    with op.batch_alter_table("invoices", schema=None) as batch_op:
        batch_op.drop_constraint("uq_invoices_subscription_id_period_start_kind", type_="unique")
        batch_op.create_unique_constraint(
            batch_op.f("uq_invoices_subscription_id_period_start"), ["subscription_id", "period_start"]
        )
        batch_op.drop_column("monthly_price_cents")
        batch_op.drop_column("kind")
    with op.batch_alter_table("subscriptions", schema=None) as batch_op:
        for column in (
            "ends_at",
            "ends_on",
            "canceled_at",
            "change_effective_on",
            "next_frequency",
            "next_price_source",
            "next_monthly_price_cents",
            "next_modules",
            "next_plan",
            "price_source",
        ):
            batch_op.drop_column(column)
    op.drop_table("catalog_items")
