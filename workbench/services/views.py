"""Read models for the TUI: one page of records under a typed filter, and the two sides of a
payload diff. Read-only; every query is index-backed and bounded, so a screen stays fast on a
store with millions of rows."""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import ColumnElement, Connection as DbConnection, and_, func, literal, select, tuple_

from store.database import reading
from store.models import Connection, Delivery, ProviderRef, Record
from workbench.domain.canonical import BoundaryProblem, NotCovered
from workbench.domain.redaction import redact, redact_body, redact_text
from workbench.domain.statuses import Status

from . import access
from .context import ServiceContext
from .errors import NotFound, ServiceError
from .payload_crypto import NO_VAULTS, BodyReader, Vaults
from .redaction_rules import provider_paths
from .timeline import record_state

records = Record.__table__
refs = ProviderRef.__table__
connections = Connection.__table__
deliveries = Delivery.__table__

PAGE_SIZE = 50  # more than a 120x40 screen shows; small pages keep sparse filters cheap
RECORD_ID_PREFIX = "rec_"
QUALIFIERS = {"id": "record_prefix", "ext": "external_prefix", "external": "external_prefix",
              "status": "status", "kind": "kind", "conn": "connection", "connection": "connection",
              "provider": "connection"}


# --------------------------------------------------------------------------- records filter

@dataclass(frozen=True)
class Vocabulary:
    """The words a free filter term can mean exactly: statuses, kinds, connection names."""

    statuses: frozenset[str]
    kinds: frozenset[str]
    connections: dict[str, str]  # name -> id


def filter_vocabulary(ctx: ServiceContext) -> Vocabulary:
    access.require(ctx, "read")
    with reading(ctx.engine) as conn:
        names = {row.name: row.id for row in conn.execute(select(connections.c.id, connections.c.name))}
        kinds = set()
        for connection_id in names.values():
            kinds |= _distinct_kinds(conn, connection_id)
    return Vocabulary(frozenset(str(s) for s in Status), frozenset(kinds), names)


def _distinct_kinds(conn: DbConnection, connection_id: str) -> set[str]:
    # A loose index scan over the (connection_id, kind, external_id) unique index: one probe per
    # distinct kind instead of a scan of every reference.
    found: set[str] = set()
    last = ""
    while True:
        kind = conn.execute(select(func.min(refs.c.kind))
                            .where(refs.c.connection_id == connection_id, refs.c.kind > last)).scalar()
        if kind is None:
            return found
        found.add(kind)
        last = kind


@dataclass(frozen=True)
class RecordFilter:
    record_prefix: str | None = None
    external_prefix: str | None = None
    status: str | None = None
    kind: str | None = None
    connection: str | None = None
    connection_id: str | None = None
    problems: tuple[str, ...] = ()

    @property
    def by_external(self) -> bool:
        return self.external_prefix is not None

    def describe(self) -> str:
        parts = []
        if self.record_prefix:
            parts.append(f"id {self.record_prefix}…")
        if self.external_prefix:
            parts.append(f"external {self.external_prefix}…")
        for label, value in (("status", self.status), ("kind", self.kind), ("connection", self.connection)):
            if value:
                parts.append(f"{label}={value}")
        return " · ".join(parts + list(self.problems)) or "all records"


def parse_record_filter(text: str, vocabulary: Vocabulary) -> RecordFilter:
    """Whitespace-separated terms, all of which must match. `key:value` names the field (id,
    ext, status, kind, conn); a bare term is a status, kind or connection name when it is
    exactly one, an internal ID prefix when it looks like one, otherwise an external ID prefix."""
    try:
        terms = shlex.split(text)
    except ValueError:  # an unclosed quote while typing
        terms = text.split()
    found: dict[str, str] = {}
    problems: list[str] = []
    for term in terms:
        key, sep, value = term.partition(":")
        if sep and key.lower() in QUALIFIERS:
            if value:
                found[QUALIFIERS[key.lower()]] = value
            continue
        lowered = term.lower()
        if lowered in vocabulary.statuses:
            found["status"] = lowered
        elif lowered in vocabulary.kinds:
            found["kind"] = lowered
        elif term in vocabulary.connections:
            found["connection"] = term
        elif term.startswith(RECORD_ID_PREFIX) or (RECORD_ID_PREFIX.startswith(term) and len(term) > 1):
            found["record_prefix"] = term
        else:
            found["external_prefix"] = term
    connection_id = None
    if "connection" in found:
        connection_id = vocabulary.connections.get(found["connection"])
        if connection_id is None:
            problems.append(f"no connection {found['connection']!r}")
    if "status" in found and found["status"] not in vocabulary.statuses:
        problems.append(f"no status {found['status']!r}")
    return RecordFilter(found.get("record_prefix"), found.get("external_prefix"), found.get("status"),
                        found.get("kind"), found.get("connection"), connection_id, tuple(problems))


