"""the payments and refunds of a charge found by index: a settlement and the email pass read them by charge

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07 07:10:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_payments_charge_id", "payments", ["charge_id"])
    op.create_index("ix_refunds_charge_id", "refunds", ["charge_id"])


def downgrade() -> None:
    op.drop_index("ix_refunds_charge_id", table_name="refunds")
    op.drop_index("ix_payments_charge_id", table_name="payments")
