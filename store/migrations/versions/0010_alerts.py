"""alerts, alert_notifications and store_settings (alerting, issue 12: the store-wide alert
defaults live in its "alerts" row), and an index on failures.created_at for the rules that
count recent failures

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-29 14:00:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from store.types import JSONText, UTCDateTime

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None

NOT_RESOLVED = sa.text("state <> 'resolved'")


def upgrade() -> None:
    op.create_index('ix_failures_created', 'failures', ['created_at'])
    op.create_table(
        'alerts',
        sa.Column('id', sa.String(length=40), nullable=False),
        sa.Column('rule', sa.String(length=100), nullable=False),
        sa.Column('connection_id', sa.String(length=40), nullable=False),
        sa.Column('source', sa.String(length=20), nullable=False),
        sa.Column('severity', sa.String(length=20), nullable=False),
        sa.Column('state', sa.String(length=20), nullable=False),
        sa.Column('summary', sa.Text(), nullable=False),
        sa.Column('count', sa.Integer(), nullable=False),
        sa.Column('first_seen_at', UTCDateTime(), nullable=False),
        sa.Column('last_seen_at', UTCDateTime(), nullable=False),
        sa.Column('last_notified_at', UTCDateTime(), nullable=True),
        sa.Column('notified_count', sa.Integer(), nullable=False),
        sa.Column('acknowledged_by', sa.String(length=200), nullable=True),
        sa.Column('acknowledged_at', UTCDateTime(), nullable=True),
        sa.Column('resolved_by', sa.String(length=200), nullable=True),
        sa.Column('resolved_at', UTCDateTime(), nullable=True),
        sa.Column('note', sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(['connection_id'], ['connections.id'],
                                name=op.f('fk_alerts_connection_id_connections')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_alerts')),
    )
    op.create_index('uq_alerts_open', 'alerts', ['rule', 'connection_id'], unique=True,
                    sqlite_where=NOT_RESOLVED, postgresql_where=NOT_RESOLVED)
    op.create_index('ix_alerts_state', 'alerts', ['state', 'connection_id'])
    op.create_table(
        'alert_notifications',
        sa.Column('id', sa.String(length=40), nullable=False),
        sa.Column('alert_id', sa.String(length=40), nullable=False),
        sa.Column('connection_id', sa.String(length=40), nullable=False),
        sa.Column('notifier_name', sa.String(length=64), nullable=False),
        sa.Column('notifier', JSONText(), nullable=False),
        sa.Column('kind', sa.String(length=20), nullable=False),
        sa.Column('payload', JSONText(), nullable=False),
        sa.Column('status', sa.String(length=20), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('next_attempt_at', UTCDateTime(), nullable=False),
        sa.Column('last_error', sa.Text(), nullable=True),
        sa.Column('created_at', UTCDateTime(), nullable=False),
        sa.Column('sent_at', UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(['alert_id'], ['alerts.id'],
                                name=op.f('fk_alert_notifications_alert_id_alerts')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_alert_notifications')),
    )
    op.create_table(
        'store_settings',
        sa.Column('key', sa.String(length=100), nullable=False),
        sa.Column('value', JSONText(), nullable=False),
        sa.Column('updated_by', sa.String(length=200), nullable=False),
        sa.Column('updated_at', UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint('key', name=op.f('pk_store_settings')),
    )
    op.create_index('ix_alert_notifications_due', 'alert_notifications', ['status', 'next_attempt_at'])
    op.create_index('ix_alert_notifications_notifier', 'alert_notifications',
                    ['connection_id', 'notifier_name', 'created_at'])


def downgrade() -> None:
    op.drop_table('store_settings')
    op.drop_index('ix_alert_notifications_notifier', table_name='alert_notifications')
    op.drop_index('ix_alert_notifications_due', table_name='alert_notifications')
    op.drop_table('alert_notifications')
    op.drop_index('ix_alerts_state', table_name='alerts')
    op.drop_index('uq_alerts_open', table_name='alerts')
    op.drop_table('alerts')
    op.drop_index('ix_failures_created', table_name='failures')