# --------------------------------------------------------------------------- records page

@dataclass(frozen=True)
class RecordRow:
    id: str
    connection: str
    kind: str
    status: str
    version: int
    updated_at: datetime
    external_ids: tuple[str, ...]
    # The keyset position of this row in the page's order: (id,) or (external_id, ref id).
    position: tuple[str, ...]


@dataclass(frozen=True)
class RecordPage:
    rows: list[RecordRow]
    filter: RecordFilter
    has_before: bool
    has_after: bool
    order: str  # "id", "external_id" (an external ID prefix) or "connection" (by kind, external ID)
    limit: int = PAGE_SIZE
    errors: list[str] = field(default_factory=list)


def records_page(ctx: ServiceContext, flt: RecordFilter, *, after: tuple[str, ...] | None = None,
                 before: tuple[str, ...] | None = None, at: tuple[str, ...] | None = None,
                 limit: int = PAGE_SIZE) -> RecordPage:
    """One page of records matching `flt`, in keyset order: records after `after`, the page
    ending just before `before`, or the page starting at `at` (inclusive; used to refresh a
    page in place). Never counts or loads more than `limit + 1` rows.

    The order follows the index that serves the filter: an external ID prefix walks the
    external_id index (external ID order); a connection walks its references (kind, then
    external ID order), unless its status filter is rare enough to serve from the status
    index; anything else walks the primary key (internal ID order)."""
    access.require(ctx, "read")
    with reading(ctx.engine) as conn:
        order = _order(conn, flt)
        if flt.problems:
            return RecordPage([], flt, False, False, order, limit)
        names = {row.id: row.name for row in conn.execute(select(connections.c.id, connections.c.name))}
        if order == "id":
            rows, has_before, has_after = _page(conn, _by_id(conn, flt), (records.c.id,), after, before, at, limit)
        elif order == "external_id":
            assert flt.external_prefix is not None
            driving = _prefix(refs.c.external_id, flt.external_prefix, conn.dialect.name)
            rows, has_before, has_after = _page(conn, _by_refs(conn, flt, driving), (refs.c.external_id, refs.c.id),
                                                after, before, at, limit)
        else:
            driving = refs.c.connection_id == flt.connection_id
            rows, has_before, has_after = _page(conn, _by_refs(conn, flt, driving),
                                                (refs.c.kind, refs.c.external_id, refs.c.id),
                                                after, before, at, limit)
        ids = [row.id for row in rows]
        external: dict[str, list[str]] = {}
        if ids:
            for ref in conn.execute(select(refs.c.record_id, refs.c.external_id)
                                    .where(refs.c.record_id.in_(ids)).order_by(refs.c.external_id)):
                external.setdefault(ref.record_id, []).append(ref.external_id)
    result = [RecordRow(row.id, names.get(row.connection_id, "?"), row.kind, row.status, row.version,
                        row.updated_at, tuple(map(redact_text, external.get(row.id, ()))), _position(row, order))
              for row in rows]
    return RecordPage(result, flt, has_before, has_after, order, limit)


def _order(conn: DbConnection, flt: RecordFilter) -> str:
    if flt.by_external:
        return "external_id"
    if flt.connection_id and not flt.record_prefix and not (flt.status and _sparse(conn, flt)):
        return "connection"
    return "id"


def _position(row: Any, order: str) -> tuple[str, ...]:
    if order == "external_id":
        return (row.external_id, row.ref_id)
    if order == "connection":
        return (row.ref_kind, row.external_id, row.ref_id)
    return (row.id,)


