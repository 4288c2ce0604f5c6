"""The store's tables. Idempotency lives here, in unique constraints, not only in code.

Plain SQLAlchemy Core tables: the services read and write rows, never ORM objects, and not
importing the ORM keeps the workbench's start-up short. Each class names one table
(`Delivery.__table__`), so a reader finds the table by the concept it stores.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Double,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

from .types import JSONText, UTCDateTime

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

ID = String(40)

metadata = MetaData(naming_convention=NAMING)


class Base:
    """Kept for Alembic and tests: the metadata holding every table."""

    metadata = metadata


class Connection:
    """One provider for one tenant in one environment. Every change is a new version."""
    __table__ = Table(
        "connections", metadata,
        Column("id", ID, primary_key=True),
        Column("name", String(200), unique=True, nullable=False),
        Column("provider", String(50), nullable=False),
        Column("environment", String(20), nullable=False),
        Column("paused", Boolean, default=False, nullable=False),
        Column("version", Integer, default=1, nullable=False),
        Column("settings", JSONText, default=dict, nullable=False),
        Column("created_at", UTCDateTime, nullable=False),
        Column("updated_at", UTCDateTime, nullable=False),
    )


class ConnectionVersion:
    __table__ = Table(
        "connection_versions", metadata,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("connection_id", ForeignKey("connections.id"), nullable=False),
        Column("version", Integer, nullable=False),
        Column("snapshot", JSONText, nullable=False),
        Column("actor", String(200), nullable=False),
        Column("reason", Text, nullable=True),
        Column("created_at", UTCDateTime, nullable=False),
        UniqueConstraint("connection_id", "version", name="uq_connection_versions_version"),
    )


class Delivery:
    """One inbound payload exactly as received, and what ingest concluded about it.

    `dedupe_key` is the provider event ID (or `sha256:<payload hash>` where there is none) on
    the first delivery of an event and NULL on its duplicates, so the unique constraint admits
    exactly one original per (connection, event) however many processes ingest at once.

    `capture_key` identifies the capture line itself (its receipt time, then a hash of payload
    hash and stored headers): unique per connection, so re-running a capture file stores nothing twice. NULL on
    copies made by a retry (they repeat their original's capture) and on rows stored before
    revision 0002 that repeat an earlier row's capture.
    """
    __table__ = Table(
        "deliveries", metadata,
        Column("id", ID, primary_key=True),
        Column("connection_id", ForeignKey("connections.id"), nullable=False),
        Column("source", String(20), nullable=False),
        Column("received_at", UTCDateTime, nullable=False),
        Column("headers", JSONText, nullable=False),
        Column("body", LargeBinary, nullable=False),
        Column("payload_hash", String(64), nullable=False),
        Column("provider_event_id", String(255), nullable=True),
        Column("dedupe_key", String(255), nullable=True),
        Column("event_type", String(255), nullable=True),
        Column("occurred_at", UTCDateTime, nullable=True),
        # Byte order on every backend (PostgreSQL's "C" collation; SQLite's is binary): ingest
        # looks keys up by range, computed in Python.
        Column("capture_key", String(32).with_variant(String(32, collation="C"), "postgresql"), nullable=True),
        Column("signature_verdict", String(20), default="unchecked", nullable=False),
        Column("verdict", String(20), nullable=False),
        Column("verdict_reason", Text, nullable=True),
        Column("record_id", ID, nullable=True),
        Column("mapping_version", String(100), nullable=True),
        Column("duplicate_of", ID, nullable=True),
        Column("replay_of", ID, nullable=True),
        # What the body is now: NULL, the bytes as received; else sealed under version N of its
        # connection's data key (services/payload_crypto). `body_purged_at`: when retention
        # emptied it (the hash, identifiers and verdicts stay).
        Column("body_key_version", Integer, nullable=True),
        Column("body_purged_at", UTCDateTime, nullable=True),
        # The name of the secret reference that verified the delivery, or the last one tried
        # when its signature failed (never a value); NULL when unchecked.
        Column("signature_secret", String(100), nullable=True),
        UniqueConstraint("connection_id", "dedupe_key", name="uq_deliveries_dedupe"),
        Index("uq_deliveries_capture", "connection_id", "capture_key", unique=True),
        Index("ix_deliveries_record", "record_id"),
        # Providers screen: last event and event rate per connection.
        Index("ix_deliveries_connection_received", "connection_id", "received_at"),
        # Providers screen: the newest failed signature. Partial: the rare failed rows only.
        Index("ix_deliveries_signature_failed", "connection_id", "received_at",
              sqlite_where=text("signature_verdict = 'failed'"),
              postgresql_where=text("signature_verdict = 'failed'")),
    )


class Record:
    """What we believe now about one thing at the provider, with its ordering watermark."""
    __table__ = Table(
        "records", metadata,
        Column("id", ID, primary_key=True),
        Column("connection_id", ForeignKey("connections.id"), nullable=False),
        Column("kind", String(50), nullable=False),
        Column("status", String(20), nullable=False),
        Column("version", Integer, nullable=False),
        Column("fields", JSONText, nullable=False),
        Column("last_occurred_at", UTCDateTime, nullable=True),
        Column("last_rank", Integer, nullable=True),
        Column("last_event_key", String(255), nullable=True),
        Column("created_at", UTCDateTime, nullable=False),
        Column("updated_at", UTCDateTime, nullable=False),
        Index("ix_records_status_connection", "status", "connection_id"),
    )


class ProviderRef:
    """(provider, external ID) <-> internal ID, kept apart from internal IDs."""
    __table__ = Table(
        "provider_refs", metadata,
        Column("id", ID, primary_key=True),
        Column("connection_id", ForeignKey("connections.id"), nullable=False),
        Column("provider", String(50), nullable=False),
        Column("kind", String(50), nullable=False),
        Column("external_id", String(255), nullable=False),
        Column("record_id", ForeignKey("records.id"), nullable=False),
        UniqueConstraint("connection_id", "kind", "external_id", name="uq_provider_refs_external"),
        Index("ix_provider_refs_external_id", "external_id"),
        Index("ix_provider_refs_record", "record_id"),
    )


class Transition:
    """One explained change of belief. (record, version) is unique: a transition guard."""
    __table__ = Table(
        "transitions", metadata,
        Column("id", ID, primary_key=True),
        Column("record_id", ForeignKey("records.id"), nullable=False),
        Column("version", Integer, nullable=False),
        Column("from_status", String(20), nullable=True),
        Column("to_status", String(20), nullable=False),
        Column("cause", String(20), nullable=False),
        Column("actor", String(200), nullable=False),
        Column("mapping_version", String(100), nullable=True),
        Column("delivery_id", ID, nullable=True),
        Column("command_id", ID, nullable=True),
        Column("reason", Text, nullable=False),
        Column("changed_fields", JSONText, nullable=False),
        Column("occurred_at", UTCDateTime, nullable=True),
        Column("created_at", UTCDateTime, nullable=False),
        UniqueConstraint("record_id", "version", name="uq_transitions_version"),
    )


class Command:
    """What we asked the provider to do (the outbox), written with the intent."""
    __table__ = Table(
        "commands", metadata,
        Column("id", ID, primary_key=True),
        Column("connection_id", ForeignKey("connections.id"), nullable=False),
        Column("record_id", ID, nullable=True),
        Column("operation_id", String(100), unique=True, nullable=False),
        Column("idempotency_key", String(255), nullable=False),
        Column("intent", String(100), nullable=False),
        Column("payload", JSONText, nullable=False),
        Column("status", String(20), nullable=False),
        Column("attempts", Integer, default=0, nullable=False),
        Column("next_attempt_at", UTCDateTime, nullable=True),
        Column("created_at", UTCDateTime, nullable=False),
        Column("updated_at", UTCDateTime, nullable=False),
        UniqueConstraint("connection_id", "idempotency_key", name="uq_commands_idempotency"),
        Index("ix_commands_record", "record_id"),
        Index("ix_commands_status", "status"),
    )


class Attempt:
    """One exchange with the provider and its classified outcome."""
    __table__ = Table(
        "attempts", metadata,
        Column("id", ID, primary_key=True),
        Column("command_id", ForeignKey("commands.id"), nullable=False),
        Column("number", Integer, nullable=False),
        Column("request", JSONText, nullable=False),
        Column("response_status", Integer, nullable=True),
        Column("response_body", Text, nullable=True),
        Column("latency_ms", Integer, nullable=True),
        Column("outcome", String(40), nullable=False),
        Column("created_at", UTCDateTime, nullable=False),
        UniqueConstraint("command_id", "number", name="uq_attempts_number"),
    )


class Failure:
    """A classified problem tied to a delivery, command or record, with its triage state."""
    __table__ = Table(
        "failures", metadata,
        Column("id", ID, primary_key=True),
        Column("category", String(40), nullable=False),
        Column("state", String(20), nullable=False),
        Column("connection_id", ID, nullable=True),
        Column("record_id", ID, nullable=True),
        Column("delivery_id", ID, nullable=True),
        Column("command_id", ID, nullable=True),
        Column("fingerprint", String(64), nullable=False),
        Column("message", Text, nullable=False),
        Column("assignee", String(200), nullable=True),
        Column("created_at", UTCDateTime, nullable=False),
        Column("updated_at", UTCDateTime, nullable=False),
        Index("ix_failures_state_category", "state", "category", "connection_id"),
        Index("ix_failures_fingerprint", "fingerprint"),
        Index("ix_failures_record", "record_id"),
        Index("ix_failures_delivery", "delivery_id"),
        # Alert rules count recent failures by time (services/alerts, every few seconds).
        Index("ix_failures_created", "created_at"),
    )


class FailureNote:
    __table__ = Table(
        "failure_notes", metadata,
        Column("id", ID, primary_key=True),
        Column("failure_id", ForeignKey("failures.id"), nullable=False),
        Column("actor", String(200), nullable=False),
        Column("note", Text, nullable=False),
        Column("created_at", UTCDateTime, nullable=False),
        Index("ix_failure_notes_failure", "failure_id"),
    )


class AuditEntry:
    """Append-only, chained: each hash (a keyed MAC since 0003) covers the previous one and this entry."""
    __table__ = Table(
        "audit_entries", metadata,
        Column("seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=False),
        Column("at", UTCDateTime, nullable=False),
        Column("actor", String(200), nullable=False),
        Column("action", String(100), nullable=False),
        Column("target_type", String(50), nullable=False),
        Column("target_id", String(255), nullable=True),
        Column("before", JSONText, nullable=True),
        Column("after", JSONText, nullable=True),
        Column("reason", Text, nullable=True),
        Column("prev_hash", String(64), nullable=False),
        Column("hash", String(64), nullable=False),
        # "sha256" (a plain hash, entries made before revision 0003) or "hmac-sha256" (keyed).
        Column("scheme", String(20), nullable=False, server_default="sha256"),
        Index("ix_audit_target", "target_id"),
    )


class AuditHead:
    """The single row that serialises appends to the audit chain (locked FOR UPDATE)."""
    __table__ = Table(
        "audit_head", metadata,
        Column("id", Integer, primary_key=True),
        Column("seq", BigInteger().with_variant(Integer, "sqlite"), nullable=False),
        Column("hash", String(64), nullable=False),
    )


class RoleBinding:
    """Who may do what: one role per actor ("user:NAME", or "system:NAME" for a process such
    as the engine). `founding` is true on the binding made by the first-user rule and NULL on
    every other: its unique index lets only one first admin in, however many first users race."""
    __table__ = Table(
        "role_bindings", metadata,
        Column("actor", String(200), primary_key=True),
        Column("role", String(20), nullable=False),
        Column("granted_by", String(200), nullable=False),
        Column("granted_at", UTCDateTime, nullable=False),
        Column("founding", Boolean, nullable=True),
        Index("uq_role_bindings_founding", "founding", unique=True),
    )


class Process:
    """A running receiver or engine, as it announced itself: where it runs, its address (a
    receiver's base URL) and its heartbeat (`seen_at`); `stopped_at` once it stopped cleanly.
    A process that died shows as one whose heartbeat is old."""
    __table__ = Table(
        "processes", metadata,
        Column("id", ID, primary_key=True),
        Column("kind", String(20), nullable=False),  # "receiver" | "engine"
        Column("host", String(255), nullable=False),
        Column("pid", Integer, nullable=False),
        Column("address", String(255), nullable=True),
        Column("started_at", UTCDateTime, nullable=False),
        Column("seen_at", UTCDateTime, nullable=False),
        Column("stopped_at", UTCDateTime, nullable=True),
        Index("ix_processes_kind_seen", "kind", "seen_at"),
    )


class SyncState:
    """The engine's per-connection state: where polling got to (the provider's cursor), how
    far behind it is, and whether the connection's calls are stopped (an `authentication`
    failure stops them until the `api_key` reference named in `stopped_key` is replaced).
    `reconcile_requested_at`: a "reconcile now" request the engine has not served yet."""
    __table__ = Table(
        "sync_state", metadata,
        Column("connection_id", ForeignKey("connections.id"), primary_key=True),
        Column("cursor", Text, nullable=True),
        Column("last_poll_at", UTCDateTime, nullable=True),
        Column("last_event_at", UTCDateTime, nullable=True),
        Column("lag_s", Integer, nullable=True),  # seconds between the newest event seen and its poll
        Column("calls_stopped_at", UTCDateTime, nullable=True),
        Column("calls_stopped_reason", Text, nullable=True),
        Column("stopped_key", String(100), nullable=True),  # the api_key reference that failed
        Column("reconcile_requested_at", UTCDateTime, nullable=True),
        Column("updated_at", UTCDateTime, nullable=False),
    )


class Lease:
    """Who does a piece of shared work until when: `poll:<connection id>` (one poller per
    connection), `engine:store` (the active engine on a SQLite store). A holder renews before
    `expires_at`; a lease past it may be taken by anyone (a takeover, counted)."""
    __table__ = Table(
        "leases", metadata,
        Column("resource", String(200), primary_key=True),
        Column("holder", ID, nullable=False),  # processes.id of the engine holding it
        Column("acquired_at", UTCDateTime, nullable=False),
        Column("expires_at", UTCDateTime, nullable=False),
        Column("takeovers", Integer, default=0, nullable=False),
    )


class Breaker:
    """A connection's circuit breaker, shared by every engine on the store: closed, open (no
    calls until `probe_at`) or half_open (one probe in flight until `probe_at`); the calls and
    tripping failures counted in the current window; how long the connection has been failing
    without a break (`failing_since`) and the auto-pause warning given for it (`warned`, %)."""
    __table__ = Table(
        "breakers", metadata,
        Column("connection_id", ForeignKey("connections.id"), primary_key=True),
        Column("state", String(20), nullable=False),
        Column("window_started_at", UTCDateTime, nullable=True),
        Column("calls", Integer, nullable=False),
        Column("failures", JSONText, nullable=False),  # category -> count in the window
        Column("opened_at", UTCDateTime, nullable=True),
        Column("probe_at", UTCDateTime, nullable=True),
        Column("failing_since", UTCDateTime, nullable=True),
        Column("warned", Integer, nullable=False),
        Column("reason", Text, nullable=True),
        Column("updated_at", UTCDateTime, nullable=False),
    )


class Pace:
    """A connection's outbound pace shared by every engine (GCRA): `tat`, the theoretical
    arrival time (epoch seconds) of the next call; taking n calls moves it to
    max(tat, now) + n / rate in one atomic UPDATE."""
    __table__ = Table(
        "pace", metadata,
        Column("connection_id", ForeignKey("connections.id"), primary_key=True),
        Column("tat", Double, nullable=False),
    )


class ReconcileRun:
    """One comparison of a connection's records with its provider's current view: asked for
    (status "requested", picked up by a running engine), running, finished or failed, with its
    counts. `record_id`: a run over one record only; `dry_run`: findings counted, not written."""
    __table__ = Table(
        "reconcile_runs", metadata,
        Column("id", ID, primary_key=True),
        Column("connection_id", ForeignKey("connections.id"), nullable=False),
        Column("record_id", ID, nullable=True),
        Column("dry_run", Boolean, nullable=False),
        Column("status", String(20), nullable=False),  # requested | running | finished | failed
        Column("requested_by", String(200), nullable=False),
        Column("requested_at", UTCDateTime, nullable=False),
        Column("started_at", UTCDateTime, nullable=True),
        Column("finished_at", UTCDateTime, nullable=True),
        Column("records_checked", Integer, default=0, nullable=False),
        Column("provider_objects", Integer, default=0, nullable=False),
        Column("findings", Integer, default=0, nullable=False),
        Column("error", Text, nullable=True),
        Index("ix_reconcile_runs_connection_status", "connection_id", "status"),
    )


class DriftFinding:
    """One field on which our belief and the provider's view differ (field "exists": one side
    does not know the object at all), since the run that first saw it, until resolved."""
    __table__ = Table(
        "drift_findings", metadata,
        Column("id", ID, primary_key=True),
        Column("run_id", ForeignKey("reconcile_runs.id"), nullable=False),
        Column("connection_id", ForeignKey("connections.id"), nullable=False),
        Column("record_id", ID, nullable=True),  # NULL: a provider object we have no record of
        Column("kind", String(50), nullable=False),
        Column("provider_id", String(255), nullable=True),  # NULL: a record the provider does not know by ID
        Column("field", String(100), nullable=False),
        Column("ours", JSONText, nullable=True),
        Column("theirs", JSONText, nullable=True),
        Column("since", UTCDateTime, nullable=False),
        Column("state", String(20), nullable=False),  # open | resolved
        Column("resolution", String(20), nullable=True),  # accept | push | escalate | cleared
        Column("resolved_by", String(200), nullable=True),
        Column("resolved_at", UTCDateTime, nullable=True),
        Column("note", Text, nullable=True),
        Index("ix_drift_findings_connection_state", "connection_id", "state"),
        Index("ix_drift_findings_record", "record_id"),
    )


class Recovery:
    """A recovery by filter (`workbench failures retry --filter`, `workbench recover`): the
    filter as asked, the planned set frozen at confirmation (recovery_items), carried out by
    an engine in batches. state: running | finished | cancelled. `cancel_requested_at`: an
    operator asked to stop; the engine stops before its next batch and leaves the rest."""
    __table__ = Table(
        "recoveries", metadata,
        Column("id", ID, primary_key=True),
        Column("filter", JSONText, nullable=False),
        Column("description", Text, nullable=False),  # the filter in its own language
        Column("state", String(20), nullable=False),
        Column("total", Integer, nullable=False),
        Column("done", Integer, default=0, nullable=False),
        Column("skipped", Integer, default=0, nullable=False),
        Column("requested_by", String(200), nullable=False),
        Column("requested_at", UTCDateTime, nullable=False),
        Column("started_at", UTCDateTime, nullable=True),
        Column("finished_at", UTCDateTime, nullable=True),
        Column("cancel_requested_at", UTCDateTime, nullable=True),
        Column("note", Text, nullable=True),
        Index("ix_recoveries_state", "state"),
    )


class RecoveryItem:
    """One failure of a recovery's planned set: pending until the engine retries it (done or
    skipped, with what happened), or cancelled with its recovery."""
    __table__ = Table(
        "recovery_items", metadata,
        Column("recovery_id", ForeignKey("recoveries.id"), primary_key=True),
        Column("failure_id", ID, primary_key=True),
        Column("state", String(20), nullable=False),  # pending | done | skipped | cancelled
        Column("message", Text, nullable=True),
        Index("ix_recovery_items_state", "recovery_id", "state"),
    )


class Alert:
    """A condition people are told about: a rule's failure condition holding on a connection,
    or a signal the engine raised (breaker opened, secret expiring). At most one alert per rule
    and connection is open or acknowledged (the partial unique index): a condition that keeps
    holding grows its `count`; resolved ones stay as history. `notified_count`: the count the
    last notice reported (a repeat is sent only when it grew)."""
    __table__ = Table(
        "alerts", metadata,
        Column("id", ID, primary_key=True),
        Column("rule", String(100), nullable=False),
        Column("connection_id", ForeignKey("connections.id"), nullable=False),
        Column("source", String(20), nullable=False),  # rule | signal
        Column("severity", String(20), nullable=False),  # info | warning | critical
        Column("state", String(20), nullable=False),  # open | acknowledged | resolved
        Column("summary", Text, nullable=False),
        Column("count", Integer, nullable=False),
        Column("first_seen_at", UTCDateTime, nullable=False),
        Column("last_seen_at", UTCDateTime, nullable=False),
        Column("last_notified_at", UTCDateTime, nullable=True),
        Column("notified_count", Integer, default=0, nullable=False),
        Column("acknowledged_by", String(200), nullable=True),
        Column("acknowledged_at", UTCDateTime, nullable=True),
        Column("resolved_by", String(200), nullable=True),
        Column("resolved_at", UTCDateTime, nullable=True),
        Column("note", Text, nullable=True),
        Index("uq_alerts_open", "rule", "connection_id", unique=True,
              sqlite_where=text("state <> 'resolved'"), postgresql_where=text("state <> 'resolved'")),
        Index("ix_alerts_state", "state", "connection_id"),
    )


class AlertNotification:
    """The notifications outbox: one row per alert notice (opened, repeat, recovered) and
    notifier, written in the alert's transaction and delivered later, outside any transaction,
    by the engine's notification worker. `notifier`: the notifier's configuration as it was
    (vault references, never a URL or other secret); `last_error`: why the last try failed."""
    __table__ = Table(
        "alert_notifications", metadata,
        Column("id", ID, primary_key=True),
        Column("alert_id", ForeignKey("alerts.id"), nullable=False),
        Column("connection_id", ID, nullable=False),
        Column("notifier_name", String(64), nullable=False),
        Column("notifier", JSONText, nullable=False),
        Column("kind", String(20), nullable=False),  # opened | repeat | recovered
        Column("payload", JSONText, nullable=False),
        Column("status", String(20), nullable=False),  # pending | sent | failed (gave up)
        Column("attempts", Integer, default=0, nullable=False),
        Column("next_attempt_at", UTCDateTime, nullable=False),
        Column("last_error", Text, nullable=True),
        Column("created_at", UTCDateTime, nullable=False),
        Column("sent_at", UTCDateTime, nullable=True),
        Index("ix_alert_notifications_due", "status", "next_attempt_at"),
        Index("ix_alert_notifications_notifier", "connection_id", "notifier_name", "created_at"),
    )


class StoreSetting:
    """Store-wide settings, one row per key, each a validated JSON document: "alerts" holds the
    alert rules and notifiers every connection gets unless it sets its own (services/alerts;
    no row: the defaults in code). Changed through a use case, audited."""
    __table__ = Table(
        "store_settings", metadata,
        Column("key", String(100), primary_key=True),
        Column("value", JSONText, nullable=False),
        Column("updated_by", String(200), nullable=False),
        Column("updated_at", UTCDateTime, nullable=False),
    )
