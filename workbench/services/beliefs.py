"""Applying mapped events to records inside one unit of work, then writing the result in bulk.

Ingest, retry and replay all change belief through this one book, so every change gets the
same transition, the same version guard and the same failure rows.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select, tuple_

from store.bulk import bulk, insert_rows
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
CHUNK = 500  # keeps IN lists well below every backend's bound-parameter limit


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


@dataclass
class BeliefBook:
    """The records one unit of work touches, and the rows it will write."""

    ctx: ServiceContext
    connection_id: str
    provider: str
    states: dict[tuple[str, str], RecordState] = field(default_factory=dict)
    transition_rows: list[dict[str, Any]] = field(default_factory=list)
    failure_rows: list[dict[str, Any]] = field(default_factory=list)
    now: datetime = field(init=False)

    def __post_init__(self) -> None:
        self.now = self.ctx.clock()  # one clock reading per unit of work

    def load(self, conn: Connection, keys: Iterable[tuple[str, str]]) -> None:
        """Load current beliefs for (kind, external ID) pairs not loaded yet."""
        wanted = sorted({k for k in keys if k not in self.states})
        for start in range(0, len(wanted), CHUNK):
            chunk = wanted[start:start + CHUNK]
            rows = conn.execute(
                select(refs.c.kind, refs.c.external_id, records.c.id, records.c.status,
                       records.c.version, records.c.fields, records.c.last_occurred_at,
                       records.c.last_rank, records.c.last_event_key)
                .join(records, records.c.id == refs.c.record_id)
                .where(refs.c.connection_id == self.connection_id,
                       tuple_(refs.c.kind, refs.c.external_id).in_(chunk))
            )
            for row in rows:
                watermark = None
                if row.last_occurred_at is not None:
                    watermark = (row.last_occurred_at, row.last_rank, row.last_event_key)
                self.states[(row.kind, row.external_id)] = RecordState(
                    row.id, row.kind, row.external_id,
                    Belief(Status(row.status), row.fields, watermark), row.version, row.version)

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
        state = self.states.get((mapped.kind, mapped.external_id))
        decision = decide(state.belief if state else None, mapped, key)
        if isinstance(decision, Stale):
            return Outcome(Verdict.STALE, decision.reason, state.id if state else None)
        if isinstance(decision, Reject):
            assert state is not None  # a new record is never rejected
            self.open_failure(decision.category, f"transition:{state.belief.status}->{mapped.status}",
                              decision.reason, record_id=state.id, delivery_id=delivery_id)
            return Outcome(Verdict.REJECTED, decision.reason, state.id)
        return self._apply(state, mapped, decision, key, occurred_at, delivery_id, cause)

    def _apply(self, state: RecordState | None, mapped: MappedEvent, decision: Apply,
               key: tuple[datetime, int, str], occurred_at: datetime, delivery_id: str | None,
               cause: Cause) -> Outcome:
        from_status = state.belief.status if state else None
        if state is None:
            state = RecordState(self.ctx.ids.new("rec"), mapped.kind, mapped.external_id,
                                Belief(decision.to_status, {}, None), 0, None)
            self.states[(mapped.kind, mapped.external_id)] = state
        changes = from_status != decision.to_status or bool(decision.changed_fields)
        state.belief = Belief(decision.to_status, mapped.fields, key)
        state.touched = True
        if changes:
            state.version += 1
            self.transition_rows.append({
                "id": self.ctx.ids.new("trn"), "record_id": state.id, "version": state.version,
                "from_status": str(from_status) if from_status else None,
                "to_status": str(decision.to_status), "cause": str(cause), "actor": self._actor(cause),
                "mapping_version": mapped.mapping_version, "delivery_id": delivery_id,
                "command_id": None, "reason": decision.reason,
                "changed_fields": list(decision.changed_fields), "occurred_at": occurred_at,
                "created_at": self.now,
            })
        if decision.opens is not None:
            self.open_failure(decision.opens, f"unknown_status:{mapped.kind}:{mapped.provider_status}",
                              decision.reason, record_id=state.id, delivery_id=delivery_id)
            return Outcome(Verdict.FAILED, decision.reason, state.id)
        return Outcome(Verdict.APPLIED, decision.reason, state.id)

    def _actor(self, cause: Cause) -> str:
        return f"provider:{self.provider}" if cause == Cause.EVENT else self.ctx.actor

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
        now = self.now
        new_records, new_refs, updates = [], [], []
        for state in self.states.values():
            if not state.touched:
                continue
            belief = state.belief
            occurred, rank, key = belief.watermark if belief.watermark else (None, None, None)
            row = {"status": str(belief.status), "version": state.version, "fields": belief.fields,
                   "last_occurred_at": occurred, "last_rank": rank, "last_event_key": key, "updated_at": now}
            if state.loaded_version is None:
                new_records.append({"id": state.id, "connection_id": self.connection_id, "kind": state.kind,
                                    "created_at": now, **row})
                new_refs.append({"id": self.ctx.ids.new("ref"), "connection_id": self.connection_id,
                                 "provider": self.provider, "kind": state.kind,
                                 "external_id": state.external_id, "record_id": state.id})
            else:
                updates.append({"b_id": state.id, "b_loaded": state.loaded_version, **row})
            state.touched = False
        insert_rows(conn, records, new_records)
        insert_rows(conn, refs, new_refs)
        if updates:
            statement = bulk(conn, records, UPDATED_COLUMNS, where={"id": "b_id", "version": "b_loaded"})
            changed = statement.execute(conn, updates)
            if changed not in (-1, len(updates)):
                raise ConcurrentChange(f"{len(updates) - changed} record(s) changed underneath")
        insert_rows(conn, transitions, self.transition_rows)
        insert_rows(conn, failures, self.failure_rows)
        for state in self.states.values():
            state.loaded_version = state.version
        self.transition_rows = []
        self.failure_rows = []