def _prefix(column: ColumnElement[str], prefix: str, dialect: str) -> ColumnElement[bool]:
    """`column` starts with `prefix`, in a form the dialect serves from a B-tree index."""
    if dialect == "sqlite":
        # SQLite's LIKE is case-insensitive and skips the index; a BINARY range does not.
        condition = and_(column >= prefix, func.substr(column, 1, len(prefix)) == prefix)
        last = prefix[-1]
        if ord(last) < 0x10FFFF:
            condition = and_(condition, column < prefix[:-1] + chr(ord(last) + 1))
        return condition
    # PostgreSQL turns a left-anchored LIKE into an index range under the C collation (or a
    # text_pattern_ops index) and stays correct under any other collation.
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return column.like(escaped + "%", escape="\\")


# Below this many matches an equality filter's index drives the query and its matches are
# sorted; above it, walking the page order's index and testing each row finds a page sooner.
SPARSE = 10_000


def _sparse(conn: DbConnection, flt: RecordFilter) -> bool:
    """Whether the status (and connection) filters match few records, counted (up to SPARSE)
    on the (status, connection_id) index. SQLite plans without statistics, so we ask."""
    if not flt.status:
        return False
    conditions = [records.c.status == flt.status]
    if flt.connection_id:
        conditions.append(records.c.connection_id == flt.connection_id)
    probe = select(literal(1)).where(*conditions).limit(SPARSE).subquery()  # index only
    return conn.execute(select(func.count()).select_from(probe)).scalar_one() < SPARSE


def _filters(conn: DbConnection, flt: RecordFilter, *, use_status_index: bool) -> list[ColumnElement[bool]]:
    dialect = conn.dialect.name
    # On SQLite, `column || ''` hides a column from the planner, so a common status is tested
    # row by row along the page order instead of driving the query (and sorting every match).
    hide = dialect == "sqlite" and not use_status_index

    def eq(column: ColumnElement[str], value: str) -> ColumnElement[bool]:
        target = column.concat("") if hide else column
        return target == value

    conditions: list[ColumnElement[bool]] = []
    if flt.record_prefix:
        conditions.append(_prefix(records.c.id, flt.record_prefix, dialect))
    if flt.status:
        conditions.append(eq(records.c.status, flt.status))
    if flt.kind:
        conditions.append(records.c.kind == flt.kind)
    if flt.connection_id:
        conditions.append(eq(records.c.connection_id, flt.connection_id))
    return conditions


RECORD_COLUMNS = (records.c.id, records.c.connection_id, records.c.kind, records.c.status, records.c.version,
                  records.c.updated_at)


def _by_id(conn: DbConnection, flt: RecordFilter) -> Any:
    sparse = _sparse(conn, flt)
    return select(*RECORD_COLUMNS).where(*_filters(conn, flt, use_status_index=sparse))


def _by_refs(conn: DbConnection, flt: RecordFilter, driving: ColumnElement[bool]) -> Any:
    # Walk a provider_refs index in order and join each reference to its record, so a filter
    # that matches most references still costs one page of index entries; a rare status
    # drives instead (its few matches are then sorted).
    sparse = _sparse(conn, flt)
    return (select(*RECORD_COLUMNS, refs.c.external_id, refs.c.id.label("ref_id"), refs.c.kind.label("ref_kind"))
            .select_from(refs.join(records, records.c.id == refs.c.record_id))
            .where(driving, *_filters(conn, flt, use_status_index=sparse)))


def _page(conn: DbConnection, base: Any, order: tuple[Any, ...], after: tuple[str, ...] | None,
          before: tuple[str, ...] | None, at: tuple[str, ...] | None, limit: int) -> tuple[list[Any], bool, bool]:
    """A keyset page of `base` in `order`: (rows, has_before, has_after)."""
    key = tuple_(*order) if len(order) > 1 else order[0]

    def value(position: tuple[str, ...]) -> Any:
        return tuple_(*position) if len(order) > 1 else position[0]

    if before is not None:
        rows = conn.execute(base.where(key < value(before)).order_by(*(c.desc() for c in order))
                            .limit(limit + 1)).all()
        return list(reversed(rows[:limit])), len(rows) > limit, True
    query = base
    if after is not None:
        query = query.where(key > value(after))
    elif at is not None:
        query = query.where(key >= value(at))
    rows = conn.execute(query.order_by(*order).limit(limit + 1)).all()
    has_before = after is not None or (at is not None and _exists(conn, base.where(key < value(at))))
    return list(rows[:limit]), has_before, len(rows) > limit


