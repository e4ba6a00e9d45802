"""the gateway's payment lifecycle: refund statuses, chargebacks reversed, cash undone

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07 00:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Refunds follow the gateway's own status until it is DONE; a denied one waits for a person.
    with op.batch_alter_table("refunds", schema=None) as batch_op:
        batch_op.add_column(sa.Column("gateway_status", sa.String(length=48), nullable=True))
        batch_op.add_column(sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("denied_at", sa.DateTime(timezone=True), nullable=True))
    # A payment whose money came back (a chargeback won) or was received again after being undone.
    with op.batch_alter_table("payments", schema=None) as batch_op:
        batch_op.add_column(sa.Column("reinstated_at", sa.DateTime(timezone=True), nullable=True))
    # -- installment chargebacks: each installment of a card plan charged back once, at its own amount,
    # and the periods cut to the whole months the plan still covers
    op.create_table(
        "installment_chargebacks",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("payment_id", sa.String(length=32), nullable=False),
        sa.Column("gateway", sa.String(length=32), nullable=False),
        sa.Column("gateway_payment_id", sa.String(length=100), nullable=False),
        sa.Column("amount_cents", sa.Integer(), nullable=False),
        sa.Column("charged_back_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reversed_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["payment_id"], ["payments.id"], name=op.f("fk_installment_chargebacks_payment_id_payments")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_installment_chargebacks")),
        sa.UniqueConstraint(
            "gateway", "gateway_payment_id", name=op.f("uq_installment_chargebacks_gateway_gateway_payment_id")
        ),
    )
    with op.batch_alter_table("invoices", schema=None) as batch_op:
        batch_op.add_column(sa.Column("cut_from", sa.Date(), nullable=True))
    # -- end of installment chargebacks


def downgrade() -> None:
    with op.batch_alter_table("invoices", schema=None) as batch_op:  # installment chargebacks
        batch_op.drop_column("cut_from")
    op.drop_table("installment_chargebacks")  # installment chargebacks
    with op.batch_alter_table("payments", schema=None) as batch_op:
        batch_op.drop_column("reinstated_at")
    with op.batch_alter_table("refunds", schema=None) as batch_op:
        batch_op.drop_column("denied_at")
        batch_op.drop_column("sent_at")
        batch_op.drop_column("gateway_status")
