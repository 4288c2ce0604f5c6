"""Error-queue triage: group, inspect, retry, replay, resolve, ignore, assign, annotate.

Every action is one transaction per failure (so a bulk action that stops half-way leaves each
failure either fully handled or untouched) and writes an audit entry that the record's
timeline shows at once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, func, select, update

from adapters.protocol import SignatureCheck
from store.database import reading, writing
from store.models import Command, Connection as ConnectionRow, Delivery, Failure, FailureNote
from workbench.domain.redaction import redact_text
from workbench.domain.taxonomy import CLOSED_STATES, Category, TriageState, can_triage, policy_for

from . import access, audit
from .captures import Capture
from .connections import ConnectionInfo
from .context import ServiceContext
from .errors import NotFound, ServiceError
from .ingest import process_batch
from .payload_crypto import NO_VAULTS, BodyReader, Vaults, encrypts, sealer_for
from .queries import failure_dict
from .replay import replay

failures = Failure.__table__
notes = FailureNote.__table__
deliveries = Delivery.__table__
commands = Command.__table__
connections = ConnectionRow.__table__

OPEN_STATES = tuple(s.value for s in TriageState if s not in CLOSED_STATES)
Progress = Callable[[int, int], None]


@dataclass
class TriageResult:
    done: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    messages: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class FailureGroup:
    category: str
    connection: str | None
    fingerprint: str
    count: int
    sample_message: str
    oldest: datetime
    newest: datetime


def groups(ctx: ServiceContext, *, open_only: bool = True, category: str | None = None) -> list[FailureGroup]:
    """Failures grouped by category, connection and fingerprint, largest first."""
    access.require(ctx, "read")
    query = (select(failures.c.category, connections.c.name, failures.c.fingerprint, func.count(),
                    func.min(failures.c.message), func.min(failures.c.created_at), func.max(failures.c.created_at))
             .select_from(failures.outerjoin(connections, connections.c.id == failures.c.connection_id))
             .group_by(failures.c.category, connections.c.name, failures.c.fingerprint)
             .order_by(func.count().desc(), failures.c.category))
    if open_only:
        query = query.where(failures.c.state.in_(OPEN_STATES))
    if category:
        query = query.where(failures.c.category == category)
    with reading(ctx.engine) as conn:
        return [FailureGroup(cat, name, fingerprint, count, redact_text(message), oldest, newest)
                for cat, name, fingerprint, count, message, oldest, newest in conn.execute(query)]


def failure_detail(ctx: ServiceContext, failure_id: str) -> dict[str, Any]:
    access.require(ctx, "read")
    with reading(ctx.engine) as conn:
        row = _get(conn, failure_id)
        name = conn.execute(select(connections.c.name).where(connections.c.id == row.connection_id)).scalar()
        detail = failure_dict(row, name)
        policy = policy_for(Category(row.category))
        detail["policy"] = {"recovery": str(policy.recovery), "description": policy.description,
                            "retryable": policy.retryable, "alert": policy.alert, "reviewer": policy.reviewer}
        detail["notes"] = [{"actor": n.actor, "note": redact_text(n.note), "at": n.created_at.isoformat()}
                           for n in conn.execute(select(notes).where(notes.c.failure_id == failure_id)
                                                 .order_by(notes.c.created_at, notes.c.id))]
    return detail


def get_failure(conn: Connection, failure_id: str) -> Any:
    """The failure row (NotFound when there is none)."""
    return _get(conn, failure_id)


def _get(conn: Connection, failure_id: str) -> Any:
    row = conn.execute(select(failures).where(failures.c.id == failure_id)).first()
    if row is None:
        raise NotFound(f"no failure {failure_id!r}")
    return row


def _require_note(note: str | None) -> str:
    if note is None or not note.strip():
        raise ServiceError("a note is required: say why")
    return note.strip()


def resolve(ctx: ServiceContext, failure_ids: Sequence[str], note: str, progress: Progress | None = None) -> TriageResult:
    access.require(ctx, "triage")
    text = _require_note(note)
    return _each(ctx, failure_ids, progress, lambda conn, row: _close(conn, ctx, row, TriageState.RESOLVED, text))


def ignore(ctx: ServiceContext, failure_ids: Sequence[str], note: str, progress: Progress | None = None) -> TriageResult:
    access.require(ctx, "triage")
    text = _require_note(note)
    return _each(ctx, failure_ids, progress, lambda conn, row: _close(conn, ctx, row, TriageState.IGNORED, text))


def reopen(ctx: ServiceContext, failure_ids: Sequence[str], note: str, progress: Progress | None = None) -> TriageResult:
    access.require(ctx, "triage")
    text = _require_note(note)
    return _each(ctx, failure_ids, progress, lambda conn, row: _move(conn, ctx, row, TriageState.OPEN, text, "failure.reopen"))


def assign(ctx: ServiceContext, failure_ids: Sequence[str], assignee: str, note: str | None = None,
           progress: Progress | None = None) -> TriageResult:
    access.require(ctx, "triage")
    who = assignee.strip()
    if not who:
        raise ServiceError("an assignee is required")

    def act(conn: Connection, row: Any) -> str:
        conn.execute(update(failures).where(failures.c.id == row.id).values(assignee=who, updated_at=ctx.clock()))
        if note:
            _add_note(conn, ctx, row.id, note)
        _audit(conn, ctx, row, "failure.assign", {"assignee": row.assignee}, {"assignee": who}, note)
        return f"assigned to {who}"

    return _each(ctx, failure_ids, progress, act)


def add_note(ctx: ServiceContext, failure_id: str, note: str) -> None:
    access.require(ctx, "triage")
    text = _require_note(note)
    with writing(ctx.engine) as conn:
        row = _get(conn, failure_id)
        _add_note(conn, ctx, failure_id, text)
        _audit(conn, ctx, row, "failure.note", None, None, text)


def retry(ctx: ServiceContext, failure_ids: Sequence[str], note: str | None = None,
          progress: Progress | None = None, vaults: Vaults = NO_VAULTS) -> TriageResult:
    """Re-run each failure's event through ingest (as a replayed copy). Applied: resolved.
    Still failing: kept, back in review, with the new reason noted. A failed command goes back
    to the outbox for the dispatcher. An encrypted event needs its vault in `vaults`; a purged
    one cannot be re-run (skipped, saying so)."""
    access.require(ctx, "triage")
    return _each(ctx, failure_ids, progress, lambda conn, row: retry_one(conn, ctx, row, note, vaults))


def retry_one(conn: Connection, ctx: ServiceContext, row: Any, note: str | None, vaults: Vaults = NO_VAULTS,
              *, audited: bool = True) -> str:
    """Retry one failure (`row`, read in `conn`) in the caller's transaction; what happened, in
    a line. ServiceError when it cannot be retried (closed, nothing to re-run). `audited`
    False: a recovery by filter, whose one audit entry covers every failure it retries (the
    failure's note still says what happened)."""
    if row.state in {s.value for s in CLOSED_STATES}:
        raise ServiceError(f"failure is {row.state}; reopen it first")
    if row.delivery_id:
        verdict, reason = _rerun_delivery(conn, ctx, row, vaults)
        outcome = TriageState.RESOLVED if verdict == "applied" else TriageState.NEEDS_REVIEW
        message = f"retry: {verdict}" + (f" ({redact_text(reason)})" if reason else "")
    elif row.command_id:
        conn.execute(update(commands).where(commands.c.id == row.command_id)
                     .values(status="pending", next_attempt_at=ctx.clock(), updated_at=ctx.clock()))
        outcome, message = TriageState.RETRYING, "retry: command returned to the outbox"
    else:
        raise ServiceError("nothing to retry: the failure names no event or command")
    _add_note(conn, ctx, row.id, message + (f" - {note}" if note else ""))
    conn.execute(update(failures).where(failures.c.id == row.id).values(state=outcome, updated_at=ctx.clock()))
    if audited:
        _audit(conn, ctx, row, "failure.retry", {"state": row.state}, {"state": str(outcome)}, message)
    return message


def replay_records(ctx: ServiceContext, failure_ids: Sequence[str], note: str | None = None,
                   progress: Progress | None = None, vaults: Vaults = NO_VAULTS) -> TriageResult:
    """Replay each failure's record through the current mapping; resolve the failure when
    the record then leaves review."""
    access.require(ctx, "replay")
    result = TriageResult()
    total = len(failure_ids)
    for index, failure_id in enumerate(failure_ids, start=1):
        try:
            with reading(ctx.engine) as conn:
                row = _get(conn, failure_id)
            if not row.record_id:
                raise ServiceError("the failure names no record to replay")
            report = replay(ctx, record=row.record_id, vaults=vaults)
            changed = report.changes[0] if report.changes else None
            message = (f"replay: {changed.from_status} -> {changed.to_status}" if changed
                       else "replay: belief unchanged")
            with writing(ctx.engine) as conn:
                row = _get(conn, failure_id)
                target = TriageState.RESOLVED if changed and changed.to_status != "needs_review" else row.state
                _add_note(conn, ctx, row.id, message + (f" - {note}" if note else ""))
                if target != row.state:
                    conn.execute(update(failures).where(failures.c.id == row.id).values(state=target, updated_at=ctx.clock()))
                _audit(conn, ctx, row, "failure.replay", {"state": row.state}, {"state": str(target)}, message)
            result.done.append(failure_id)
            result.messages[failure_id] = message
        except ServiceError as exc:
            result.skipped.append((failure_id, redact_text(str(exc))))
        if progress:
            progress(index, total)
    return result


def _each(ctx: ServiceContext, failure_ids: Sequence[str], progress: Progress | None,
          act: Callable[[Connection, Any], str]) -> TriageResult:
    if not failure_ids:
        raise ServiceError("no failures selected")
    result = TriageResult()
    total = len(failure_ids)
    for index, failure_id in enumerate(failure_ids, start=1):
        try:
            with writing(ctx.engine) as conn:
                message = act(conn, _get(conn, failure_id))
            result.done.append(failure_id)
            result.messages[failure_id] = message
        except ServiceError as exc:
            result.skipped.append((failure_id, redact_text(str(exc))))
        if progress:
            progress(index, total)
    return result


def _close(conn: Connection, ctx: ServiceContext, row: Any, target: TriageState, note: str) -> str:
    return _move(conn, ctx, row, target, note, "failure.resolve" if target == TriageState.RESOLVED else "failure.ignore")


def _move(conn: Connection, ctx: ServiceContext, row: Any, target: TriageState, note: str, action: str) -> str:
    current = TriageState(row.state)
    if current == target:
        raise ServiceError(f"already {target}")
    if not can_triage(current, target):
        raise ServiceError(f"cannot go from {current} to {target}")
    conn.execute(update(failures).where(failures.c.id == row.id).values(state=str(target), updated_at=ctx.clock()))
    _add_note(conn, ctx, row.id, note)
    _audit(conn, ctx, row, action, {"state": row.state}, {"state": str(target)}, note)
    return f"{current} -> {target}"


def _add_note(conn: Connection, ctx: ServiceContext, failure_id: str, note: str) -> None:
    conn.execute(notes.insert().values(id=ctx.ids.new("note"), failure_id=failure_id, actor=ctx.actor,
                                       note=note, created_at=ctx.clock()))


def _audit(conn: Connection, ctx: ServiceContext, row: Any, action: str, before: Any, after: Any,
           reason: str | None) -> None:
    # Targeted at the failure; the record's timeline finds it through the failure's record.
    audit.append(conn, ctx, action, "failure", row.id, before=before, after=after, reason=reason)


def _rerun_delivery(conn: Connection, ctx: ServiceContext, row: Any, vaults: Vaults) -> tuple[str, str | None]:
    original = conn.execute(select(deliveries, connections.c.environment)
                            .join(connections, connections.c.id == deliveries.c.connection_id)
                            .where(deliveries.c.id == row.delivery_id)).one()
    body = BodyReader(vaults).plain(original)  # before anything is written: locked or purged, one line
    connection_row = conn.execute(select(connections).where(connections.c.id == original.connection_id)).one()
    connection = ConnectionInfo(connection_row.id, connection_row.name, connection_row.provider,
                                connection_row.environment, connection_row.paused, connection_row.version,
                                connection_row.settings)
    adapter = ctx.adapters.get(connection.provider)
    capture = Capture(original.received_at, original.headers, body, "replay")
    sealer = sealer_for(vaults, connection.id, connection.environment) if encrypts(connection.settings) else None
    # The copy carries its original's signature verdict (the same bytes as received): a
    # delivery whose signature failed stays rejected however often it is retried.
    as_received = SignatureCheck(original.signature_verdict, original.signature_secret,
                                 f"as received ({original.id}): {original.verdict_reason}")
    process_batch(conn, ctx, connection, adapter, [capture], replay_of=[original.id], sealer=sealer,
                  check=lambda _capture: as_received)
    copy = conn.execute(select(deliveries.c.id, deliveries.c.verdict, deliveries.c.verdict_reason)
                        .where(deliveries.c.replay_of == original.id)
                        .order_by(deliveries.c.id.desc()).limit(1)).one()
    # The failure being retried already stands for this problem: a repeat is a note, not a new row.
    conn.execute(delete(failures).where(failures.c.delivery_id == copy.id))
    return copy.verdict, copy.verdict_reason
