"""Connections: one provider for one tenant in one environment; every change is versioned
and audited."""

from __future__ import annotations

import copy
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection as DbConnection, select, update

from adapters import UnknownProvider
from store.database import reading, writing
from store.models import Connection, ConnectionVersion
from workbench.domain.redaction import redact, redact_text

from . import access, audit
from .context import ServiceContext
from .errors import InvalidArgument, NotFound, ServiceError

if TYPE_CHECKING:
    from .payload_crypto import Vaults

connections = Connection.__table__
versions = ConnectionVersion.__table__

ENVIRONMENTS = ("sandbox", "live")
# Names go into commands, file names and logs: short, and nothing a shell or a terminal reads.
NAME_RULE = "1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"
VALID_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


@dataclass(frozen=True)
class ConnectionInfo:
    id: str
    name: str
    provider: str
    environment: str
    paused: bool
    version: int
    settings: dict[str, Any]

    def snapshot(self) -> dict[str, Any]:
        return {"name": self.name, "provider": self.provider, "environment": self.environment,
                "paused": self.paused, "settings": self.settings}


def _info(row: Any) -> ConnectionInfo:
    return ConnectionInfo(row.id, row.name, row.provider, row.environment, row.paused, row.version, row.settings)


# No rate_limit: a new connection is paced at its adapter's declared rate (services/pace) until
# someone sets one; a stored default would override what the adapter knows of its provider.
DEFAULT_SETTINGS: dict[str, Any] = {"sync": {"interval_s": 300}}


def add_connection(ctx: ServiceContext, name: str, provider: str, environment: str = "sandbox",
                   reason: str | None = None, settings: dict[str, Any] | None = None) -> ConnectionInfo:
    """A new connection at version 1: DEFAULT_SETTINGS, with the top-level keys of `settings`
    (already validated: payload settings, or a whole imported configuration) in their place."""
    access.require(ctx, "config")
    if not VALID_NAME.fullmatch(name):
        shown = repr(name) if len(name) <= 64 else repr(name[:64]) + "..."  # repr: control characters escaped
        raise InvalidArgument(f"connection name {shown} is not allowed: use {NAME_RULE}")
    if environment not in ENVIRONMENTS:
        raise ServiceError(f"environment must be one of {', '.join(ENVIRONMENTS)}, not {environment!r}")
    try:
        ctx.adapters.get(provider)
    except UnknownProvider as exc:
        raise ServiceError(str(exc)) from None
    now = ctx.clock()
    info = ConnectionInfo(ctx.ids.new("con"), name, provider, environment, False, 1,
                          copy.deepcopy({**DEFAULT_SETTINGS, **(settings or {})}))
    with writing(ctx.engine) as conn:
        if conn.execute(select(connections.c.id).where(connections.c.name == name)).first():
            raise ServiceError(f"a connection named {name!r} already exists")
        conn.execute(connections.insert().values(
            id=info.id, name=name, provider=provider, environment=environment, paused=False,
            version=1, settings=info.settings, created_at=now, updated_at=now))
        _record_version(conn, ctx, info, reason or "created")
        audit.append(conn, ctx, "connection.add", "connection", info.id, after=info.snapshot(), reason=reason)
    return info


def set_paused(ctx: ServiceContext, name: str, paused: bool, reason: str | None = None,
               vaults: Vaults | None = None) -> ConnectionInfo:
    return change_paused(ctx, name, paused, reason, vaults).connection


@dataclass(frozen=True)
class PauseChange:
    connection: ConnectionInfo
    applied: Counter[str]  # on resume: the held deliveries applied, per verdict


def change_paused(ctx: ServiceContext, name: str, paused: bool, reason: str | None = None,
                  vaults: Vaults | None = None) -> PauseChange:
    """Pause or resume a connection. Resuming applies the deliveries ingested while it was
    paused (held), in the same transaction, audited; resuming an active connection applies any
    still held (an ingest that began before the resume holds its deliveries to the end).
    Held deliveries of a connection that encrypts its payloads need its vault in `vaults`."""
    access.require(ctx, "pause")
    with writing(ctx.engine) as conn:
        before = _get(conn, name, for_update=True)
        after = before
        if before.paused != paused:
            after = ConnectionInfo(before.id, before.name, before.provider, before.environment, paused,
                                   before.version + 1, before.settings)
            conn.execute(update(connections).where(connections.c.id == before.id).values(
                paused=paused, version=after.version, updated_at=ctx.clock()))
            _record_version(conn, ctx, after, reason)
            audit.append(conn, ctx, "connection.pause" if paused else "connection.resume", "connection",
                         before.id, before=before.snapshot(), after=after.snapshot(), reason=reason)
        applied: Counter[str] = Counter()
        if not paused:
            from .held import apply_held  # held -> ingest -> connections: imported when needed

            applied = apply_held(conn, ctx, after, vaults or {})
            if applied:
                audit.append(conn, ctx, "connection.apply_held", "connection", before.id,
                             after={"counts": dict(applied)}, reason=reason)
    return PauseChange(after, applied)


def update_settings(ctx: ServiceContext, name: str, change: Callable[[dict[str, Any]], dict[str, Any]],
                    action: str, reason: str | None = None) -> ConnectionInfo:
    """Change a connection's settings as one new version, with actor, time and reason, and an
    audit entry `action` (e.g. "connection.set"). `change` gets a deep copy of the current
    settings and returns the new ones; it may raise ServiceError to refuse (nothing written).
    No change, no new version."""
    with writing(ctx.engine) as conn:
        before = _get(conn, name, for_update=True)
        settings = change(copy.deepcopy(before.settings))
        if settings == before.settings:
            return before
        after = replace(before, version=before.version + 1, settings=settings)
        conn.execute(update(connections).where(connections.c.id == before.id).values(
            settings=settings, version=after.version, updated_at=ctx.clock()))
        _record_version(conn, ctx, after, reason)
        audit.append(conn, ctx, action, "connection", before.id,
                     before=before.snapshot(), after=after.snapshot(), reason=reason)
    return after


def _record_version(conn: DbConnection, ctx: ServiceContext, info: ConnectionInfo, reason: str | None) -> None:
    conn.execute(versions.insert().values(
        connection_id=info.id, version=info.version, snapshot=info.snapshot(), actor=ctx.actor,
        reason=reason, created_at=ctx.clock()))


def _get(conn: DbConnection, name: str, for_update: bool = False) -> ConnectionInfo:
    query = select(connections).where(connections.c.name == name)
    # FOR UPDATE: two concurrent changes queue up instead of both writing version n+1.
    row = conn.execute(query.with_for_update() if for_update else query).first()
    if row is None:
        raise NotFound(f"unknown connection {name!r}")
    return _info(row)


def get_connection(ctx: ServiceContext, name: str) -> ConnectionInfo:
    access.require(ctx, "read")
    with reading(ctx.engine) as conn:
        return _get(conn, name)


def list_connections(ctx: ServiceContext) -> list[ConnectionInfo]:
    access.require(ctx, "read")
    with reading(ctx.engine) as conn:
        return [_info(row) for row in conn.execute(select(connections).order_by(connections.c.name))]


def history(ctx: ServiceContext, name: str) -> list[dict[str, Any]]:
    access.require(ctx, "read")
    with reading(ctx.engine) as conn:
        info = _get(conn, name)
        rows = conn.execute(select(versions).where(versions.c.connection_id == info.id).order_by(versions.c.version))
        return [{"version": r.version, "snapshot": redact(r.snapshot), "actor": r.actor,
                 "reason": redact_text(r.reason) if r.reason else r.reason,
                 "at": r.created_at.isoformat()} for r in rows]
