"""ops actions log; indexes for the ops dashboard's searches

Revision ID: 0005_ops
Revises: 0005
Create Date: 2026-11-29 22:50:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0005_ops'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'ops_actions',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('by', sa.String(length=100), nullable=False),
        sa.Column('action', sa.String(length=64), nullable=False),
        sa.Column('targets', sa.JSON(), nullable=False),
        sa.Column('result', sa.String(length=500), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_ops_actions')),
    )
    with op.batch_alter_table('ops_actions', schema=None) as batch_op:
        batch_op.create_index('ix_ops_actions_at', ['at'], unique=False)

    with op.batch_alter_table('webhook_events', schema=None) as batch_op:
        batch_op.create_index('ix_webhook_events_received_at', ['received_at'], unique=False)
        batch_op.create_index('ix_webhook_events_charge_id', ['charge_id'], unique=False)

    with op.batch_alter_table('charges', schema=None) as batch_op:
        batch_op.create_index('ix_charges_account_id', ['account_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('charges', schema=None) as batch_op:
        batch_op.drop_index('ix_charges_account_id')

    with op.batch_alter_table('webhook_events', schema=None) as batch_op:
        batch_op.drop_index('ix_webhook_events_charge_id')
        batch_op.drop_index('ix_webhook_events_received_at')

    with op.batch_alter_table('ops_actions', schema=None) as batch_op:
        batch_op.drop_index('ix_ops_actions_at')

    op.drop_table('ops_actions')
