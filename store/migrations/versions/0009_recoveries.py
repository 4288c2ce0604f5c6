"""recoveries and recovery_items (recovery by filter, issue 12)

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-29 14:00:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from store.types import JSONText, UTCDateTime

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'recoveries',
        sa.Column('id', sa.String(length=40), nullable=False),
        sa.Column('filter', JSONText(), nullable=False),
        sa.Column('description', sa.Text(), nullable=False),
        sa.Column('state', sa.String(length=20), nullable=False),
        sa.Column('total', sa.Integer(), nullable=False),
        sa.Column('done', sa.Integer(), nullable=False),
        sa.Column('skipped', sa.Integer(), nullable=False),
        sa.Column('requested_by', sa.String(length=200), nullable=False),
        sa.Column('requested_at', UTCDateTime(), nullable=False),
        sa.Column('started_at', UTCDateTime(), nullable=True),
        sa.Column('finished_at', UTCDateTime(), nullable=True),
        sa.Column('cancel_requested_at', UTCDateTime(), nullable=True),
        sa.Column('note', sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_recoveries')),
    )
    op.create_index('ix_recoveries_state', 'recoveries', ['state'])
    op.create_table(
        'recovery_items',
        sa.Column('recovery_id', sa.String(length=40), nullable=False),
        sa.Column('failure_id', sa.String(length=40), nullable=False),
        sa.Column('state', sa.String(length=20), nullable=False),
        sa.Column('message', sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(['recovery_id'], ['recoveries.id'],
                                name=op.f('fk_recovery_items_recovery_id_recoveries')),
        sa.PrimaryKeyConstraint('recovery_id', 'failure_id', name=op.f('pk_recovery_items')),
    )
    op.create_index('ix_recovery_items_state', 'recovery_items', ['recovery_id', 'state'])


def downgrade() -> None:
    op.drop_index('ix_recovery_items_state', table_name='recovery_items')
    op.drop_table('recovery_items')
    op.drop_index('ix_recoveries_state', table_name='recoveries')
    op.drop_table('recoveries')
