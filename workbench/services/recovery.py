"""Recovery by filter: retry every failure that matches a filter, in the store, not a screen's
page; a plan first, the run in the engine, cancellable, one audit entry.

What "recover" does, per kind of failure (the failure names what failed):
- a failed command: back to the outbox (pending, due now): the engine's dispatcher sends it
  again at the connection's pace, with the same idempotency key;
- a failed delivery (rejected, needs review, unmapped...): re-run through the ingest pipeline
  as a replayed copy (triage.retry_one); applied resolves the failure;
- held deliveries (a paused connection) are not failures: resuming the connection applies
  them (services/held), so a recovery neither counts nor touches them.
Closed failures (resolved, ignored) are never retried: reopen them first.

The planned set is frozen when the operator confirms (`submit`): recovery_items holds exactly
the failures the plan counted (matching then, up to the newest one the plan saw), and the
engine touches only those, each in one transaction with its item's new state, so an engine
that dies part-way resumes without retrying anything twice. A cancel stops the run before the
next failure; the rest stays as it was (items `cancelled`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Connection, Select, and_, case, func, literal, or_, select, update
from sqlalchemy.exc import SQLAlchemyError

from store.database import reading, writing
from store.models import Connection as ConnectionRow, Failure, Recovery, RecoveryItem
from workbench.domain.failure_filter import UNRESOLVED, BadFilter, FailureFilter, parse_failure_filter
from workbench.domain.redaction import redact_text
from workbench.domain.taxonomy import CLOSED_STATES

from . import access, audit, triage
from .connections import ConnectionInfo, _get as connection_in, _info as connection_info
from .context import ServiceContext
from .errors import InvalidArgument, NotFound, ServiceError, StoreUnavailable
from .pace import outbound_rate
from .payload_crypto import NO_VAULTS, Vaults

log = logging.getLogger(__name__)

failures = Failure.__table__
connections = ConnectionRow.__table__
recoveries = Recovery.__table__
items = RecoveryItem.__table__

CLOSED = tuple(str(s) for s in CLOSED_STATES)
BATCH = 50  # failures per engine run (one per second): a cancel waits at most one batch
RUNNING, FINISHED, CANCELLED = "running", "finished", "cancelled"


@dataclass(frozen=True)
class ConnectionPlan:
    name: str | None  # None: failures that name no connection
    failures: int
    commands: int  # failed commands going back to the outbox
    deliveries: int  # failed deliveries re-run through ingest
    rate_per_s: float | None  # the connection's outbound pace (services/pace)
    expected_s: float | None  # commands at that pace; None: no pace known

    def as_dict(self) -> dict[str, Any]:
        return {"connection": self.name, "failures": self.failures, "commands": self.commands,
                "deliveries": self.deliveries, "rate_per_s": self.rate_per_s, "expected_s": self.expected_s}


@dataclass(frozen=True)
class RecoveryPlan:
    filter: FailureFilter
    failures: int
    commands: int
    deliveries: int
    connections: tuple[ConnectionPlan, ...]
    expected_s: float  # the slowest connection's commands at its pace, or the engine's batches
    upto: str | None  # the newest matching failure the plan saw: the frozen set ends there

    def as_dict(self) -> dict[str, Any]:
        return {"filter": self.filter.describe(), "failures": self.failures, "commands": self.commands,
                "deliveries": self.deliveries, "expected_s": round(self.expected_s, 1),
                "connections": [c.as_dict() for c in self.connections]}


@dataclass(frozen=True)
class RecoveryInfo:
    id: str
    description: str
    state: str
    total: int
    done: int
    skipped: int
    requested_by: str
    requested_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    cancel_requested_at: datetime | None

    @property
    def pending(self) -> int:
        return self.total - self.done - self.skipped if self.state == RUNNING else 0

    def as_dict(self) -> dict[str, Any]:
        def iso(value: datetime | None) -> str | None:
            return value.isoformat() if value is not None else None
        return {"id": self.id, "filter": self.description, "state": self.state, "total": self.total,
                "done": self.done, "skipped": self.skipped, "pending": self.pending,
                "requested_by": self.requested_by, "requested_at": iso(self.requested_at),
                "started_at": iso(self.started_at), "finished_at": iso(self.finished_at),
                "cancel_requested_at": iso(self.cancel_requested_at)}


def _recovery_info(row: Any) -> RecoveryInfo:
    return RecoveryInfo(row.id, row.description, row.state, row.total, row.done, row.skipped, row.requested_by,
                        row.requested_at, row.started_at, row.finished_at, row.cancel_requested_at)


# -- the filter as a query ------------------------------------------------------------------

def parse_filter(ctx: ServiceContext, text: str) -> FailureFilter:
    """An operator's filter text (CLI --filter, the Error queue's /) read; InvalidArgument, one
    line, when it cannot be."""
    try:
        return parse_failure_filter(text, ctx.clock())
    except BadFilter as exc:
        raise InvalidArgument(str(exc)) from None


def connection_filter(ctx: ServiceContext, name: str, *, since: datetime, until: datetime | None = None,
                      category: str | None = None) -> FailureFilter:
    """`workbench recover NAME --since ... [--until] [--category]` as a failure filter."""
    if until is not None and since >= until:
        raise InvalidArgument("--since must be before --until")
    with reading(ctx.engine) as conn:
        connection_in(conn, name)  # unknown: NotFound, one line
    return FailureFilter(category=category, connection=name, since=since, until=until)


def _conditions(flt: FailureFilter) -> list[ColumnElement[bool]]:
    if flt.state in CLOSED:
        raise InvalidArgument(f"{flt.state} failures are not retried: reopen them first")
    where: list[ColumnElement[bool]] = []
    if flt.state is None or flt.state == UNRESOLVED:
        where.append(failures.c.state.not_in(CLOSED))
    else:
        where.append(failures.c.state == flt.state)
    if flt.category is not None:
        where.append(failures.c.category == flt.category)
    if flt.connection is not None:
        where.append(connections.c.name == flt.connection)
    if flt.fingerprint is not None:
        where.append(failures.c.fingerprint == flt.fingerprint)
    if flt.since is not None:
        where.append(failures.c.created_at >= flt.since)
    if flt.until is not None:
        where.append(failures.c.created_at < flt.until)
    # As FailureFilter.matches: part of any of the four, case-insensitive (the screen matches
    # the redacted sample message, the store the message as stored: a masked secret is no word).
    for word in flt.words:
        where.append(or_(*(func.lower(column).contains(word, autoescape=True) for column in (
            failures.c.category, connections.c.name, failures.c.fingerprint, failures.c.message))))
    return where


def _matching(flt: FailureFilter, *columns: Any) -> Select[Any]:
    return (select(*columns)
            .select_from(failures.outerjoin(connections, connections.c.id == failures.c.connection_id))
            .where(*_conditions(flt)))


# -- plan, submit, status, cancel ---------------------------------------------------------------

def plan(ctx: ServiceContext, flt: FailureFilter) -> RecoveryPlan:
    """What a recovery with `flt` would retry now: counts per connection and kind, and how long
    it should take at each connection's outbound pace."""
    access.require(ctx, "read")
    kind = case((failures.c.command_id.is_not(None), "command"),
                (failures.c.delivery_id.is_not(None), "delivery"), else_="other")
    with reading(ctx.engine) as conn:
        if flt.connection is not None:
            connection_in(conn, flt.connection)
        rows = conn.execute(_matching(flt, failures.c.connection_id, kind, func.count(), func.max(failures.c.id))
                            .group_by(failures.c.connection_id, kind)).all()
        ids = {row[0] for row in rows if row[0] is not None}
        infos = {row.id: connection_info(row) for row in conn.execute(
            select(connections).where(connections.c.id.in_(ids)))} if ids else {}
    per: dict[str | None, dict[str, int]] = {}
    upto: str | None = None
    for connection_id, what, count, newest in rows:
        per.setdefault(connection_id, {"command": 0, "delivery": 0, "other": 0})[what] += count
        upto = newest if upto is None or newest > upto else upto
    plans = tuple(sorted((_connection_plan(infos.get(cid) if cid else None, counts, ctx)
                          for cid, counts in per.items()), key=lambda p: (p.name or "", p.failures)))
    total = sum(p.failures for p in plans)
    slowest = max((p.expected_s or 0.0 for p in plans), default=0.0)
    return RecoveryPlan(flt, total, sum(p.commands for p in plans), sum(p.deliveries for p in plans), plans,
                        max(slowest, total / BATCH), upto)


