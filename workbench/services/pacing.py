"""Paced dispatch: a connection's outbound calls spread at its rate (services/pace.outbound_rate),
shared by every engine on the store. The pace is a GCRA row per connection: taking n calls moves
its theoretical arrival time `tat` to max(tat, now - BURST_S) + n / rate under the row's lock
(SELECT ... FOR UPDATE, then UPDATE), and the n calls go out at the slots that leaves them, one every 1 / rate
seconds. Two engines taking calls at once queue on the row, so between them they keep the one
rate. Slots an engine missed (it was busy writing results) may be made up for BURST_S seconds'
worth, no more: over any stretch of time the calls stay within rate x (stretch + BURST_S)."""

from __future__ import annotations

import math

from sqlalchemy import Connection, select, update

from store.models import Pace

from .leases import insert_ignoring_conflict

pace = Pace.__table__

BURST_S = 0.5  # the burst tolerance: up to rate x 0.5 s of missed slots may be made up at once
HORIZON_S = 1.0  # slots are handed out at most this far ahead; the rest wait in the outbox


def take(conn: Connection, connection_id: str, rate_per_s: float, n: int, now_s: float,
         burst_s: float = BURST_S, horizon_s: float = HORIZON_S) -> tuple[list[float], float]:
    """Reserve up to `n` calls for `connection_id` at `rate_per_s` in the caller's transaction:
    the epoch seconds at which each may go (only slots within `horizon_s` of now: a caller never
    holds a claimed command long, and stops promptly), and the seconds until the next free slot
    for the ones not reserved."""
    if n <= 0:
        return [], 0.0
    query = select(pace.c.tat).where(pace.c.connection_id == connection_id)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()  # engines taking slots at once queue here (SQLite: one writer)
    tat_now = conn.execute(query).scalar()
    if tat_now is None:  # the connection's first call: no burst at first
        insert_ignoring_conflict(conn, pace, {"connection_id": connection_id, "tat": now_s})
        tat_now = conn.execute(query).scalar_one()
    step = 1.0 / rate_per_s
    start = max(float(tat_now), now_s - burst_s)
    fits = max(0, min(n, math.floor((now_s + horizon_s - start) / step) + 1))
    tat = start + fits * step
    if fits:
        conn.execute(update(pace).where(pace.c.connection_id == connection_id).values(tat=tat))
    return [start + i * step for i in range(fits)], max(0.0, tat - now_s)


def drain_s(queued: int, rate_per_s: float | None) -> float | None:
    """Seconds a backlog of `queued` commands takes at the connection's pace (None: no pace)."""
    if rate_per_s is None or rate_per_s <= 0:
        return None
    return round(queued / rate_per_s, 1)
