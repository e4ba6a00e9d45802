"""indexes for the notification and settlement scans

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 07:15:50.402780
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:

    with op.batch_alter_table('blocks', schema=None) as batch_op:
        batch_op.create_index('ix_blocks_lifted_at', ['lifted_at'], unique=False)
        batch_op.create_index('ix_blocks_started_at', ['started_at'], unique=False)

    with op.batch_alter_table('charge_invoices', schema=None) as batch_op:
        batch_op.create_index('ix_charge_invoices_invoice_id', ['invoice_id'], unique=False)

    with op.batch_alter_table('charges', schema=None) as batch_op:
        batch_op.create_index('ix_charges_confirmed_at', ['confirmed_at'], unique=False)
        batch_op.create_index('ix_charges_status_created_at', ['status', 'created_at'], unique=False)

    with op.batch_alter_table('refunds', schema=None) as batch_op:
        batch_op.create_index('ix_refunds_refunded_at', ['refunded_at'], unique=False)




def downgrade() -> None:

    with op.batch_alter_table('refunds', schema=None) as batch_op:
        batch_op.drop_index('ix_refunds_refunded_at')

    with op.batch_alter_table('charges', schema=None) as batch_op:
        batch_op.drop_index('ix_charges_status_created_at')
        batch_op.drop_index('ix_charges_confirmed_at')

    with op.batch_alter_table('charge_invoices', schema=None) as batch_op:
        batch_op.drop_index('ix_charge_invoices_invoice_id')

    with op.batch_alter_table('blocks', schema=None) as batch_op:
        batch_op.drop_index('ix_blocks_started_at')
        batch_op.drop_index('ix_blocks_lifted_at')


