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


def downgrade() -> None:
    with op.batch_alter_table("payments", schema=None) as batch_op:
        batch_op.drop_column("reinstated_at")
    with op.batch_alter_table("refunds", schema=None) as batch_op:
        batch_op.drop_column("denied_at")
        batch_op.drop_column("sent_at")
        batch_op.drop_column("gateway_status")
