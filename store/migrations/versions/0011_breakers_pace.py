"""breakers (per-connection circuit breaker and auto-pause tracking) and pace (the shared
outbound rate limit's GCRA row), issue 12

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-29 14:00:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from store.types import JSONText, UTCDateTime

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'breakers',
        sa.Column('connection_id', sa.String(length=40), nullable=False),
        sa.Column('state', sa.String(length=20), nullable=False),
        sa.Column('window_started_at', UTCDateTime(), nullable=True),
        sa.Column('calls', sa.Integer(), nullable=False),
        sa.Column('failures', JSONText(), nullable=False),
        sa.Column('opened_at', UTCDateTime(), nullable=True),
        sa.Column('probe_at', UTCDateTime(), nullable=True),
        sa.Column('failing_since', UTCDateTime(), nullable=True),
        sa.Column('warned', sa.Integer(), nullable=False),
        sa.Column('reason', sa.Text(), nullable=True),
        sa.Column('updated_at', UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(['connection_id'], ['connections.id'],
                                name=op.f('fk_breakers_connection_id_connections')),
        sa.PrimaryKeyConstraint('connection_id', name=op.f('pk_breakers')),
    )
    op.create_table(
        'pace',
        sa.Column('connection_id', sa.String(length=40), nullable=False),
        sa.Column('tat', sa.Double(), nullable=False),
        sa.ForeignKeyConstraint(['connection_id'], ['connections.id'],
                                name=op.f('fk_pace_connection_id_connections')),
        sa.PrimaryKeyConstraint('connection_id', name=op.f('pk_pace')),
    )


def downgrade() -> None:
    op.drop_table('pace')
    op.drop_table('breakers')
