"""audit_entries.scheme: entries from here on are chained with a keyed MAC

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29 06:30:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Every entry already stored keeps its plain SHA-256 hash ("sha256") and verifies as it
    # did; the workbench appends keyed entries ("hmac-sha256") after them, the first chained
    # to the last plain one (docs/audit.md).
    with op.batch_alter_table('audit_entries', schema=None) as batch_op:
        batch_op.add_column(sa.Column('scheme', sa.String(length=20), nullable=False, server_default='sha256'))


def downgrade() -> None:
    with op.batch_alter_table('audit_entries', schema=None) as batch_op:
        batch_op.drop_column('scheme')
