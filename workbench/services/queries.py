"""Read models for lists: records, events (deliveries) and failures, as scripts and screens
see them. Streaming where a list can be large."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from sqlalchemy import Select, select

from store.database import reading
from store.models import Connection, Delivery, Failure, ProviderRef, Record
from workbench.domain.redaction import redact_label, redact_text
from workbench.domain.statuses import Status
from workbench.domain.taxonomy import Category, TriageState

from . import access
from .connections import get_connection
from .context import ServiceContext
from .errors import InvalidArgument

records = Record.__table__
refs = ProviderRef.__table__
connections = Connection.__table__
deliveries = Delivery.__table__
failures = Failure.__table__

STREAM_CHUNK = 5000
# A failure state filter meaning "still in the error queue" (any state but resolved or ignored).
UNRESOLVED = "unresolved"
STATUSES = tuple(str(s) for s in Status)
STATES = (*(str(s) for s in TriageState), UNRESOLVED)
CATEGORIES = tuple(str(c) for c in Category)


def _check(kind: str, value: str | None, allowed: tuple[str, ...]) -> None:
    """A filter value outside the domain's names would silently match nothing: refuse it."""
    if value is not None and value not in allowed:
        raise InvalidArgument(f"unknown {kind} {value!r}; expected one of {', '.join(allowed)}")


def _text(value: str | None) -> str | None:
    return redact_text(value) if value else value


def _label(value: str | None) -> str | None:
    return redact_label(value) if value else value


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def iter_records(ctx: ServiceContext, *, connection: str | None = None, status: str | None = None,
                 chunk: int = STREAM_CHUNK) -> Iterator[dict[str, Any]]:
    """Every matching record with its provider references, in ID order, in keyset pages.

    An unknown connection raises here, before the first item (so nothing half-printed)."""
    access.require(ctx, "read")
    _check("record status", status, STATUSES)
    connection_id = get_connection(ctx, connection).id if connection else None
    return _records_pages(ctx, connection_id, status, chunk)


def _records_pages(ctx: ServiceContext, connection_id: str | None, status: str | None,
                   chunk: int) -> Iterator[dict[str, Any]]:
    names = {c.id: c.name for c in _connection_rows(ctx)}
    last = ""
    while True:
        page = (select(records.c.id, records.c.connection_id, records.c.kind, records.c.status,
                       records.c.version, records.c.updated_at)
                .where(records.c.id > last).order_by(records.c.id).limit(chunk))
        if connection_id:
            page = page.where(records.c.connection_id == connection_id)
        if status:
            page = page.where(records.c.status == status)
        paged = page.subquery()
        # Page the records first, then join their references, so a record's refs never
        # straddle two pages.
        query = (select(paged, refs.c.provider, refs.c.external_id)
                 .select_from(paged.outerjoin(refs, refs.c.record_id == paged.c.id))
                 .order_by(paged.c.id))
        with reading(ctx.engine) as conn:
            rows = conn.execute(query).all()
        if not rows:
            return
        yield from _group_refs(rows, names)
        if len({row.id for row in rows}) < chunk:
            return
        last = rows[-1].id


def _group_refs(rows: Sequence[Any], names: dict[str, str]) -> Iterator[dict[str, Any]]:
    # Rows arrive ordered by record ID, one per reference; plain tuple unpacking keeps this
    # loop cheap enough for `records --json` over hundreds of thousands of records.
    current: dict[str, Any] | None = None
    for record_id, connection_id, kind, status, version, updated_at, provider, external_id in rows:
        if current is None or current["id"] != record_id:
            if current is not None:
                yield current
            current = {"id": record_id, "connection": names.get(connection_id), "kind": kind,
                       "status": status, "version": version, "updated_at": _iso(updated_at),
                       "provider_refs": []}
        if external_id is not None:  # an identifier, but the provider's: secret-shaped ones masked
            current["provider_refs"].append({"provider": provider, "external_id": redact_text(external_id)})
    if current is not None:
        yield current


def _connection_rows(ctx: ServiceContext) -> Sequence[Any]:
    with reading(ctx.engine) as conn:
        return conn.execute(select(connections.c.id, connections.c.name)).all()