def _connection_plan(info: ConnectionInfo | None, counts: dict[str, int], ctx: ServiceContext) -> ConnectionPlan:
    rate = outbound_rate(info, ctx.adapters) if info is not None else None
    commands = counts["command"]
    expected = commands / rate if rate and commands else (0.0 if not commands else None)
    return ConnectionPlan(info.name if info else None, sum(counts.values()), commands, counts["delivery"],
                          rate, expected)


def submit(ctx: ServiceContext, planned: RecoveryPlan, note: str | None = None) -> RecoveryInfo:
    """Start the recovery `planned` describes (the operator has confirmed it): its set frozen
    now, one audit entry naming the filter and the count; an engine carries it out."""
    access.require(ctx, "recover")
    if planned.failures == 0 or planned.upto is None:
        raise ServiceError(f"nothing to recover: no open failure matches {planned.filter.describe()}")
    now = ctx.clock()
    recovery_id = ctx.ids.new("rcv")
    description = planned.filter.describe()
    with writing(ctx.engine) as conn:
        conn.execute(recoveries.insert().values(
            id=recovery_id, filter=planned.filter.as_dict(), description=description, state=RUNNING, total=0,
            done=0, skipped=0, requested_by=ctx.actor, requested_at=now, note=note))
        frozen = _matching(planned.filter, literal(recovery_id), failures.c.id, literal("pending")) \
            .where(failures.c.id <= planned.upto)
        conn.execute(items.insert().from_select(["recovery_id", "failure_id", "state"], frozen))
        total = conn.execute(select(func.count()).where(items.c.recovery_id == recovery_id)).scalar_one()
        if total == 0:  # everything planned was closed meanwhile
            raise ServiceError(f"nothing to recover: no open failure matches {description} any more")
        conn.execute(update(recoveries).where(recoveries.c.id == recovery_id).values(total=total))
        audit.append(conn, ctx, "recovery.start", "recovery", recovery_id,
                     after={"filter": description, "count": total, "planned": planned.failures,
                            "commands": planned.commands, "deliveries": planned.deliveries}, reason=note)
        return _recovery_info(conn.execute(select(recoveries).where(recoveries.c.id == recovery_id)).one())


