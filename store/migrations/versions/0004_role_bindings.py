"""role_bindings: each actor's role (viewer, operator, admin), managed by an admin

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29 08:00:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from store.types import UTCDateTime

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Empty on every store, new or old: the first actor to act afterwards becomes its admin
    # (workbench/services/access.py), and grants the others their roles.
    op.create_table(
        'role_bindings',
        sa.Column('actor', sa.String(length=200), nullable=False),
        sa.Column('role', sa.String(length=20), nullable=False),
        sa.Column('granted_by', sa.String(length=200), nullable=False),
        sa.Column('granted_at', UTCDateTime(), nullable=False),
        sa.Column('founding', sa.Boolean(), nullable=True),
        sa.PrimaryKeyConstraint('actor', name=op.f('pk_role_bindings')),
    )
    op.create_index('uq_role_bindings_founding', 'role_bindings', ['founding'], unique=True)


def downgrade() -> None:
    op.drop_index('uq_role_bindings_founding', table_name='role_bindings')
    op.drop_table('role_bindings')