def iter_events(ctx: ServiceContext, *, connection: str | None = None, record_id: str | None = None,
                chunk: int = STREAM_CHUNK) -> Iterator[dict[str, Any]]:
    """Every stored delivery (metadata, not bodies), in arrival order."""
    access.require(ctx, "read")
    connection_id = get_connection(ctx, connection).id if connection else None
    return _events_pages(ctx, connection_id, record_id, chunk)


def _keyset_pages(ctx: ServiceContext, query: Select[Any], key: Any, chunk: int) -> Iterator[Any]:
    """The rows of `query` in `key` order, one short read transaction per page of `chunk`, so
    a long listing never holds a snapshot (or the whole result) open."""
    last = ""
    while True:
        with reading(ctx.engine) as conn:
            rows = conn.execute(query.where(key > last).order_by(key).limit(chunk)).all()
        yield from rows
        if len(rows) < chunk:
            return
        last = rows[-1].id


def _events_pages(ctx: ServiceContext, connection_id: str | None, record_id: str | None,
                  chunk: int) -> Iterator[dict[str, Any]]:
    names = {c.id: c.name for c in _connection_rows(ctx)}
    query: Select[Any] = select(*[deliveries.c[name] for name in (
        "id", "connection_id", "provider_event_id", "event_type", "source", "received_at", "occurred_at",
        "verdict", "verdict_reason", "record_id", "duplicate_of", "replay_of", "mapping_version", "payload_hash",
        "body_key_version", "body_purged_at")])
    if connection_id:
        query = query.where(deliveries.c.connection_id == connection_id)
    if record_id:
        query = query.where(deliveries.c.record_id == record_id)
    for row in _keyset_pages(ctx, query, deliveries.c.id, chunk):
        # Event IDs, types and reasons (which quote unknown statuses) come from the provider.
        yield {"id": row.id, "connection": names.get(row.connection_id),
               "provider_event_id": _text(row.provider_event_id), "event_type": _label(row.event_type),
               "source": row.source, "received_at": _iso(row.received_at),
               "occurred_at": _iso(row.occurred_at), "verdict": row.verdict,
               "verdict_reason": _label(row.verdict_reason), "record_id": row.record_id,
               "duplicate_of": row.duplicate_of, "replay_of": row.replay_of,
               "mapping_version": row.mapping_version, "payload_hash": row.payload_hash,
               "body_encrypted": row.body_key_version is not None, "body_purged_at": _iso(row.body_purged_at)}


def failure_dict(row: Any, connection_name: str | None) -> dict[str, Any]:
    return {"id": row.id, "category": row.category, "state": row.state, "connection": connection_name,
            "record_id": row.record_id, "event_id": row.delivery_id, "command_id": row.command_id,
            "fingerprint": row.fingerprint, "message": redact_label(row.message),
            "assignee": _text(row.assignee),
            "created_at": _iso(row.created_at), "updated_at": _iso(row.updated_at)}


def iter_failures(ctx: ServiceContext, *, state: str | None = None, category: str | None = None,
                  connection: str | None = None, fingerprint: str | None = None,
                  open_only: bool = False, chunk: int = STREAM_CHUNK) -> Iterator[dict[str, Any]]:
    """Failures in ID order; `state` may be `unresolved` (the error queue: not resolved or ignored)."""
    access.require(ctx, "read")
    _check("failure state", state, STATES)
    _check("failure category", category, CATEGORIES)
    if state == UNRESOLVED:
        state, open_only = None, True
    connection_id = get_connection(ctx, connection).id if connection else None
    return _failures_pages(ctx, connection_id, state, category, fingerprint, open_only, chunk)


def _failures_pages(ctx: ServiceContext, connection_id: str | None, state: str | None, category: str | None,
                    fingerprint: str | None, open_only: bool, chunk: int) -> Iterator[dict[str, Any]]:
    names = {c.id: c.name for c in _connection_rows(ctx)}
    query = select(failures)
    if state:
        query = query.where(failures.c.state == state)
    if open_only:
        query = query.where(failures.c.state.not_in(("resolved", "ignored")))
    if category:
        query = query.where(failures.c.category == category)
    if connection_id:
        query = query.where(failures.c.connection_id == connection_id)
    if fingerprint:
        query = query.where(failures.c.fingerprint == fingerprint)
    for row in _keyset_pages(ctx, query, failures.c.id, chunk):
        yield failure_dict(row, names.get(row.connection_id))
