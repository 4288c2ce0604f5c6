"""The story of one record: every delivery, transition, failure (and its notes), command,
attempt and audit entry, merged in time order. A product feature, not debug output."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select

from store.database import reading
from store.models import (
    Attempt,
    AuditEntry,
    Command,
    Connection as ConnectionRow,
    Delivery,
    Failure,
    FailureNote,
    ProviderRef,
    Record,
    Transition,
)
from workbench.domain.canonical import Cause
from workbench.domain.redaction import redact, redact_body, redact_headers, redact_label, redact_text

from . import access
from .context import ServiceContext
from .errors import NotFound
from .payload_crypto import NO_VAULTS, BodyReader, Vaults
from .redaction_rules import provider_paths

records = Record.__table__
refs = ProviderRef.__table__
deliveries = Delivery.__table__
transitions = Transition.__table__
failures = Failure.__table__
notes = FailureNote.__table__
commands = Command.__table__
attempts = Attempt.__table__
audit = AuditEntry.__table__
connections = ConnectionRow.__table__

# Same-instant entries read best cause-first: what arrived, what we concluded, what went wrong.
KIND_ORDER = {"delivery": 0, "command": 1, "attempt": 2, "transition": 3, "failure": 4, "note": 5, "audit": 6}


@dataclass(frozen=True)
class TimelineEntry:
    at: datetime
    kind: str
    id: str
    summary: str
    detail: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {"at": self.at.isoformat(), "kind": self.kind, "id": self.id, "summary": self.summary,
                "detail": self.detail}


@dataclass
class Timeline:
    record: dict[str, Any]
    entries: list[TimelineEntry] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"record": self.record, "entries": [e.as_dict() for e in self.entries]}


def resolve_record_id(conn: Connection, ref: str, connection_id: str | None = None) -> str:
    """An internal record ID, or a provider's external ID; `connection_id` narrows the search
    to one connection (an external ID may exist in several)."""
    by_id = select(records.c.id).where(records.c.id == ref)
    by_external = select(refs.c.record_id).where(refs.c.external_id == ref)
    if connection_id is not None:
        by_id = by_id.where(records.c.connection_id == connection_id)
        by_external = by_external.where(refs.c.connection_id == connection_id)
    if conn.execute(by_id).first():
        return ref
    matches = conn.execute(by_external).scalars().all()
    if not matches:
        where = " in that connection" if connection_id is not None else ""
        raise NotFound(f"no record with internal or external ID {ref!r}{where}")
    if len(set(matches)) > 1:
        raise NotFound(f"external ID {ref!r} names {len(set(matches))} records; use an internal ID")
    return str(matches[0])


def load_timeline(ctx: ServiceContext, ref: str, *, limit: int | None = None) -> Timeline:
    """The record's timeline; with `limit`, only its newest `limit` entries, reading only the
    deliveries that can be among them (a record may have tens of thousands)."""
    access.require(ctx, "read")
    with reading(ctx.engine) as conn:
        record_id = resolve_record_id(conn, ref)
        record = _record_summary(conn, record_id)
        entries: list[TimelineEntry] = []
        delivery_rows = _delivery_rows(conn, record_id, limit)
        transition_rows = conn.execute(select(transitions).where(transitions.c.record_id == record_id)).all()
        # An original delivery reads when it arrived, with what it caused. A copy re-run by a
        # retry keeps the original's received time (it orders belief), but reads when it was
        # re-run, which is when its transition was made; so do replay and operator transitions,
        # though they name the stored event that decided them.
        received = {row.id: row.received_at for row in delivery_rows if row.replay_of is None}
        if limit is not None:  # older originals still place the transitions they caused
            wanted = {row.delivery_id for row in transition_rows if row.delivery_id} - set(received)
            received.update(_received_at(conn, wanted))
        made = {row.delivery_id: row.created_at for row in transition_rows if row.delivery_id}
        for row in delivery_rows:
            at = row.received_at if row.replay_of is None else made.get(row.id, row.received_at)
            entries.append(_delivery_entry(row, at))
        for row in transition_rows:
            at = received.get(row.delivery_id) if row.cause == Cause.EVENT else None
            entries.append(_transition_entry(row, at))
        failure_rows = conn.execute(select(failures).where(failures.c.record_id == record_id)).all()
        if limit is not None:
            wanted = {row.delivery_id for row in failure_rows if row.delivery_id} - set(received)
            received.update(_received_at(conn, wanted))
        failure_ids = []
        for row in failure_rows:
            failure_ids.append(row.id)
            entries.append(_failure_entry(row, received.get(row.delivery_id)))
        if failure_ids:
            for row in conn.execute(select(notes).where(notes.c.failure_id.in_(failure_ids))):
                entries.append(TimelineEntry(row.created_at, "note", row.id, f"{row.actor}: {redact_text(row.note)}",
                                             {"failure_id": row.failure_id, "actor": row.actor}))
        command_ids = []
        for row in conn.execute(select(commands).where(commands.c.record_id == record_id)):
            command_ids.append(row.id)
            entries.append(TimelineEntry(row.created_at, "command", row.id,
                                         f"command {row.intent} ({row.status}, {row.attempts} attempt(s))",
                                         {"operation_id": row.operation_id, "intent": row.intent,
                                          "status": row.status, "payload": redact(row.payload)}))
        if command_ids:
            for row in conn.execute(select(attempts).where(attempts.c.command_id.in_(command_ids))):
                entries.append(TimelineEntry(row.created_at, "attempt", row.id,
                                             f"attempt {row.number}: HTTP {row.response_status or '-'} -> {row.outcome}"
                                             f" ({row.latency_ms or '-'} ms)",
                                             {"command_id": row.command_id, "request": redact(row.request),
                                              "response_status": row.response_status, "outcome": row.outcome}))
        targets = [record_id, *failure_ids, *command_ids]
        for row in conn.execute(select(audit).where(audit.c.target_id.in_(targets))):
            entries.append(TimelineEntry(row.at, "audit", f"audit:{row.seq}",
                                         f"{row.actor} {row.action}" + (f": {redact_text(row.reason)}" if row.reason else ""),
                                         {"seq": row.seq, "target": row.target_id, "before": redact(row.before),
                                          "after": redact(row.after)}))
    entries.sort(key=lambda e: (e.at, KIND_ORDER[e.kind], e.id))
    if limit is not None:
        entries = entries[-limit:]
    return Timeline(record, entries)


def _delivery_rows(conn: Connection, record_id: str, limit: int | None) -> Sequence[Any]:
    columns = [c for c in deliveries.c if c.name != "body"]
    mine = deliveries.c.record_id == record_id
    if limit is None:
        return conn.execute(select(*columns).where(mine)).all()
    # Originals read when they arrived, so only the newest `limit` of them can count; copies
    # re-run by a retry read when re-run, so all of them (they are few).
    newest = (select(deliveries.c.id).where(mine, deliveries.c.replay_of.is_(None))
              .order_by(deliveries.c.received_at.desc(), deliveries.c.id.desc()).limit(limit))
    copies = select(deliveries.c.id).where(mine, deliveries.c.replay_of.is_not(None))
    ids = [*conn.execute(newest).scalars(), *conn.execute(copies).scalars()]
    return conn.execute(select(*columns).where(deliveries.c.id.in_(ids))).all() if ids else []


def _received_at(conn: Connection, delivery_ids: set[str]) -> dict[str, Any]:
    if not delivery_ids:
        return {}
    return dict(conn.execute(select(deliveries.c.id, deliveries.c.received_at)
                             .where(deliveries.c.id.in_(delivery_ids), deliveries.c.replay_of.is_(None))).all())


def _record_summary(conn: Connection, record_id: str) -> dict[str, Any]:
    row = conn.execute(select(records, connections.c.name.label("connection"))
                       .join(connections, connections.c.id == records.c.connection_id)
                       .where(records.c.id == record_id)).one()
    ref_rows = conn.execute(select(refs.c.provider, refs.c.external_id).where(refs.c.record_id == record_id)).all()
    return {"id": row.id, "connection": row.connection, "kind": row.kind, "status": row.status,
            "version": row.version, "fields": redact(row.fields), "updated_at": row.updated_at.isoformat(),
            "provider_refs": [{"provider": r.provider, "external_id": redact_text(r.external_id)} for r in ref_rows]}


def _text(value: str | None) -> str | None:
    """A provider-controlled identifier (event or object ID), redacted."""
    return redact_text(value) if value else value


def _label(value: str | None) -> str | None:
    """A provider-controlled label that repeats (event type, a reason quoting a status), redacted."""
    return redact_label(value) if value else value


def _delivery_entry(row: Any, at: datetime | None = None) -> TimelineEntry:
    what = _label(row.event_type) or "unparsed body"
    summary = f"{row.source} {what} [{row.verdict}] · {signature_text(row.signature_verdict, row.signature_secret)}"
    if row.body_purged_at is not None:
        summary += f" (body purged {row.body_purged_at.isoformat(sep=' ', timespec='seconds')})"
    return TimelineEntry(at or row.received_at, "delivery", row.id, summary, {
        "body_purged_at": row.body_purged_at.isoformat() if row.body_purged_at else None,
        "body_encrypted": row.body_key_version is not None,
        "provider_event_id": _text(row.provider_event_id), "verdict": row.verdict,
        "reason": _label(row.verdict_reason),
        "occurred_at": row.occurred_at.isoformat() if row.occurred_at else None,
        "mapping_version": row.mapping_version, "duplicate_of": row.duplicate_of, "replay_of": row.replay_of,
        "signature": row.signature_verdict, "signature_secret": row.signature_secret})


def signature_text(verdict: str, secret: str | None) -> str:
    """A delivery's signature verdict in words, with the secret's name (never its value): the
    one that verified it, or the one tried when it failed."""
    if verdict == "verified":
        return f"sig verified ({secret})" if secret else "sig verified"
    if verdict == "failed":
        return f"sig failed (tried {secret})" if secret else "sig failed"
    return f"sig {verdict}"


def _transition_entry(row: Any, received: datetime | None) -> TimelineEntry:
    reason = _label(row.reason)
    summary = f"{row.from_status or '(new)'} -> {row.to_status} v{row.version} by {row.cause}: {reason}"
    return TimelineEntry(received or row.created_at, "transition", row.id, summary, {
        "from": row.from_status, "to": row.to_status, "version": row.version, "cause": row.cause,
        "actor": row.actor, "mapping_version": row.mapping_version, "delivery_id": row.delivery_id,
        "changed_fields": row.changed_fields, "reason": reason})


def _failure_entry(row: Any, received: datetime | None) -> TimelineEntry:
    summary = f"failure {row.category} [{row.state}]: {redact_label(row.message)}"
    return TimelineEntry(received or row.created_at, "failure", row.id, summary, {
        "category": row.category, "state": row.state, "fingerprint": row.fingerprint,
        "assignee": _text(row.assignee), "delivery_id": row.delivery_id})


def delivery_payload(ctx: ServiceContext, delivery_id: str, vaults: Vaults = NO_VAULTS) -> dict[str, Any]:
    """One delivery's raw payload, pretty and redacted, with what the mapping made of it. An
    encrypted body is opened with `vaults`; where it cannot be shown (vault locked, or purged by
    retention) `body` says why, `body_state` is "locked" or "purged", and the rest is shown."""
    access.require(ctx, "read")
    with reading(ctx.engine) as conn:
        row = read_delivery(conn, delivery_id)
        # Narrowed by record first: (record_id, version) is indexed, delivery_id is not.
        transition = conn.execute(select(transitions).where(
            transitions.c.record_id == row.record_id, transitions.c.delivery_id == delivery_id)).first()
    stored = BodyReader(vaults).body(row)
    if stored.data is not None:
        body, parsed = redact_body(stored.data, provider_paths(ctx, row.provider))
        state = "encrypted" if stored.encrypted else "plain"
    else:
        body, parsed = stored.problem, False
        state = "locked" if stored.encrypted else "purged"
    return {
        "id": row.id, "headers": redact_headers(row.headers), "body": body, "body_is_json": parsed,
        "body_state": state, "body_purged_at": row.body_purged_at.isoformat() if row.body_purged_at else None,
        "verdict": row.verdict, "reason": _text(row.verdict_reason), "mapping_version": row.mapping_version,
        "signature": row.signature_verdict, "signature_secret": row.signature_secret,
        "provider_event_id": _text(row.provider_event_id), "event_type": _text(row.event_type),
        "transition": None if transition is None else {
            "from": transition.from_status, "to": transition.to_status, "version": transition.version,
            "mapping_version": transition.mapping_version, "reason": _text(transition.reason)},
    }


def read_delivery(conn: Connection, delivery_id: str) -> Any:
    """One delivery's stored row, body and headers as stored, with its connection's provider
    (for the Payload screen, redacted, and for a reveal, not)."""
    row = conn.execute(select(deliveries, connections.c.provider, connections.c.environment)
                       .join(connections, connections.c.id == deliveries.c.connection_id)
                       .where(deliveries.c.id == delivery_id)).first()
    if row is None:
        raise NotFound(f"no delivery {delivery_id!r}")
    return row


def record_state(ctx: ServiceContext, record_id: str) -> dict[str, Any]:
    """Our current belief about a record, shaped for comparison with a payload."""
    access.require(ctx, "read")
    with reading(ctx.engine) as conn:
        return _record_summary(conn, resolve_record_id(conn, record_id))
