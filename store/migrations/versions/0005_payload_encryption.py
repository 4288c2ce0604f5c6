"""deliveries.body_key_version, deliveries.body_purged_at: what a raw body is now

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29 08:10:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import store.types

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Both NULL on every delivery stored before: a plain body, never purged (docs/vault.md).
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.add_column(sa.Column('body_key_version', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('body_purged_at', store.types.UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.drop_column('body_purged_at')
        batch_op.drop_column('body_key_version')