def status(ctx: ServiceContext, recovery_id: str | None = None, *, limit: int = 20) -> list[RecoveryInfo]:
    """One recovery, or the newest `limit` (running ones first)."""
    access.require(ctx, "read")
    with reading(ctx.engine) as conn:
        if recovery_id is not None:
            return [_recovery_info(_get(conn, recovery_id))]
        rows = conn.execute(select(recoveries).order_by(recoveries.c.id.desc()).limit(limit)).all()
    found = [_recovery_info(row) for row in rows]
    return sorted(found, key=lambda r: r.state != RUNNING)


def _get(conn: Connection, recovery_id: str) -> Any:
    row = conn.execute(select(recoveries).where(recoveries.c.id == recovery_id)).first()
    if row is None:
        raise NotFound(f"no recovery {recovery_id[:60]!r}; `workbench recover status` lists them")
    return row


def cancel(ctx: ServiceContext, recovery_id: str, note: str | None = None) -> RecoveryInfo:
    """Stop a running recovery: the engine stops before its next failure and leaves the rest
    untouched. Audited (a second entry beside the start's)."""
    access.require(ctx, "recover")
    now = ctx.clock()
    with writing(ctx.engine) as conn:
        row = _get(conn, recovery_id)
        if row.state != RUNNING:
            raise ServiceError(f"recovery {recovery_id} is {row.state}: nothing to cancel")
        if row.cancel_requested_at is None:
            conn.execute(update(recoveries).where(recoveries.c.id == recovery_id)
                         .values(cancel_requested_at=now))
            audit.append(conn, ctx, "recovery.cancel", "recovery", recovery_id,
                         before={"done": row.done, "skipped": row.skipped},
                         after={"filter": row.description, "count": row.total}, reason=note)
        return _recovery_info(_get(conn, recovery_id))


# -- the engine's part ----------------------------------------------------------------------

def any_running(ctx: ServiceContext) -> bool:
    with reading(ctx.engine) as conn:
        return conn.execute(select(recoveries.c.id).where(recoveries.c.state == RUNNING).limit(1)).first() is not None


