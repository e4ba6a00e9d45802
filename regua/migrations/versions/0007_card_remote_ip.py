"""cards carry the customer's IP (remote_ip), sent with every card charge

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07 00:30:00

Cards saved before this revision have no IP (NULL): regua does not charge them automatically (see the README).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("subscriptions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("remote_ip", sa.String(45), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("subscriptions", schema=None) as batch_op:
        batch_op.drop_column("remote_ip")
