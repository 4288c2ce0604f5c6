"""The dispatcher's writes for many answers at once, in the caller's transaction: a handful of
statements per group of answers instead of about ten per command (services/dispatch.record_in
does one command; this does what it does, for the common case, with multi-row statements).

The common case is a success whose record and provider object no other answer of the group
touches: its claim checked (one SELECT for the group), its attempt written (one multi-row
INSERT), its command marked succeeded, its open failures closed, its record moved and linked
to the provider's object (one read of the records and one of the links; multi-row INSERTs of
links and transitions; the record updates guarded by version). Everything else (failures,
which follow their category's policy; answers about a record or object another answer of the
group also touches; a record whose object an event linked to another record first) goes
through record_in one by one, after the bulk, so it reads what the bulk wrote.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import Connection, bindparam, select, update

from adapters.protocol import CallResult, Commanding
from store.bulk import RowInsert, codec, row_insert, row_update
from workbench.domain.redaction import PathTree, redact
from workbench.domain.state_machine import can_transition
from workbench.domain.statuses import Status
from workbench.domain.taxonomy import TriageState

from .commands import attempts
from .connections import ConnectionInfo
from .context import ServiceContext
from .dispatch import (
    _CLOSED,
    MAX_BODY_CHARS,
    Claimed,
    Outcome,
    _superseded,
    commands,
    failures,
    record_in,
    records,
    refs,
    transitions,
)

ATTEMPT_COLUMNS = ("id", "command_id", "number", "request", "response_status", "response_body", "latency_ms",
                   "outcome", "created_at")
REF_COLUMNS = ("id", "connection_id", "provider", "kind", "external_id", "record_id")
TRANSITION_COLUMNS = ("id", "record_id", "version", "from_status", "to_status", "cause", "actor", "mapping_version",
                      "delivery_id", "command_id", "reason", "changed_fields", "occurred_at", "created_at")

_held = (select(commands.c.id, commands.c.next_attempt_at)
         .where(commands.c.id.in_(bindparam("ids", expanding=True)), commands.c.status == "dispatching"))
_records = (select(records.c.id, records.c.status, records.c.version, records.c.fields)
            .where(records.c.id.in_(bindparam("ids", expanding=True))))
_links = (select(refs.c.connection_id, refs.c.kind, refs.c.external_id, refs.c.record_id)
          .where(refs.c.external_id.in_(bindparam("ids", expanding=True))))
_close = (update(failures).where(failures.c.command_id.in_(bindparam("ids", expanding=True)),
                                 failures.c.state.not_in(_CLOSED))
          .values(state=str(TriageState.RESOLVED), updated_at=bindparam("now")))


@dataclass(frozen=True, slots=True)
class Answer:
    """One claimed command's call: what record_many writes."""
    connection: ConnectionInfo
    item: Claimed
    result: CallResult
    paths: PathTree


@dataclass(slots=True)
class _Success:
    answer: Answer
    mapped: Any  # the adapter's CommandResult, or None


def record_many(conn: Connection, ctx: ServiceContext, answers: list[Answer]) -> list[Outcome | None]:
    """record_in for each answer, in order of the list, in the caller's transaction; each
    answer's Outcome (None: its claim was lost, nothing written for it)."""
    if not answers:
        return []
    now = ctx.clock()
    held = {row.id: row.next_attempt_at for row in conn.execute(_held, {"ids": [a.item.id for a in answers]})}
    out: list[Outcome | None] = [None] * len(answers)
    bulk: list[tuple[int, _Success]] = []
    one_by_one: list[int] = []
    seen_records: set[str] = set()
    seen_objects: set[tuple[str, str, str]] = set()
    commanding: dict[str, Commanding | None] = {}
    for index, answer in enumerate(answers):
        item = answer.item
        if held.get(item.id) != item.deadline:
            continue  # lost: another engine took it over, and its attempt counts
        if answer.result.outcome.category is not None:
            one_by_one.append(index)
            continue
        provider = answer.connection.provider
        if provider not in commanding:  # a runtime protocol check is slow: once per provider
            found = ctx.adapters.get(provider)
            commanding[provider] = found if isinstance(found, Commanding) else None
        adapter = commanding[provider]
        mapped = adapter.command_result(item.intent, answer.result.body or {}) if adapter is not None else None
        obj = (answer.connection.id, mapped.kind, mapped.external_id) if mapped is not None else None
        if (item.record_id is not None and item.record_id in seen_records) or (obj is not None and obj in seen_objects):
            one_by_one.append(index)  # after the bulk, so it sees the first one's writes
            continue
        if item.record_id is not None:
            seen_records.add(item.record_id)
        if obj is not None:
            seen_objects.add(obj)
        bulk.append((index, _Success(answer, mapped)))
    if bulk:
        _write_successes(conn, ctx, [success for _, success in bulk], now)
        for index, _ in bulk:
            out[index] = Outcome("ok")
    for index in one_by_one:
        answer = answers[index]
        out[index] = record_in(conn, ctx, answer.connection, answer.item, answer.result, answer.paths)
    return out


