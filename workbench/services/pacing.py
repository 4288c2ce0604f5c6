"""Paced dispatch: a connection's outbound calls spread at its rate (services/pace.outbound_rate),
shared by every engine on the store. The pace is a GCRA row per connection: taking n calls moves
its theoretical arrival time `tat` to max(tat, now - BURST_S) + n / rate in one atomic
UPDATE ... RETURNING, and the n calls go out at the slots that leaves them, one every 1 / rate
seconds. Two engines taking calls at once queue on the row, so between them they keep the one
rate. Slots an engine missed (it was busy writing results) may be made up for BURST_S seconds'
worth, no more: over any stretch of time the calls stay within rate x (stretch + BURST_S)."""

from __future__ import annotations

from sqlalchemy import Connection, func, update

from store.models import Pace

from .leases import insert_ignoring_conflict

pace = Pace.__table__

BURST_S = 0.5  # the burst tolerance: up to rate x 0.5 s of missed slots may be made up at once


def take(conn: Connection, connection_id: str, rate_per_s: float, n: int, now_s: float,
         burst_s: float = BURST_S) -> list[float]:
    """Reserve `n` calls for `connection_id` at `rate_per_s` in the caller's transaction; the
    epoch seconds at which each may go (the first may be now, or later behind other calls)."""
    if n <= 0:
        return []
    insert_ignoring_conflict(conn, pace, {"connection_id": connection_id, "tat": now_s})  # no burst at first
    later = func.greatest if conn.dialect.name == "postgresql" else func.max  # SQLite's two-argument max
    step = 1.0 / rate_per_s
    tat = float(conn.execute(update(pace).where(pace.c.connection_id == connection_id)
                             .values(tat=later(pace.c.tat, now_s - burst_s) + n * step)
                             .returning(pace.c.tat)).scalar_one())
    start = tat - n * step
    return [start + i * step for i in range(n)]


def drain_s(queued: int, rate_per_s: float | None) -> float | None:
    """Seconds a backlog of `queued` commands takes at the connection's pace (None: no pace)."""
    if rate_per_s is None or rate_per_s <= 0:
        return None
    return round(queued / rate_per_s, 1)
