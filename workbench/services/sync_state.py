"""The engine's per-connection state in the store: the polling cursor and lag, and whether the
connection's calls are stopped. An `authentication` failure stops a connection's calls (every
engine on the store obeys) and names the API key reference that failed; the calls start again
once the connection's newest active `api_key` reference is another one (the key was rotated)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select, update

from store.database import reading, writing
from store.models import SyncState

from . import access, audit, secret_refs
from .connections import ConnectionInfo, _get as get_connection_in
from .context import ServiceContext
from .errors import InvalidArgument
from .leases import insert_ignoring_conflict

sync_state = SyncState.__table__


@dataclass(frozen=True, slots=True)
class SyncInfo:
    connection_id: str
    cursor: str | None
    last_poll_at: datetime | None
    last_event_at: datetime | None
    lag_s: int | None
    calls_stopped_at: datetime | None
    calls_stopped_reason: str | None
    stopped_key: str | None
    reconcile_requested_at: datetime | None


def _info(row: Any) -> SyncInfo:
    return SyncInfo(row.connection_id, row.cursor, row.last_poll_at, row.last_event_at, row.lag_s,
                    row.calls_stopped_at, row.calls_stopped_reason, row.stopped_key, row.reconcile_requested_at)


def current_key(connection: ConnectionInfo, now: datetime) -> str | None:
    """The name of the API key reference calls use now (the newest active one), if any."""
    refs = [ref for ref in secret_refs.references(connection) if ref.kind == "api_key" and ref.state(now) == "active"]
    return max(refs, key=lambda ref: ref.added_at).name if refs else None


def ensure_row(conn: Connection, connection_id: str, now: datetime) -> None:
    insert_ignoring_conflict(conn, sync_state, {"connection_id": connection_id, "updated_at": now})


def all_states(ctx: ServiceContext) -> dict[str, SyncInfo]:
    with reading(ctx.engine) as conn:
        return {row.connection_id: _info(row) for row in conn.execute(select(sync_state))}


def get_state(conn: Connection, connection_id: str) -> SyncInfo | None:
    row = conn.execute(select(sync_state).where(sync_state.c.connection_id == connection_id)).first()
    return _info(row) if row is not None else None


def stop_calls(conn: Connection, ctx: ServiceContext, connection: ConnectionInfo, reason: str) -> None:
    """Stop `connection`'s calls in the caller's transaction (once: a stop already in force
    keeps its first reason), naming the API key reference in use, and audit it."""
    now = ctx.clock()
    ensure_row(conn, connection.id, now)
    key = current_key(connection, now)
    stopped = conn.execute(update(sync_state).where(sync_state.c.connection_id == connection.id,
                                                    sync_state.c.calls_stopped_at.is_(None))
                           .values(calls_stopped_at=now, calls_stopped_reason=reason[:500], stopped_key=key,
                                   updated_at=now)).rowcount
    if stopped:
        audit.append(conn, ctx, "engine.calls_stopped", "connection", connection.id,
                     after={"api_key": key, "reason": reason[:500]}, reason="authentication failure")


def resume_if_rotated(ctx: ServiceContext, connection: ConnectionInfo, state: SyncInfo) -> bool:
    """Start a stopped connection's calls again when its API key reference has changed since
    the stop (audited). True when it did."""
    if state.calls_stopped_at is None:
        return False
    now = ctx.clock()
    key = current_key(connection, now)
    if key is None or key == state.stopped_key:
        return False
    with writing(ctx.engine) as conn:
        resumed = conn.execute(update(sync_state).where(sync_state.c.connection_id == connection.id,
                                                        sync_state.c.calls_stopped_at.is_not(None))
                               .values(calls_stopped_at=None, calls_stopped_reason=None, stopped_key=None,
                                       updated_at=now)).rowcount
        if resumed:
            audit.append(conn, ctx, "engine.calls_resumed", "connection", connection.id,
                         before={"api_key": state.stopped_key}, after={"api_key": key},
                         reason="the connection's API key reference changed")
    return bool(resumed)


_ANY = object()  # save_poll's `read_from` when the caller does not say


def save_poll(ctx: ServiceContext, connection_id: str, cursor: str | None, *, newest_event_at: datetime | None,
              polled_at: datetime, read_from: object = _ANY) -> bool:
    """Where polling got to: the cursor (kept when None: nothing new), when, and the lag (how
    old the newest event was when it was polled). `read_from`: the cursor the poll started
    from; when the stored one is no longer it (`connection rewind` moved it meanwhile), nothing
    is saved and False comes back: the rewind wins, the next poll starts from it."""
    values: dict[str, Any] = {"last_poll_at": polled_at, "updated_at": polled_at}
    if cursor is not None:
        values["cursor"] = cursor
    if newest_event_at is not None:
        values["last_event_at"] = newest_event_at
        values["lag_s"] = max(0, int((polled_at - newest_event_at).total_seconds()))
    elif cursor is None:
        values["lag_s"] = 0  # caught up: nothing was waiting
    with writing(ctx.engine) as conn:
        ensure_row(conn, connection_id, polled_at)
        query = update(sync_state).where(sync_state.c.connection_id == connection_id)
        if read_from is not _ANY:
            query = query.where(sync_state.c.cursor.is_(None) if read_from is None
                                else sync_state.c.cursor == read_from)
        return bool(conn.execute(query.values(**values)).rowcount)


def set_cursor(conn: Connection, connection_id: str, cursor: str | None, now: datetime) -> None:
    """Put the polling cursor at `cursor` (None: from the start), in the caller's transaction."""
    ensure_row(conn, connection_id, now)
    conn.execute(update(sync_state).where(sync_state.c.connection_id == connection_id)
                 .values(cursor=cursor, updated_at=now))


def request_reconcile(ctx: ServiceContext, name: str, reason: str) -> datetime:
    """Ask the running engines to reconcile connection `name` now (`reconcile --now`): a mark in
    the store that the first engine to see it takes (within a second or so), audited."""
    access.require(ctx, "pause")  # a control action, like pause and resume
    if not reason.strip():
        raise InvalidArgument("a reason is required: it is kept in the audit trail")
    now = ctx.clock()
    with writing(ctx.engine) as conn:
        info = get_connection_in(conn, name)
        ensure_row(conn, info.id, now)
        conn.execute(update(sync_state).where(sync_state.c.connection_id == info.id)
                     .values(reconcile_requested_at=now, updated_at=now))
        audit.append(conn, ctx, "connection.reconcile_requested", "connection", info.id, reason=reason)
    return now


def take_reconcile_request(ctx: ServiceContext, connection_id: str, requested_at: datetime) -> bool:
    """Claim the pending request seen at `requested_at` (one engine wins; a newer request stays)."""
    with writing(ctx.engine) as conn:
        taken = conn.execute(update(sync_state).where(sync_state.c.connection_id == connection_id,
                                                      sync_state.c.reconcile_requested_at == requested_at)
                             .values(reconcile_requested_at=None, updated_at=ctx.clock())).rowcount
    return bool(taken)