def run_batch(ctx: ServiceContext, vaults: Vaults = NO_VAULTS, batch: int = BATCH) -> bool:
    """Carry out up to `batch` failures of the oldest running recovery (or close it: finished,
    or cancelled when asked to). True when there was anything to do."""
    with reading(ctx.engine) as conn:
        row = conn.execute(select(recoveries).where(recoveries.c.state == RUNNING)
                           .order_by(recoveries.c.id).limit(1)).first()
        if row is None:
            return False
        pending = list(conn.execute(select(items.c.failure_id).where(
            items.c.recovery_id == row.id, items.c.state == "pending").order_by(items.c.failure_id).limit(batch))
            .scalars())
    if row.cancel_requested_at is not None or not pending:
        _close(ctx, row.id)
        return True
    if row.started_at is None:
        with writing(ctx.engine) as conn:
            conn.execute(update(recoveries).where(recoveries.c.id == row.id, recoveries.c.started_at.is_(None))
                         .values(started_at=ctx.clock()))
    _retry_each(ctx, row.id, pending, vaults)
    return True


def _retry_each(ctx: ServiceContext, recovery_id: str, failure_ids: Sequence[str], vaults: Vaults) -> None:
    note = f"recovery {recovery_id}"
    for failure_id in failure_ids:
        try:
            with writing(ctx.engine) as conn:
                pending, cancelled = _item(conn, recovery_id, failure_id)
                if cancelled:
                    return  # the rest stays untouched
                if not pending:
                    continue  # another engine did it
                message = triage.retry_one(conn, ctx, triage.get_failure(conn, failure_id), note, vaults,
                                           audited=False)
                _mark(conn, recovery_id, failure_id, "done", message)
        except (SQLAlchemyError, StoreUnavailable):
            raise  # the store (locked, gone): the item stays pending for the next run
        except ServiceError as exc:  # rolled back: the failure is as it was; say why on the item
            _skip(ctx, recovery_id, failure_id, redact_text(str(exc))[:500])
        except Exception as exc:  # a bug on this one failure must not stall the rest forever
            log.warning("recovery %s: failure %s could not be retried", recovery_id, failure_id, exc_info=True)
            _skip(ctx, recovery_id, failure_id, f"unexpected {type(exc).__name__}; see the engine's log")


def _skip(ctx: ServiceContext, recovery_id: str, failure_id: str, why: str) -> None:
    with writing(ctx.engine) as conn:
        if _item(conn, recovery_id, failure_id)[0]:
            _mark(conn, recovery_id, failure_id, "skipped", why)


def _item(conn: Connection, recovery_id: str, failure_id: str) -> tuple[bool, bool]:
    """Whether the item is still pending, and whether its recovery was asked to stop. FOR
    UPDATE: two engines on PostgreSQL never retry the same failure twice."""
    row = conn.execute(select(items.c.state, recoveries.c.cancel_requested_at)
                       .join(recoveries, recoveries.c.id == items.c.recovery_id)
                       .where(items.c.recovery_id == recovery_id, items.c.failure_id == failure_id)
                       .with_for_update(of=items)).first()
    return (row is not None and row.state == "pending"), (row is not None and row.cancel_requested_at is not None)


def _mark(conn: Connection, recovery_id: str, failure_id: str, state: str, message: str) -> None:
    conn.execute(update(items).where(items.c.recovery_id == recovery_id, items.c.failure_id == failure_id)
                 .values(state=state, message=message))
    counter = recoveries.c.done if state == "done" else recoveries.c.skipped
    conn.execute(update(recoveries).where(recoveries.c.id == recovery_id).values({counter: counter + 1}))


def _close(ctx: ServiceContext, recovery_id: str) -> None:
    with writing(ctx.engine) as conn:
        row = conn.execute(select(recoveries).where(recoveries.c.id == recovery_id).with_for_update()).one()
        if row.state != RUNNING:
            return
        cancelled = row.cancel_requested_at is not None
        if cancelled:
            conn.execute(update(items).where(and_(items.c.recovery_id == recovery_id, items.c.state == "pending"))
                         .values(state="cancelled"))
        conn.execute(update(recoveries).where(recoveries.c.id == recovery_id)
                     .values(state=CANCELLED if cancelled else FINISHED, finished_at=ctx.clock()))


def item_states(ctx: ServiceContext, recovery_id: str) -> dict[str, str]:
    """Each planned failure's state in the recovery (for checks and the detail view)."""
    access.require(ctx, "read")
    with reading(ctx.engine) as conn:
        _get(conn, recovery_id)
        return dict(conn.execute(select(items.c.failure_id, items.c.state)
                                 .where(items.c.recovery_id == recovery_id)).all())
