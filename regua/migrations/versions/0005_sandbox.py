"""the shared test clock

Revision ID: 0005_sandbox
Revises: 0005_portal
Create Date: 2026-11-29 22:50:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_sandbox"
down_revision: str | None = "0005_portal"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "shared_clock",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("instant", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_shared_clock")),
    )


def downgrade() -> None:
    op.drop_table("shared_clock")
