"""Retention of raw bodies: each connection keeps them `retention.raw_days` days (by receipt
time; absent: forever). Purging empties the body and stamps `body_purged_at`; the delivery's
IDs, hash, headers, verdicts, and the record's transitions and timeline stay. Held deliveries
(their connection paused) are never purged: resuming still has to apply them.

Purged in bounded batches (one short write transaction each, so ingest and the TUI keep
going on a big store), with one audit entry per connection that lost bodies. The engine
(issue 11) runs the same `run_retention` on a schedule.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, func, select, update

from store.database import reading, writing
from store.models import Delivery
from workbench.domain.canonical import Verdict

from . import access, audit
from .connections import ConnectionInfo, list_connections
from .context import ServiceContext
from .payload_settings import raw_days

deliveries = Delivery.__table__

BATCH = 2000  # bodies emptied per transaction


@dataclass(frozen=True)
class ConnectionPurge:
    connection: str
    raw_days: int
    cutoff: datetime  # bodies received before this go
    bodies: int  # purged, or in a dry run, that would be

    def as_json(self) -> dict[str, Any]:
        return {"connection": self.connection, "raw_days": self.raw_days, "cutoff": self.cutoff.isoformat(),
                "bodies": self.bodies}


@dataclass
class RetentionReport:
    dry_run: bool
    connections: list[ConnectionPurge] = field(default_factory=list)

    @property
    def bodies(self) -> int:
        return sum(c.bodies for c in self.connections)


def _due(connection: ConnectionInfo, cutoff: datetime) -> ColumnElement[bool]:
    return and_(deliveries.c.connection_id == connection.id, deliveries.c.received_at < cutoff,
                deliveries.c.body_purged_at.is_(None), deliveries.c.verdict != str(Verdict.HELD))


def run_retention(ctx: ServiceContext, *, dry_run: bool = False,
                  progress: Callable[[str, int], None] | None = None) -> RetentionReport:
    """Purge (or with `dry_run`, count) the raw bodies each connection keeps no longer.
    `progress(connection name, bodies so far)` after each batch. Only connections with a
    retention appear in the report."""
    access.require(ctx, "retention")
    now = ctx.clock()
    report = RetentionReport(dry_run)
    for connection in list_connections(ctx):
        days = raw_days(connection.settings)
        if days is None:
            continue
        cutoff = now - timedelta(days=days)
        if dry_run:
            with reading(ctx.engine) as conn:
                count = conn.execute(select(func.count()).select_from(deliveries)
                                     .where(_due(connection, cutoff))).scalar_one()
        else:
            count = _purge(ctx, connection, cutoff, now, progress)
            if count:
                with writing(ctx.engine) as conn:
                    audit.append(conn, ctx, "retention.purge", "connection", connection.id,
                                 after={"bodies": count, "raw_days": days, "cutoff": cutoff.isoformat()})
        report.connections.append(ConnectionPurge(connection.name, days, cutoff, count))
    return report


def _purge(ctx: ServiceContext, connection: ConnectionInfo, cutoff: datetime, now: datetime,
           progress: Callable[[str, int], None] | None) -> int:
    purged = 0
    # Oldest first, by the (connection, received_at) index; each batch re-checks the condition
    # in its UPDATE, so a delivery changed meanwhile (applied from held) is left alone.
    due = (select(deliveries.c.id).where(_due(connection, cutoff))
           .order_by(deliveries.c.received_at).limit(BATCH))
    while True:
        with writing(ctx.engine) as conn:
            ids = list(conn.execute(due).scalars())
            if not ids:
                return purged
            purged += conn.execute(update(deliveries).where(deliveries.c.id.in_(ids), _due(connection, cutoff))
                                   .values(body=b"", body_key_version=None, body_purged_at=now)).rowcount
        if progress is not None:
            progress(connection.name, purged)
