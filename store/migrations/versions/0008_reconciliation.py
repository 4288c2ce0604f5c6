"""reconcile_runs and drift_findings (reconciliation, issue 11)

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-29 11:30:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from store.types import JSONText, UTCDateTime

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'reconcile_runs',
        sa.Column('id', sa.String(length=40), nullable=False),
        sa.Column('connection_id', sa.String(length=40), nullable=False),
        sa.Column('record_id', sa.String(length=40), nullable=True),
        sa.Column('dry_run', sa.Boolean(), nullable=False),
        sa.Column('status', sa.String(length=20), nullable=False),
        sa.Column('requested_by', sa.String(length=200), nullable=False),
        sa.Column('requested_at', UTCDateTime(), nullable=False),
        sa.Column('started_at', UTCDateTime(), nullable=True),
        sa.Column('finished_at', UTCDateTime(), nullable=True),
        sa.Column('records_checked', sa.Integer(), nullable=False),
        sa.Column('provider_objects', sa.Integer(), nullable=False),
        sa.Column('findings', sa.Integer(), nullable=False),
        sa.Column('error', sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(['connection_id'], ['connections.id'],
                                name=op.f('fk_reconcile_runs_connection_id_connections')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_reconcile_runs')),
    )
    op.create_index('ix_reconcile_runs_connection_status', 'reconcile_runs', ['connection_id', 'status'])
    op.create_table(
        'drift_findings',
        sa.Column('id', sa.String(length=40), nullable=False),
        sa.Column('run_id', sa.String(length=40), nullable=False),
        sa.Column('connection_id', sa.String(length=40), nullable=False),
        sa.Column('record_id', sa.String(length=40), nullable=True),
        sa.Column('kind', sa.String(length=50), nullable=False),
        sa.Column('provider_id', sa.String(length=255), nullable=True),
        sa.Column('field', sa.String(length=100), nullable=False),
        sa.Column('ours', JSONText(), nullable=True),
        sa.Column('theirs', JSONText(), nullable=True),
        sa.Column('since', UTCDateTime(), nullable=False),
        sa.Column('state', sa.String(length=20), nullable=False),
        sa.Column('resolution', sa.String(length=20), nullable=True),
        sa.Column('resolved_by', sa.String(length=200), nullable=True),
        sa.Column('resolved_at', UTCDateTime(), nullable=True),
        sa.Column('note', sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(['run_id'], ['reconcile_runs.id'],
                                name=op.f('fk_drift_findings_run_id_reconcile_runs')),
        sa.ForeignKeyConstraint(['connection_id'], ['connections.id'],
                                name=op.f('fk_drift_findings_connection_id_connections')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_drift_findings')),
    )
    op.create_index('ix_drift_findings_connection_state', 'drift_findings', ['connection_id', 'state'])
    op.create_index('ix_drift_findings_record', 'drift_findings', ['record_id'])


def downgrade() -> None:
    op.drop_index('ix_drift_findings_record', table_name='drift_findings')
    op.drop_index('ix_drift_findings_connection_state', table_name='drift_findings')
    op.drop_table('drift_findings')
    op.drop_index('ix_reconcile_runs_connection_status', table_name='reconcile_runs')
    op.drop_table('reconcile_runs')
