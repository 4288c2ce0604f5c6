"""The store's tables. Idempotency lives here, in unique constraints, not only in code."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from .types import JSONText, UTCDateTime

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

ID = String(40)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Connection(Base):
    """One provider for one tenant in one environment. Every change is a new version."""

    __tablename__ = "connections"

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    provider: Mapped[str] = mapped_column(String(50))
    environment: Mapped[str] = mapped_column(String(20))
    paused: Mapped[bool] = mapped_column(Boolean, default=False)
    version: Mapped[int] = mapped_column(Integer, default=1)
    settings: Mapped[dict[str, Any]] = mapped_column(JSONText, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ConnectionVersion(Base):
    __tablename__ = "connection_versions"
    __table_args__ = (UniqueConstraint("connection_id", "version", name="uq_connection_versions_version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    connection_id: Mapped[str] = mapped_column(ForeignKey("connections.id"))
    version: Mapped[int] = mapped_column(Integer)
    snapshot: Mapped[dict[str, Any]] = mapped_column(JSONText)
    actor: Mapped[str] = mapped_column(String(200))
    reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Delivery(Base):
    """One inbound payload exactly as received, and what ingest concluded about it.

    `dedupe_key` is the provider event ID (or `sha256:<payload hash>` where there is none) on
    the first delivery of an event and NULL on its duplicates, so the unique constraint admits
    exactly one original per (connection, event) however many processes ingest at once.
    """

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("connection_id", "dedupe_key", name="uq_deliveries_dedupe"),
        Index("ix_deliveries_record", "record_id"),
        # Providers screen: last event and event rate per connection.
        Index("ix_deliveries_connection_received", "connection_id", "received_at"),
    )

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    connection_id: Mapped[str] = mapped_column(ForeignKey("connections.id"))
    source: Mapped[str] = mapped_column(String(20))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)
    headers: Mapped[dict[str, Any]] = mapped_column(JSONText)
    body: Mapped[bytes] = mapped_column(LargeBinary)
    payload_hash: Mapped[str] = mapped_column(String(64))
    provider_event_id: Mapped[str | None] = mapped_column(String(255))
    dedupe_key: Mapped[str | None] = mapped_column(String(255))
    event_type: Mapped[str | None] = mapped_column(String(255))
    occurred_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    signature_verdict: Mapped[str] = mapped_column(String(20), default="unchecked")
    verdict: Mapped[str] = mapped_column(String(20))
    verdict_reason: Mapped[str | None] = mapped_column(Text)
    record_id: Mapped[str | None] = mapped_column(ID)
    mapping_version: Mapped[str | None] = mapped_column(String(100))
    duplicate_of: Mapped[str | None] = mapped_column(ID)
    replay_of: Mapped[str | None] = mapped_column(ID)


class Record(Base):
    """What we believe now about one thing at the provider, with its ordering watermark."""

    __tablename__ = "records"
    __table_args__ = (
        Index("ix_records_status_connection", "status", "connection_id"),
    )

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    connection_id: Mapped[str] = mapped_column(ForeignKey("connections.id"))
    kind: Mapped[str] = mapped_column(String(50))
    status: Mapped[str] = mapped_column(String(20))
    version: Mapped[int] = mapped_column(Integer)
    fields: Mapped[dict[str, Any]] = mapped_column(JSONText)
    last_occurred_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_rank: Mapped[int | None] = mapped_column(Integer)
    last_event_key: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ProviderRef(Base):
    """(provider, external ID) <-> internal ID, kept apart from internal IDs."""

    __tablename__ = "provider_refs"
    __table_args__ = (
        UniqueConstraint("connection_id", "kind", "external_id", name="uq_provider_refs_external"),
        Index("ix_provider_refs_external_id", "external_id"),
        Index("ix_provider_refs_record", "record_id"),
    )

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    connection_id: Mapped[str] = mapped_column(ForeignKey("connections.id"))
    provider: Mapped[str] = mapped_column(String(50))
    kind: Mapped[str] = mapped_column(String(50))
    external_id: Mapped[str] = mapped_column(String(255))
    record_id: Mapped[str] = mapped_column(ForeignKey("records.id"))


class Transition(Base):
    """One explained change of belief. (record, version) is unique: a transition guard."""

    __tablename__ = "transitions"
    __table_args__ = (
        UniqueConstraint("record_id", "version", name="uq_transitions_version"),
    )

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    record_id: Mapped[str] = mapped_column(ForeignKey("records.id"))
    version: Mapped[int] = mapped_column(Integer)
    from_status: Mapped[str | None] = mapped_column(String(20))
    to_status: Mapped[str] = mapped_column(String(20))
    cause: Mapped[str] = mapped_column(String(20))
    actor: Mapped[str] = mapped_column(String(200))
    mapping_version: Mapped[str | None] = mapped_column(String(100))
    delivery_id: Mapped[str | None] = mapped_column(ID)
    command_id: Mapped[str | None] = mapped_column(ID)
    reason: Mapped[str] = mapped_column(Text)
    changed_fields: Mapped[list[str]] = mapped_column(JSONText)
    occurred_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Command(Base):
    """What we asked the provider to do (the outbox), written with the intent."""

    __tablename__ = "commands"
    __table_args__ = (
        UniqueConstraint("connection_id", "idempotency_key", name="uq_commands_idempotency"),
        Index("ix_commands_record", "record_id"),
        Index("ix_commands_status", "status"),
    )

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    connection_id: Mapped[str] = mapped_column(ForeignKey("connections.id"))
    record_id: Mapped[str | None] = mapped_column(ID)
    operation_id: Mapped[str] = mapped_column(String(100), unique=True)
    idempotency_key: Mapped[str] = mapped_column(String(255))
    intent: Mapped[str] = mapped_column(String(100))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONText)
    status: Mapped[str] = mapped_column(String(20))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Attempt(Base):
    """One exchange with the provider and its classified outcome."""

    __tablename__ = "attempts"
    __table_args__ = (UniqueConstraint("command_id", "number", name="uq_attempts_number"),)

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    command_id: Mapped[str] = mapped_column(ForeignKey("commands.id"))
    number: Mapped[int] = mapped_column(Integer)
    request: Mapped[dict[str, Any]] = mapped_column(JSONText)
    response_status: Mapped[int | None] = mapped_column(Integer)
    response_body: Mapped[str | None] = mapped_column(Text)
    latency_ms: Mapped[int | None] = mapped_column(Integer)
    outcome: Mapped[str] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Failure(Base):
    """A classified problem tied to a delivery, command or record, with its triage state."""

    __tablename__ = "failures"
    __table_args__ = (
        Index("ix_failures_state_category", "state", "category", "connection_id"),
        Index("ix_failures_fingerprint", "fingerprint"),
        Index("ix_failures_record", "record_id"),
        Index("ix_failures_delivery", "delivery_id"),
    )

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    category: Mapped[str] = mapped_column(String(40))
    state: Mapped[str] = mapped_column(String(20))
    connection_id: Mapped[str | None] = mapped_column(ID)
    record_id: Mapped[str | None] = mapped_column(ID)
    delivery_id: Mapped[str | None] = mapped_column(ID)
    command_id: Mapped[str | None] = mapped_column(ID)
    fingerprint: Mapped[str] = mapped_column(String(64))
    message: Mapped[str] = mapped_column(Text)
    assignee: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class FailureNote(Base):
    __tablename__ = "failure_notes"
    __table_args__ = (Index("ix_failure_notes_failure", "failure_id"),)

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    failure_id: Mapped[str] = mapped_column(ForeignKey("failures.id"))
    actor: Mapped[str] = mapped_column(String(200))
    note: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class AuditEntry(Base):
    """Append-only, hash-chained: each hash covers the previous hash and this entry's content."""

    __tablename__ = "audit_entries"
    __table_args__ = (Index("ix_audit_target", "target_id"),)

    seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=False)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(100))
    target_type: Mapped[str] = mapped_column(String(50))
    target_id: Mapped[str | None] = mapped_column(String(255))
    before: Mapped[Any | None] = mapped_column(JSONText)
    after: Mapped[Any | None] = mapped_column(JSONText)
    reason: Mapped[str | None] = mapped_column(Text)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AuditHead(Base):
    """The single row that serialises appends to the audit chain (locked FOR UPDATE)."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"))
    hash: Mapped[str] = mapped_column(String(64))
