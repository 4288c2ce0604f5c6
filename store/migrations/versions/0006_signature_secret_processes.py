"""deliveries.signature_secret (which secret verified or failed a delivery), processes (running
receivers and engines, with their heartbeats)

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29 11:00:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from store.types import UTCDateTime

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

FAILED = sa.text("signature_verdict = 'failed'")


def upgrade() -> None:
    # NULL on every delivery stored before: which secret was used was not recorded then.
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.add_column(sa.Column('signature_secret', sa.String(length=100), nullable=True))
    # Only the (rare) failed signatures: the Providers screen finds a connection's newest one
    # at once, and ingest pays nothing for the deliveries that do not fail.
    op.create_index('ix_deliveries_signature_failed', 'deliveries', ['connection_id', 'received_at'],
                    unique=False, sqlite_where=FAILED, postgresql_where=FAILED)
    op.create_table(
        'processes',
        sa.Column('id', sa.String(length=40), nullable=False),
        sa.Column('kind', sa.String(length=20), nullable=False),
        sa.Column('host', sa.String(length=255), nullable=False),
        sa.Column('pid', sa.Integer(), nullable=False),
        sa.Column('address', sa.String(length=255), nullable=True),
        sa.Column('started_at', UTCDateTime(), nullable=False),
        sa.Column('seen_at', UTCDateTime(), nullable=False),
        sa.Column('stopped_at', UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_processes')),
    )
    op.create_index('ix_processes_kind_seen', 'processes', ['kind', 'seen_at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_processes_kind_seen', table_name='processes')
    op.drop_table('processes')
    op.drop_index('ix_deliveries_signature_failed', table_name='deliveries')
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.drop_column('signature_secret')
