"""Which receivers and engines are running, as they announce themselves in the store: each
process writes one row when it starts, beats it every few seconds and marks it stopped when
it stops cleanly. A process that died keeps its row with an old heartbeat, so "live" means
"seen lately and not stopped". The Providers screen shows the live receivers' URLs; the
engine (issue 11) beats the same way."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy import select, update

from store.database import reading, writing
from store.models import Process

from . import access
from .context import ServiceContext
from .errors import InvalidArgument

processes = Process.__table__

Kind = Literal["receiver", "engine"]
KINDS: tuple[Kind, ...] = ("receiver", "engine")
LIVE_WITHIN_S = 30  # six missed heartbeats (every 5 s) and a process no longer counts as running


@dataclass(frozen=True, slots=True)
class ProcessInfo:
    id: str
    kind: str
    host: str
    pid: int
    address: str | None
    started_at: datetime
    seen_at: datetime
    stopped_at: datetime | None


def _check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise InvalidArgument(f"unknown process kind {kind[:40]!r}: one of {', '.join(KINDS)}")
    return kind


def announce(ctx: ServiceContext, kind: str, address: str | None) -> str:
    """Record this process as running (`address`: a receiver's base URL); its ID, to beat with."""
    access.require(ctx, "ingest")  # only processes that write deliveries announce themselves
    now = ctx.clock()
    process_id = ctx.ids.new("prc")
    with writing(ctx.engine) as conn:
        conn.execute(processes.insert().values(
            id=process_id, kind=_check_kind(kind), host=socket.gethostname()[:255], pid=os.getpid(),
            address=address[:255] if address else None, started_at=now, seen_at=now, stopped_at=None))
    return process_id


def beat(ctx: ServiceContext, process_id: str) -> None:
    """Still running: the heartbeat moves to now."""
    with writing(ctx.engine) as conn:
        conn.execute(update(processes).where(processes.c.id == process_id).values(seen_at=ctx.clock()))


def stopped(ctx: ServiceContext, process_id: str) -> None:
    """Stopped cleanly: no longer live, whatever its last heartbeat."""
    now = ctx.clock()
    with writing(ctx.engine) as conn:
        conn.execute(update(processes).where(processes.c.id == process_id).values(seen_at=now, stopped_at=now))


def live(ctx: ServiceContext, kind: str, now: datetime, within_s: int = LIVE_WITHIN_S) -> list[ProcessInfo]:
    """The processes of `kind` seen within `within_s` of `now` and not stopped, newest first
    (an index range on (kind, seen_at): the dead ones' rows are never read)."""
    access.require(ctx, "read")
    since = now - timedelta(seconds=within_s)
    with reading(ctx.engine) as conn:
        rows = conn.execute(select(processes)
                            .where(processes.c.kind == _check_kind(kind), processes.c.seen_at >= since,
                                   processes.c.stopped_at.is_(None))
                            .order_by(processes.c.started_at.desc(), processes.c.id)).all()
    return [ProcessInfo(row.id, row.kind, row.host, row.pid, row.address, row.started_at, row.seen_at,
                        row.stopped_at) for row in rows]
