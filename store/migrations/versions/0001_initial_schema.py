"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-25 16:27:32.321774
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import store.types

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('audit_entries',
    sa.Column('seq', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=False, nullable=False),
    sa.Column('at', store.types.UTCDateTime(), nullable=False),
    sa.Column('actor', sa.String(length=200), nullable=False),
    sa.Column('action', sa.String(length=100), nullable=False),
    sa.Column('target_type', sa.String(length=50), nullable=False),
    sa.Column('target_id', sa.String(length=255), nullable=True),
    sa.Column('before', store.types.JSONText(), nullable=True),
    sa.Column('after', store.types.JSONText(), nullable=True),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('prev_hash', sa.String(length=64), nullable=False),
    sa.Column('hash', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('seq', name=op.f('pk_audit_entries'))
    )
    with op.batch_alter_table('audit_entries', schema=None) as batch_op:
        batch_op.create_index('ix_audit_target', ['target_id'], unique=False)

    op.create_table('audit_head',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('seq', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('hash', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_head'))
    )
    op.create_table('connections',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('provider', sa.String(length=50), nullable=False),
    sa.Column('environment', sa.String(length=20), nullable=False),
    sa.Column('paused', sa.Boolean(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('settings', store.types.JSONText(), nullable=False),
    sa.Column('created_at', store.types.UTCDateTime(), nullable=False),
    sa.Column('updated_at', store.types.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_connections')),
    sa.UniqueConstraint('name', name=op.f('uq_connections_name'))
    )
    op.create_table('failures',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('category', sa.String(length=40), nullable=False),
    sa.Column('state', sa.String(length=20), nullable=False),
    sa.Column('connection_id', sa.String(length=40), nullable=True),
    sa.Column('record_id', sa.String(length=40), nullable=True),
    sa.Column('delivery_id', sa.String(length=40), nullable=True),
    sa.Column('command_id', sa.String(length=40), nullable=True),
    sa.Column('fingerprint', sa.String(length=64), nullable=False),
    sa.Column('message', sa.Text(), nullable=False),
    sa.Column('assignee', sa.String(length=200), nullable=True),
    sa.Column('created_at', store.types.UTCDateTime(), nullable=False),
    sa.Column('updated_at', store.types.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_failures'))
    )
    with op.batch_alter_table('failures', schema=None) as batch_op:
        batch_op.create_index('ix_failures_delivery', ['delivery_id'], unique=False)
        batch_op.create_index('ix_failures_fingerprint', ['fingerprint'], unique=False)
        batch_op.create_index('ix_failures_record', ['record_id'], unique=False)
        batch_op.create_index('ix_failures_state_category', ['state', 'category', 'connection_id'], unique=False)

    op.create_table('commands',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('connection_id', sa.String(length=40), nullable=False),
    sa.Column('record_id', sa.String(length=40), nullable=True),
    sa.Column('operation_id', sa.String(length=100), nullable=False),
    sa.Column('idempotency_key', sa.String(length=255), nullable=False),
    sa.Column('intent', sa.String(length=100), nullable=False),
    sa.Column('payload', store.types.JSONText(), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', store.types.UTCDateTime(), nullable=True),
    sa.Column('created_at', store.types.UTCDateTime(), nullable=False),
    sa.Column('updated_at', store.types.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['connection_id'], ['connections.id'], name=op.f('fk_commands_connection_id_connections')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_commands')),
    sa.UniqueConstraint('connection_id', 'idempotency_key', name='uq_commands_idempotency'),
    sa.UniqueConstraint('operation_id', name=op.f('uq_commands_operation_id'))
    )
    with op.batch_alter_table('commands', schema=None) as batch_op:
        batch_op.create_index('ix_commands_record', ['record_id'], unique=False)
        batch_op.create_index('ix_commands_status', ['status'], unique=False)

    op.create_table('connection_versions',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('connection_id', sa.String(length=40), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('snapshot', store.types.JSONText(), nullable=False),
    sa.Column('actor', sa.String(length=200), nullable=False),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('created_at', store.types.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['connection_id'], ['connections.id'], name=op.f('fk_connection_versions_connection_id_connections')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_connection_versions')),
    sa.UniqueConstraint('connection_id', 'version', name='uq_connection_versions_version')
    )
    op.create_table('deliveries',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('connection_id', sa.String(length=40), nullable=False),
    sa.Column('source', sa.String(length=20), nullable=False),
    sa.Column('received_at', store.types.UTCDateTime(), nullable=False),
    sa.Column('headers', store.types.JSONText(), nullable=False),
    sa.Column('body', sa.LargeBinary(), nullable=False),
    sa.Column('payload_hash', sa.String(length=64), nullable=False),
    sa.Column('provider_event_id', sa.String(length=255), nullable=True),
    sa.Column('dedupe_key', sa.String(length=255), nullable=True),
    sa.Column('event_type', sa.String(length=255), nullable=True),
    sa.Column('occurred_at', store.types.UTCDateTime(), nullable=True),
    sa.Column('signature_verdict', sa.String(length=20), nullable=False),
    sa.Column('verdict', sa.String(length=20), nullable=False),
    sa.Column('verdict_reason', sa.Text(), nullable=True),
    sa.Column('record_id', sa.String(length=40), nullable=True),
    sa.Column('mapping_version', sa.String(length=100), nullable=True),
    sa.Column('duplicate_of', sa.String(length=40), nullable=True),
    sa.Column('replay_of', sa.String(length=40), nullable=True),
    sa.ForeignKeyConstraint(['connection_id'], ['connections.id'], name=op.f('fk_deliveries_connection_id_connections')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_deliveries')),
    sa.UniqueConstraint('connection_id', 'dedupe_key', name='uq_deliveries_dedupe')
    )
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.create_index('ix_deliveries_record', ['record_id'], unique=False)
        batch_op.create_index('ix_deliveries_connection_received', ['connection_id', 'received_at'], unique=False)

    op.create_table('failure_notes',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('failure_id', sa.String(length=40), nullable=False),
    sa.Column('actor', sa.String(length=200), nullable=False),
    sa.Column('note', sa.Text(), nullable=False),
    sa.Column('created_at', store.types.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['failure_id'], ['failures.id'], name=op.f('fk_failure_notes_failure_id_failures')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_failure_notes'))
    )
    with op.batch_alter_table('failure_notes', schema=None) as batch_op:
        batch_op.create_index('ix_failure_notes_failure', ['failure_id'], unique=False)

    op.create_table('records',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('connection_id', sa.String(length=40), nullable=False),
    sa.Column('kind', sa.String(length=50), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('fields', store.types.JSONText(), nullable=False),
    sa.Column('last_occurred_at', store.types.UTCDateTime(), nullable=True),
    sa.Column('last_rank', sa.Integer(), nullable=True),
    sa.Column('last_event_key', sa.String(length=255), nullable=True),
    sa.Column('created_at', store.types.UTCDateTime(), nullable=False),
    sa.Column('updated_at', store.types.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['connection_id'], ['connections.id'], name=op.f('fk_records_connection_id_connections')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_records'))
    )
    with op.batch_alter_table('records', schema=None) as batch_op:
        batch_op.create_index('ix_records_status_connection', ['status', 'connection_id'], unique=False)

    op.create_table('attempts',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('command_id', sa.String(length=40), nullable=False),
    sa.Column('number', sa.Integer(), nullable=False),
    sa.Column('request', store.types.JSONText(), nullable=False),
    sa.Column('response_status', sa.Integer(), nullable=True),
    sa.Column('response_body', sa.Text(), nullable=True),
    sa.Column('latency_ms', sa.Integer(), nullable=True),
    sa.Column('outcome', sa.String(length=40), nullable=False),
    sa.Column('created_at', store.types.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['command_id'], ['commands.id'], name=op.f('fk_attempts_command_id_commands')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_attempts')),
    sa.UniqueConstraint('command_id', 'number', name='uq_attempts_number')
    )
    op.create_table('provider_refs',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('connection_id', sa.String(length=40), nullable=False),
    sa.Column('provider', sa.String(length=50), nullable=False),
    sa.Column('kind', sa.String(length=50), nullable=False),
    sa.Column('external_id', sa.String(length=255), nullable=False),
    sa.Column('record_id', sa.String(length=40), nullable=False),
    sa.ForeignKeyConstraint(['connection_id'], ['connections.id'], name=op.f('fk_provider_refs_connection_id_connections')),
    sa.ForeignKeyConstraint(['record_id'], ['records.id'], name=op.f('fk_provider_refs_record_id_records')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_provider_refs')),
    sa.UniqueConstraint('connection_id', 'kind', 'external_id', name='uq_provider_refs_external')
    )
    with op.batch_alter_table('provider_refs', schema=None) as batch_op:
        batch_op.create_index('ix_provider_refs_external_id', ['external_id'], unique=False)
        batch_op.create_index('ix_provider_refs_record', ['record_id'], unique=False)

    op.create_table('transitions',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('record_id', sa.String(length=40), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('from_status', sa.String(length=20), nullable=True),
    sa.Column('to_status', sa.String(length=20), nullable=False),
    sa.Column('cause', sa.String(length=20), nullable=False),
    sa.Column('actor', sa.String(length=200), nullable=False),
    sa.Column('mapping_version', sa.String(length=100), nullable=True),
    sa.Column('delivery_id', sa.String(length=40), nullable=True),
    sa.Column('command_id', sa.String(length=40), nullable=True),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('changed_fields', store.types.JSONText(), nullable=False),
    sa.Column('occurred_at', store.types.UTCDateTime(), nullable=True),
    sa.Column('created_at', store.types.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['record_id'], ['records.id'], name=op.f('fk_transitions_record_id_records')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_transitions')),
    sa.UniqueConstraint('record_id', 'version', name='uq_transitions_version')
    )
    # The audit chain starts from a genesis head: sequence 0, an all-zero hash.
    audit_head = sa.table("audit_head", sa.column("id", sa.Integer), sa.column("seq", sa.Integer), sa.column("hash", sa.String))
    op.bulk_insert(audit_head, [{"id": 1, "seq": 0, "hash": "0" * 64}])


def downgrade() -> None:
    op.drop_table('transitions')
    with op.batch_alter_table('provider_refs', schema=None) as batch_op:
        batch_op.drop_index('ix_provider_refs_record')
        batch_op.drop_index('ix_provider_refs_external_id')

    op.drop_table('provider_refs')
    op.drop_table('attempts')
    with op.batch_alter_table('records', schema=None) as batch_op:
        batch_op.drop_index('ix_records_status_connection')

    op.drop_table('records')
    with op.batch_alter_table('failure_notes', schema=None) as batch_op:
        batch_op.drop_index('ix_failure_notes_failure')

    op.drop_table('failure_notes')
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.drop_index('ix_deliveries_connection_received')
        batch_op.drop_index('ix_deliveries_record')

    op.drop_table('deliveries')
    op.drop_table('connection_versions')
    with op.batch_alter_table('commands', schema=None) as batch_op:
        batch_op.drop_index('ix_commands_status')
        batch_op.drop_index('ix_commands_record')

    op.drop_table('commands')
    with op.batch_alter_table('failures', schema=None) as batch_op:
        batch_op.drop_index('ix_failures_state_category')
        batch_op.drop_index('ix_failures_record')
        batch_op.drop_index('ix_failures_fingerprint')
        batch_op.drop_index('ix_failures_delivery')

    op.drop_table('failures')
    op.drop_table('connections')
    op.drop_table('audit_head')
    with op.batch_alter_table('audit_entries', schema=None) as batch_op:
        batch_op.drop_index('ix_audit_target')

    op.drop_table('audit_entries')
