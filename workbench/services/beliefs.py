"""Applying mapped events to records inside one unit of work, then writing the result in bulk.

Ingest, retry and replay all change belief through this one book, so every change gets the
same transition, the same version guard and the same failure rows.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import Connection, bindparam, select

from store.bulk import codec, in_lookup, insert_rows, memoised, row_insert, row_update
from store.models import Failure, ProviderRef, Record, Transition
from workbench.domain.belief import Apply, Reject, Stale, decide, event_key
from workbench.domain.canonical import Belief, Cause, MappedEvent, Verdict
from workbench.domain.statuses import Status
from workbench.domain.taxonomy import Category

from .context import ServiceContext
from .failures_write import failure_row

records = Record.__table__
refs = ProviderRef.__table__
transitions = Transition.__table__
failures = Failure.__table__

UPDATED_COLUMNS = ("status", "version", "fields", "last_occurred_at", "last_rank", "last_event_key", "updated_at")
RECORD_COLUMNS = ("id", "connection_id", "kind", "created_at") + UPDATED_COLUMNS
REF_COLUMNS = ("id", "connection_id", "provider", "kind", "external_id", "record_id")
TRANSITION_COLUMNS = ("id", "record_id", "version", "from_status", "to_status", "cause", "actor",
                      "mapping_version", "delivery_id", "command_id", "reason", "changed_fields",
                      "occurred_at", "created_at")
_T_CHANGED, _T_OCCURRED, _T_CREATED = (TRANSITION_COLUMNS.index(name)
                                      for name in ("changed_fields", "occurred_at", "created_at"))
CHUNK = 500  # keeps IN lists well below every backend's bound-parameter limit

_APPLIED, _STALE, _REJECTED, _FAILED = Verdict.APPLIED, Verdict.STALE, Verdict.REJECTED, Verdict.FAILED
_EVENT = Cause.EVENT


class ConcurrentChange(Exception):
    """Another writer changed a record we were updating; the unit of work must be retried."""


@dataclass(slots=True)
class RecordState:
    id: str
    kind: str
    external_id: str
    belief: Belief
    version: int
    loaded_version: int | None  # None: created in this unit of work
    touched: bool = False


@dataclass(frozen=True, slots=True)
class Outcome:
    verdict: Verdict
    reason: str
    record_id: str | None


def _load_statement(in_params: list[Any]) -> Any:
    return (select(refs.c.external_id, records.c.id, records.c.status, records.c.version, records.c.fields,
                   records.c.last_occurred_at, records.c.last_rank, records.c.last_event_key)
            .join(records, records.c.id == refs.c.record_id)
            .where(refs.c.connection_id == bindparam("connection_id"), refs.c.kind == bindparam("kind"),
                   refs.c.external_id.in_(in_params)))


_changed_texts: dict[tuple[str, ...], str] = {}


def _changed_json(changed: tuple[str, ...]) -> str:
    # Few distinct sets of fields change together: each becomes JSON text once (bounded).
    text = _changed_texts.get(changed)
    if text is None:
        if len(_changed_texts) >= 1024:
            _changed_texts.clear()
        text = _changed_texts[changed] = orjson.dumps(list(changed), option=orjson.OPT_SORT_KEYS).decode()
    return text


@dataclass
class BeliefBook:
    """The records one unit of work touches, and the rows it will write."""

    ctx: ServiceContext
    connection_id: str
    provider: str
    states: dict[tuple[str, str], RecordState] = field(default_factory=dict)
    # Rows waiting for flush(): transitions as lists in TRANSITION_COLUMNS order (changed
    # fields and occurrence time still Python values), failures as dicts.
    transition_rows: list[list[Any]] = field(default_factory=list)
    failure_rows: list[dict[str, Any]] = field(default_factory=list)
    now: datetime = field(init=False)

    def __post_init__(self) -> None:
        self.now = self.ctx.clock()  # one clock reading per unit of work
        self._event_actor = f"provider:{self.provider}"
        self._new_id = self.ctx.ids.new

    def load(self, conn: Connection, keys: Iterable[tuple[str, str]]) -> None:
        """Load current beliefs for (kind, external ID) pairs not loaded yet."""
        states = self.states
        by_kind: dict[str, list[str]] = {}
        for key in keys:
            if key not in states:
                by_kind.setdefault(key[0], []).append(key[1])
        if not by_kind:
            return
        lookup = in_lookup(conn, "beliefs.load", _load_statement, CHUNK)
        read_dt, read_json = codec(conn.dialect).read_datetime, codec(conn.dialect).read_json
        for kind, external_ids in by_kind.items():
            external_ids = sorted(set(external_ids))
            rows = lookup.rows(conn, external_ids, connection_id=self.connection_id, kind=kind)
            for external_id, record_id, status, version, fields, occurred, rank, event_key_text in rows:
                if (kind, external_id) in states:  # a padded chunk repeats its last key
                    continue
                watermark = None
                if occurred is not None:
                    watermark = (read_dt(occurred), rank, event_key_text)
                states[(kind, external_id)] = RecordState(
                    record_id, kind, external_id, Belief(Status(status), read_json(fields), watermark),
                    version, version)

    def apply(
        self,
        mapped: MappedEvent,
        occurred_at: datetime,
        event_key_text: str,
        *,
        delivery_id: str | None,
        cause: Cause = Cause.EVENT,
    ) -> Outcome:
        key = event_key(occurred_at, mapped, event_key_text)
        record_key = (mapped.kind, mapped.external_id)
        state = self.states.get(record_key)
        decision = decide(state.belief if state is not None else None, mapped, key)
        if type(decision) is not Apply:
            if isinstance(decision, Stale):
                return Outcome(_STALE, decision.reason, state.id if state is not None else None)
            if isinstance(decision, Reject):
                assert state is not None  # a new record is never rejected
                self.open_failure(decision.category, f"transition:{state.belief.status}->{mapped.status}",
                                  decision.reason, record_id=state.id, delivery_id=delivery_id)
                return Outcome(_REJECTED, decision.reason, state.id)
        to_status = decision.to_status
        if state is None:
            from_status = None
            state = self.states[record_key] = RecordState(
                self._new_id("rec"), mapped.kind, mapped.external_id, Belief(to_status, mapped.fields, key), 0, None)
            changes = True
        else:
            from_status = state.belief.status
            changes = from_status != to_status or bool(decision.changed_fields)
            state.belief = Belief(to_status, mapped.fields, key)
        state.touched = True
        if changes:
            state.version += 1
            if cause is _EVENT:
                cause_text, actor = "event", self._event_actor
            else:
                cause_text, actor = str(cause), self._actor(cause)
            self.transition_rows.append([
                self._new_id("trn"), state.id, state.version, str(from_status) if from_status else None,
                str(to_status), cause_text, actor, mapped.mapping_version, delivery_id, None, decision.reason,
                decision.changed_fields, occurred_at, self.now,
            ])
        if decision.opens is not None:
            self.open_failure(decision.opens, f"unknown_status:{mapped.kind}:{mapped.provider_status}",
                              decision.reason, record_id=state.id, delivery_id=delivery_id)
            return Outcome(_FAILED, decision.reason, state.id)
        return Outcome(_APPLIED, decision.reason, state.id)

    def _actor(self, cause: Cause) -> str:
        return self._event_actor if cause == _EVENT else self.ctx.actor

    def open_failure(self, category: Category, code: str, message: str, *, record_id: str | None = None,
                     delivery_id: str | None = None) -> str:
        failure_id = self.ctx.ids.new("fail")
        self.failure_rows.append(failure_row(
            failure_id=failure_id, category=category, provider=self.provider, code=code, message=message,
            now=self.now, connection_id=self.connection_id, record_id=record_id,
            delivery_id=delivery_id))
        return failure_id

    def flush(self, conn: Connection) -> None:
        """Write every touched record, its transitions and failures. Updates are guarded by the
        version we read, so a concurrent writer makes this unit of work fail, not fork."""
        conversions = codec(conn.dialect)
        to_dt, to_json = memoised(conversions.datetime), conversions.json
        now = to_dt(self.now)
        connection_id, provider, new_id = self.connection_id, self.provider, self.ctx.ids.new
        new_records, new_refs, updates = [], [], []
        for state in self.states.values():
            if not state.touched:
                continue
            belief = state.belief
            occurred, rank, key = belief.watermark if belief.watermark else (None, None, None)
            values = (str(belief.status), state.version, to_json(belief.fields), to_dt(occurred),
                      rank, key, now)
            if state.loaded_version is None:
                new_records.append((state.id, connection_id, state.kind, now) + values)
                new_refs.append((new_id("ref"), connection_id, provider, state.kind, state.external_id, state.id))
            else:
                updates.append(values + (state.id, state.loaded_version))
            state.touched = False
        row_insert(conn, records, RECORD_COLUMNS).execute(conn, new_records)
        row_insert(conn, refs, REF_COLUMNS).execute(conn, new_refs)
        if updates:
            changed = row_update(conn, records, UPDATED_COLUMNS, ("id", "version")).execute(conn, updates)
            if changed not in (-1, len(updates)):
                raise ConcurrentChange(f"{len(updates) - changed} record(s) changed underneath")
        rows = self.transition_rows
        if rows:
            for row in rows:
                row[_T_CHANGED] = _changed_json(row[_T_CHANGED])
                row[_T_OCCURRED] = to_dt(row[_T_OCCURRED])
                row[_T_CREATED] = now
            row_insert(conn, transitions, TRANSITION_COLUMNS).execute(conn, list(map(tuple, rows)))
        insert_rows(conn, failures, self.failure_rows)
        for state in self.states.values():
            state.loaded_version = state.version
        self.transition_rows = []
        self.failure_rows = []
