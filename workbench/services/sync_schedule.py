"""When the engine polls and reconciles a connection, read from its settings and the store.

The engine keeps its jobs in memory (APScheduler 3), but what they are due to do is derived
from the store alone: a poll is due `sync.interval_s` after the last poll, a scheduled
reconciliation `sync.reconcile_interval_s` after the last full run (any engine's, scheduled or
an operator's). So every engine, `engine status` and the Providers screen agree on "next".
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, func, select

from store.database import reading
from store.models import ReconcileRun

from .context import ServiceContext

runs = ReconcileRun.__table__


def _sync(settings: Mapping[str, Any]) -> Mapping[str, Any]:
    sync = settings.get("sync")
    return sync if isinstance(sync, dict) else {}


def _seconds(value: object) -> float:
    return float(value) if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0.0


def poll_interval_s(settings: Mapping[str, Any]) -> float:
    """Seconds between polls (settings sync.interval_s; 0: not polled)."""
    return _seconds(_sync(settings).get("interval_s"))


def reconcile_interval_s(settings: Mapping[str, Any]) -> float:
    """Seconds between scheduled reconciliations (sync.reconcile_interval_s; 0: on demand only)."""
    return _seconds(_sync(settings).get("reconcile_interval_s"))


def last_full_runs(ctx: ServiceContext, connection_ids: list[str]) -> dict[str, datetime]:
    """`last_full_runs_in` in a transaction of its own (for the engine)."""
    with reading(ctx.engine) as conn:
        return last_full_runs_in(conn, connection_ids)


def last_full_runs_in(conn: Connection, connection_ids: list[str] | None = None) -> dict[str, datetime]:
    """When each connection's newest full reconciliation (every record, not a dry run) started:
    what its next scheduled one counts from. One grouped query."""
    query = (select(runs.c.connection_id, func.max(runs.c.started_at))
             .where(runs.c.record_id.is_(None), runs.c.dry_run.is_(False), runs.c.started_at.is_not(None))
             .group_by(runs.c.connection_id))
    if connection_ids is not None:
        query = query.where(runs.c.connection_id.in_(connection_ids))
    return {connection_id: started for connection_id, started in conn.execute(query).all()}


def next_due(last: datetime | None, interval_s: float, now: datetime) -> datetime | None:
    """When work done every `interval_s` (0: never) and last done at `last` is due next: now
    when it never ran or is overdue."""
    if not interval_s:
        return None
    if last is None:
        return now
    return max(now, last + timedelta(seconds=interval_s))