def _write_successes(conn: Connection, ctx: ServiceContext, successes: list[_Success], now: datetime) -> None:
    conversions = codec(conn.dialect)
    stamp = conversions.datetime(now)
    new_id = ctx.ids.new
    attempt_rows: list[tuple[Any, ...]] = []
    command_rows: list[tuple[Any, ...]] = []
    for success in successes:
        answer = success.answer
        item, result, paths = answer.item, answer.result, answer.paths
        number = item.attempts + 1
        request = {"method": result.method, "path": result.path, "intent": item.intent,
                   "reference": item.operation_id, "payload": redact(item.payload, paths)}
        body = orjson.dumps(redact(dict(result.body), paths)).decode()[:MAX_BODY_CHARS] if result.body else None
        attempt_rows.append((new_id("att"), item.id, number, conversions.json(request), result.status_code, body,
                             result.latency_ms, "ok", stamp))
        command_rows.append(("succeeded", number, None, stamp, item.id))
    _insert(conn, row_insert(conn, attempts, ATTEMPT_COLUMNS), attempt_rows)
    row_update(conn, commands, ("status", "attempts", "next_attempt_at", "updated_at"), ("id",)).execute(
        conn, command_rows)
    retried = [s.answer.item.id for s in successes if s.answer.item.attempts > 0 or s.answer.item.taken_over]
    if retried:  # only an earlier attempt can have opened a failure
        conn.execute(_close, {"ids": retried, "now": now})
    _move_records(conn, ctx, [s for s in successes if s.answer.item.record_id is not None], now, stamp)


def _move_records(conn: Connection, ctx: ServiceContext, successes: list[_Success], now: datetime,
                  stamp: Any) -> None:
    """dispatch._move_record for many: each record to the status and fields its answer shows
    (at least `submitted`), linked to the provider's object."""
    if not successes:
        return
    rows = {row.id: row for row in conn.execute(_records, {"ids": [s.answer.item.record_id for s in successes]})}
    objects = [s.mapped.external_id for s in successes if s.mapped is not None]
    linked: dict[tuple[str, str, str], str] = {}
    if objects:
        linked = {(row.connection_id, row.kind, row.external_id): row.record_id
                  for row in conn.execute(_links, {"ids": objects})}
    conversions = codec(conn.dialect)
    new_id = ctx.ids.new
    ref_rows: list[tuple[Any, ...]] = []
    updates: list[tuple[Any, ...]] = []
    transition_rows: list[tuple[Any, ...]] = []
    for success in successes:
        answer, mapped = success.answer, success.mapped
        item, connection = answer.item, answer.connection
        row = rows.get(item.record_id or "")
        if row is None:
            continue
        if mapped is not None:
            owner = linked.get((connection.id, mapped.kind, mapped.external_id))
            if owner is None:
                ref_rows.append((new_id("ref"), connection.id, connection.provider, mapped.kind, mapped.external_id,
                                 row.id))
            elif owner != row.id:
                _superseded(conn, ctx, item, row, owner)
                continue
        target = mapped.status if mapped is not None and mapped.status is not None else Status.SUBMITTED
        current = Status(row.status)
        fields = mapped.fields if mapped is not None else row.fields
        if current == target and fields == row.fields:
            continue
        if current != target and not can_transition(current, target):
            continue  # the record moved on (an event was faster): the answer is older news
        changed = sorted(key for key in set(fields) | set(row.fields) if fields.get(key) != row.fields.get(key))
        version = row.version + 1
        updates.append((str(target), version, conversions.json(fields), stamp, row.id, row.version))
        transition_rows.append((
            new_id("trn"), row.id, version, str(current), str(target), "command", ctx.actor,
            mapped.mapping_version if mapped is not None else None, None, item.id,
            f"{item.intent} succeeded ({answer.result.outcome.code})", conversions.json(changed), None, stamp))
    _insert(conn, row_insert(conn, refs, REF_COLUMNS), ref_rows)
    row_update(conn, records, ("status", "version", "fields", "updated_at"), ("id", "version")).execute(conn, updates)
    _insert(conn, row_insert(conn, transitions, TRANSITION_COLUMNS), transition_rows)


def _insert(conn: Connection, statement: RowInsert, rows: list[tuple[Any, ...]]) -> None:
    """SQLite: one multi-row INSERT (an executemany gives up the interpreter lock at every row,
    and waits for it behind the sender threads each time). PostgreSQL: an executemany, which
    psycopg pipelines; it would parse a long multi-row INSERT anew each time (it caches only
    short statements: 4 ms for 64 attempts here)."""
    if conn.dialect.name == "sqlite":
        statement.execute_as_one(conn, rows)
    else:
        statement.execute(conn, rows)