def _exists(conn: DbConnection, query: Any) -> bool:
    return conn.execute(query.limit(1)).first() is not None


# --------------------------------------------------------------------------- payload diff

@dataclass(frozen=True)
class DiffSide:
    title: str  # what this side is: "payment_intent.succeeded [applied]", "now (v3)"
    value: Any
    ref: str = ""  # the delivery or record it comes from


@dataclass(frozen=True)
class DiffPair:
    left: DiffSide
    right: DiffSide


_BODY_COLUMNS = (deliveries.c.id, deliveries.c.connection_id, deliveries.c.body, deliveries.c.body_key_version,
                 deliveries.c.body_purged_at, connections.c.environment)


def _delivery_side(ctx: ServiceContext, conn: DbConnection, delivery_id: str, reader: BodyReader) -> DiffSide:
    # The body only (by primary key): the diff needs neither headers nor the mapping result.
    row = conn.execute(select(*_BODY_COLUMNS, deliveries.c.event_type, deliveries.c.verdict,
                              connections.c.provider)
                       .join(connections, connections.c.id == deliveries.c.connection_id)
                       .where(deliveries.c.id == delivery_id)).first()
    if row is None:
        raise NotFound(f"no delivery {delivery_id!r}")
    stored = reader.body(row)
    body = redact_body(stored.data, provider_paths(ctx, row.provider))[0] if stored.data is not None else stored.problem
    what = redact_text(row.event_type) if row.event_type else "unparsed body"
    return DiffSide(f"{what} [{row.verdict}]", body, delivery_id)


def deliveries_pair(ctx: ServiceContext, left_id: str, right_id: str, vaults: Vaults = NO_VAULTS) -> DiffPair:
    """Two deliveries' raw payloads, redacted as `timeline.delivery_payload` shows them (a body
    that cannot be shown, encrypted under a locked vault or purged, says so instead)."""
    access.require(ctx, "read")
    reader = BodyReader(vaults)
    with reading(ctx.engine) as conn:
        return DiffPair(_delivery_side(ctx, conn, left_id, reader), _delivery_side(ctx, conn, right_id, reader))


def delivery_against_state(ctx: ServiceContext, delivery_id: str, record_id: str,
                           vaults: Vaults = NO_VAULTS) -> DiffPair:
    """What the current mapping makes of one delivery, against what we believe now: the
    provider's view of the record beside ours, in the same canonical shape."""
    access.require(ctx, "read")
    with reading(ctx.engine) as conn:
        row = conn.execute(select(*_BODY_COLUMNS, deliveries.c.event_type,
                                  deliveries.c.verdict, connections.c.provider)
                           .join(connections, connections.c.id == deliveries.c.connection_id)
                           .where(deliveries.c.id == delivery_id)).first()
    if row is None:
        raise NotFound(f"no delivery {delivery_id!r}")
    adapter = ctx.adapters.get(row.provider)
    try:
        mapped = adapter.map(adapter.parse(BodyReader(vaults).plain(row)))
    except BoundaryProblem as problem:
        raise ServiceError(f"the mapping cannot read this delivery: {problem.message}") from None
    if isinstance(mapped, NotCovered):
        raise ServiceError(f"the mapping does not cover this delivery: {mapped.reason}")
    state = record_state(ctx, record_id)
    provider_view = {"status": str(mapped.status) if mapped.status else None,
                     "fields": redact(mapped.fields), "mapping_version": mapped.mapping_version}
    ours = {"status": state["status"], "fields": state["fields"], "version": state["version"]}
    title = f"{redact_text(row.event_type) if row.event_type else 'event'} as mapped"
    return DiffPair(DiffSide(title, provider_view, row.id),
                    DiffSide(f"record now (v{state['version']})", ours, state["id"]))


def pretty_json(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_INDENT_2).decode()
