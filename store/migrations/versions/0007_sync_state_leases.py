"""sync_state (per-connection polling cursor, lag, stopped calls, reconcile requests) and
leases (which engine polls which connection; the active engine on SQLite)

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29 12:00:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from store.types import UTCDateTime

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'sync_state',
        sa.Column('connection_id', sa.String(length=40), nullable=False),
        sa.Column('cursor', sa.Text(), nullable=True),
        sa.Column('last_poll_at', UTCDateTime(), nullable=True),
        sa.Column('last_event_at', UTCDateTime(), nullable=True),
        sa.Column('lag_s', sa.Integer(), nullable=True),
        sa.Column('calls_stopped_at', UTCDateTime(), nullable=True),
        sa.Column('calls_stopped_reason', sa.Text(), nullable=True),
        sa.Column('stopped_key', sa.String(length=100), nullable=True),
        sa.Column('reconcile_requested_at', UTCDateTime(), nullable=True),
        sa.Column('updated_at', UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(['connection_id'], ['connections.id'],
                                name=op.f('fk_sync_state_connection_id_connections')),
        sa.PrimaryKeyConstraint('connection_id', name=op.f('pk_sync_state')),
    )
    op.create_table(
        'leases',
        sa.Column('resource', sa.String(length=200), nullable=False),
        sa.Column('holder', sa.String(length=40), nullable=False),
        sa.Column('acquired_at', UTCDateTime(), nullable=False),
        sa.Column('expires_at', UTCDateTime(), nullable=False),
        sa.Column('takeovers', sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint('resource', name=op.f('pk_leases')),
    )


def downgrade() -> None:
    op.drop_table('leases')
    op.drop_table('sync_state')
