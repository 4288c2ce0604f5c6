"""deliveries.capture_key: a re-run capture line is recognised, not stored again

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29 05:50:00
"""
from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None

_PAGE = 5000
_EPOCH = datetime(1, 1, 1)  # the key's time is microseconds since then, in UTC
_MICROSECOND = timedelta(microseconds=1)


def upgrade() -> None:
    # Byte order on every backend (see store.models.Delivery): PostgreSQL's "C" collation.
    key_type = sa.String(length=32).with_variant(sa.String(length=32, collation='C'), 'postgresql')
    op.add_column('deliveries', sa.Column('capture_key', key_type, nullable=True))
    _backfill()
    op.create_index('uq_deliveries_capture', 'deliveries', ['connection_id', 'capture_key'], unique=True)


def _backfill() -> None:
    """Give stored deliveries the key ingest gives them (see ingest_prepare.prepare), so a
    capture file ingested before this revision is recognised when it is run again. Of rows
    that repeat one capture (re-runs before this revision), the first keeps the key."""
    bind = op.get_bind()
    # Untyped columns: the values as the driver holds them (SQLite's datetime text, JSON text).
    deliveries = sa.table('deliveries', sa.column('id'), sa.column('connection_id'), sa.column('payload_hash'),
                          sa.column('received_at'), sa.column('headers'), sa.column('replay_of'),
                          sa.column('capture_key'))
    seen: set[tuple[str, str]] = set()
    last = ''
    while True:
        rows = bind.execute(
            sa.select(deliveries.c.id, deliveries.c.connection_id, deliveries.c.payload_hash,
                      deliveries.c.received_at, deliveries.c.headers)
            .where(deliveries.c.id > last, deliveries.c.replay_of.is_(None))
            .order_by(deliveries.c.id).limit(_PAGE)).all()
        if not rows:
            return
        updates: list[dict[str, Any]] = []
        for delivery_id, connection_id, payload_hash, received, headers in rows:
            if isinstance(received, str):  # SQLite keeps UTC datetimes as text
                received = datetime.fromisoformat(received)
            key = f'{(received.replace(tzinfo=None) - _EPOCH) // _MICROSECOND:015x}' + hashlib.blake2b(
                f'{payload_hash} {headers}'.encode('utf-8', 'surrogatepass'), digest_size=9).hexdigest()[:17]
            if (connection_id, key) not in seen:
                seen.add((connection_id, key))
                updates.append({'b_id': delivery_id, 'b_key': key})
        if updates:
            bind.execute(sa.update(deliveries).where(deliveries.c.id == sa.bindparam('b_id'))
                         .values(capture_key=sa.bindparam('b_key')), updates)
        last = rows[-1][0]


def downgrade() -> None:
    op.drop_index('uq_deliveries_capture', table_name='deliveries')
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.drop_column('capture_key')
