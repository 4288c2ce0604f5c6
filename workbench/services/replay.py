"""Replay: re-run stored raw events through the current mapping and correct our belief.

For each record, every original delivery is parsed and mapped again and folded in provider
order through the state machine, from nothing. Where the result differs from what we believe,
a real replay writes one transition (cause `replay`) and an audit entry; a dry run only reports.
Running it twice changes nothing the second time.

Bodies encrypted at rest are opened with the unlocked vaults given; a record with an event
whose body cannot be read (purged by retention, or encrypted with its vault locked) is not
re-derived from the rest, which would be wrong: it is skipped, and says why.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select, update

from adapters import Adapter
from store.database import reading, writing
from store.models import Connection as ConnectionRow, Delivery, ProviderRef, Record, Transition
from workbench.domain.belief import Apply, decide, event_key
from workbench.domain.canonical import Belief, BoundaryProblem, Cause, MappedEvent, NotCovered
from workbench.domain.redaction import redact_text

from . import access, audit
from .connections import get_connection
from .context import ServiceContext
from .errors import ServiceError
from .payload_crypto import NO_VAULTS, BodyReader, Vaults
from .timeline import resolve_record_id

records = Record.__table__
refs = ProviderRef.__table__
deliveries = Delivery.__table__
transitions = Transition.__table__
connections = ConnectionRow.__table__

CHUNK = 500


@dataclass(frozen=True)
class ReplayChange:
    record_id: str
    external_id: str | None
    connection: str
    from_status: str
    to_status: str
    changed_fields: tuple[str, ...]
    reason: str

    def as_dict(self) -> dict[str, Any]:
        """As shown: the provider's external ID and the reason (which may quote it) redacted."""
        return {"record_id": self.record_id,
                "external_id": redact_text(self.external_id) if self.external_id else self.external_id,
                "connection": self.connection, "from": self.from_status, "to": self.to_status,
                "changed_fields": list(self.changed_fields), "reason": redact_text(self.reason)}


@dataclass
class ReplayReport:
    examined: int = 0
    changes: list[ReplayChange] = field(default_factory=list)
    dry_run: bool = False
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (record ID, why it was not replayed)


@dataclass(frozen=True)
class _Folded:
    belief: Belief | None
    last_delivery: str | None
    mapping_version: str | None
    occurred_at: datetime | None


def replay(ctx: ServiceContext, *, connection: str | None = None, record: str | None = None,
           dry_run: bool = False, progress: Callable[[int], None] | None = None,
           vaults: Vaults = NO_VAULTS) -> ReplayReport:
    """Replay a connection's records, one record, or all. A record whose stored bodies cannot
    all be read is skipped (in `report.skipped`, with why); asked for by itself, it is refused
    (ServiceError) instead."""
    # A dry run writes nothing and shows what the stored events already say: a read.
    access.require(ctx, "read" if dry_run else "replay")
    report = ReplayReport(dry_run=dry_run)
    connection_id = get_connection(ctx, connection).id if connection else None
    reader = BodyReader(vaults)
    for chunk in _record_chunks(ctx, connection_id, record):
        with (reading if dry_run else writing)(ctx.engine) as conn:
            report.changes.extend(_replay_chunk(conn, ctx, chunk, dry_run, reader, report.skipped))
        if record and report.skipped:
            raise ServiceError(f"cannot replay record {report.skipped[0][0]}: {report.skipped[0][1]}")
        report.examined += len(chunk)
        if progress:
            progress(report.examined)
    if not dry_run:
        with writing(ctx.engine) as conn:
            audit.append(conn, ctx, "replay.run", "connection" if connection else "store",
                         connection_id or record, after={"examined": report.examined, "changed": len(report.changes),
                                                         "record": record, "connection": connection})
    return report


def _record_chunks(ctx: ServiceContext, connection_id: str | None, record: str | None) -> Iterator[Sequence[Any]]:
    if record:
        with reading(ctx.engine) as conn:
            record_id = resolve_record_id(conn, record, connection_id)
            yield conn.execute(_record_query().where(records.c.id == record_id)).all()
        return
    last = ""
    while True:
        query = _record_query().where(records.c.id > last).order_by(records.c.id).limit(CHUNK)
        if connection_id:
            query = query.where(records.c.connection_id == connection_id)
        with reading(ctx.engine) as conn:
            rows = conn.execute(query).all()
        if not rows:
            return
        yield rows
        last = rows[-1].id


def _record_query() -> Any:
    return (select(records, connections.c.name.label("connection_name"), connections.c.provider)
            .join(connections, connections.c.id == records.c.connection_id))


def _replay_chunk(conn: Connection, ctx: ServiceContext, rows: Sequence[Any], dry_run: bool, reader: BodyReader,
                  skipped: list[tuple[str, str]]) -> list[ReplayChange]:
    ids = [row.id for row in rows]
    by_record: dict[str, list[_Stored]] = {record_id: [] for record_id in ids}
    unreadable: dict[str, str] = {}
    # Originals only: duplicates and replayed copies repeat an original's bytes.
    for delivery in conn.execute(select(deliveries.c.id, deliveries.c.connection_id, deliveries.c.body,
                                        deliveries.c.body_key_version, deliveries.c.body_purged_at,
                                        deliveries.c.received_at, deliveries.c.payload_hash, deliveries.c.record_id,
                                        connections.c.environment)
                                 .join(connections, connections.c.id == deliveries.c.connection_id)
                                 # A failed signature never changes state, replayed or not.
                                 .where(deliveries.c.record_id.in_(ids), deliveries.c.dedupe_key.is_not(None),
                                        deliveries.c.signature_verdict != "failed")):
        body = reader.body(delivery)
        if body.data is None:
            unreadable.setdefault(delivery.record_id, str(body.problem))
            continue
        by_record[delivery.record_id].append(
            _Stored(delivery.id, body.data, delivery.received_at, delivery.payload_hash))
    external = dict(conn.execute(select(refs.c.record_id, refs.c.external_id).where(refs.c.record_id.in_(ids))).all())
    changes = []
    for row in rows:
        if row.id in unreadable:
            skipped.append((row.id, unreadable[row.id]))
            continue
        folded = _fold(ctx.adapters.get(row.provider), by_record[row.id])
        if folded.belief is None:
            continue
        target = folded.belief
        changed_fields = tuple(sorted(k for k in set(row.fields) | set(target.fields)
                                      if row.fields.get(k) != target.fields.get(k)))
        if target.status == row.status and not changed_fields:
            continue
        reason = (f"replay under {folded.mapping_version}: derived {target.status} "
                  f"from {len(by_record[row.id])} stored event(s)")
        change = ReplayChange(row.id, external.get(row.id), row.connection_name, row.status, str(target.status),
                              changed_fields, reason)
        changes.append(change)
        if not dry_run:
            _write_change(conn, ctx, row, target, folded, change)
    return changes


@dataclass(frozen=True, slots=True)
class _Stored:
    """One original delivery as replay reads it: the body opened."""

    id: str
    body: bytes
    received_at: datetime
    payload_hash: str


def _fold(adapter: Adapter, stored: list[_Stored]) -> _Folded:
    """Our belief as the current mapping derives it from the stored events alone."""
    events: list[tuple[tuple[datetime, int, str], MappedEvent, str]] = []
    for delivery in stored:
        try:
            parsed = adapter.parse(delivery.body)
            mapped = adapter.map(parsed)
        except BoundaryProblem:
            continue
        if isinstance(mapped, NotCovered):
            continue
        when = parsed.occurred_at or delivery.received_at
        key = event_key(when, mapped, parsed.provider_event_id or delivery.payload_hash)
        events.append((key, mapped, delivery.id))
    belief: Belief | None = None
    last: tuple[str | None, str | None, datetime | None] = (None, None, None)
    for key, mapped, delivery_id in sorted(events, key=lambda item: item[0]):
        decision = decide(belief, mapped, key)
        if isinstance(decision, Apply):
            belief = Belief(decision.to_status, mapped.fields, key)
            last = (delivery_id, mapped.mapping_version, key[0])
    return _Folded(belief, *last)


def _write_change(conn: Connection, ctx: ServiceContext, row: Any, target: Belief, folded: _Folded,
                  change: ReplayChange) -> None:
    version = row.version + 1
    occurred, rank, key = target.watermark if target.watermark else (None, None, None)
    result = conn.execute(update(records).where(records.c.id == row.id, records.c.version == row.version).values(
        status=str(target.status), version=version, fields=target.fields, last_occurred_at=occurred,
        last_rank=rank, last_event_key=key, updated_at=ctx.clock()))
    if result.rowcount != 1:
        raise ServiceError(f"record {row.id} changed during replay; run replay again")
    conn.execute(transitions.insert().values(
        id=ctx.ids.new("trn"), record_id=row.id, version=version, from_status=row.status,
        to_status=str(target.status), cause=str(Cause.REPLAY), actor=ctx.actor,
        mapping_version=folded.mapping_version, delivery_id=folded.last_delivery, command_id=None,
        reason=change.reason, changed_fields=list(change.changed_fields), occurred_at=folded.occurred_at,
        created_at=ctx.clock()))
    audit.append(conn, ctx, "record.replay", "record", row.id,
                 before={"status": row.status, "version": row.version},
                 after={"status": str(target.status), "version": version}, reason=change.reason)


