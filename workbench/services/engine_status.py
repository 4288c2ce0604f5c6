"""What the engines are doing, read from the store: live engines and their heartbeats, each
connection's polling (cursor, last poll, lag), paused or stopped calls and why, commands by
status, open failures by category and the leases. `workbench engine status [--json]`, the
engine's Prometheus gauges and the Providers screen all read it here."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from adapters.registry import UnknownProvider
from store.database import reading
from store.models import Breaker, Command, Connection, Failure, Lease, SyncState
from workbench.domain.taxonomy import CLOSED_STATES

from . import access, processes, sync_schedule
from .connections import _info
from .context import ServiceContext
from .pace import outbound_rate
from .pacing import drain_s

commands = Command.__table__
connections = Connection.__table__
failures = Failure.__table__
leases_table = Lease.__table__
sync_state = SyncState.__table__
breakers_table = Breaker.__table__


@dataclass(frozen=True)
class EngineRow:
    id: str
    host: str
    pid: int
    started_at: str
    seen_at: str
    heartbeat_age_s: float
    active: bool | None  # SQLite: holds the store lease (False: standing by); None on PostgreSQL


@dataclass(frozen=True)
class ConnectionRow:
    name: str
    provider: str
    paused: bool
    calls_stopped: bool
    stopped_reason: str | None
    stopped_key: str | None
    cursor: str | None
    last_poll_at: str | None
    lag_s: int | None
    pending_commands: int
    polled_by: str | None
    # issue 12: the outbound pace (requests/s; None: unpaced), the backlog's expected drain
    # time at it, the circuit breaker (closed, open, half_open) and why it opened
    rate_per_s: float | None = None
    drain_s: float | None = None
    breaker: str = "closed"
    breaker_reason: str | None = None
    failing_since: str | None = None
    # The schedule (services/sync_schedule): None where the connection is not polled or not
    # reconciled on a schedule; "due" times in the past mean as soon as an engine looks.
    poll_interval_s: float | None = None
    next_poll_at: str | None = None
    reconcile_interval_s: float | None = None
    last_reconcile_at: str | None = None
    next_reconcile_at: str | None = None


@dataclass(frozen=True)
class LeaseRow:
    resource: str
    holder: str
    expires_in_s: float
    takeovers: int


@dataclass
class EngineStatus:
    at: str
    engines: list[EngineRow] = field(default_factory=list)
    connections: list[ConnectionRow] = field(default_factory=list)
    commands: dict[str, int] = field(default_factory=dict)
    open_failures: dict[str, int] = field(default_factory=dict)
    leases: list[LeaseRow] = field(default_factory=list)
    lease_takeovers: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _lists_events(ctx: ServiceContext, provider: str) -> bool:
    """Whether the engine polls this provider (an unknown provider: it does not)."""
    try:
        return ctx.adapters.get(provider).capabilities.event_listing
    except UnknownProvider:
        return False


def read_status(ctx: ServiceContext) -> EngineStatus:
    access.require(ctx, "read")
    now = ctx.clock()
    status = EngineStatus(at=now.isoformat())
    with reading(ctx.engine) as conn:
        lease_rows = conn.execute(select(leases_table).order_by(leases_table.c.resource)).all()
        store_holder = next((row.holder for row in lease_rows
                             if row.resource == "engine:store" and row.expires_at > now), None)
        pollers = {row.resource.removeprefix("poll:"): row.holder for row in lease_rows
                   if row.resource.startswith("poll:") and row.expires_at > now}
        pending: dict[str, int] = dict(conn.execute(select(commands.c.connection_id, func.count())
                                    .where(commands.c.status.in_(("pending", "dispatching")))
                                    .group_by(commands.c.connection_id)).all())
        states = {row.connection_id: row for row in conn.execute(select(sync_state))}
        breakers = {row.connection_id: row for row in conn.execute(select(breakers_table))}
        reconciled = sync_schedule.last_full_runs_in(conn)
        for row in conn.execute(select(connections).order_by(connections.c.name)):
            state = states.get(row.id)
            stopped = state is not None and state.calls_stopped_at is not None
            queued = int(pending.get(row.id, 0))
            rate = outbound_rate(_info(row), ctx.adapters)
            breaker = breakers.get(row.id)
            last_poll = state.last_poll_at if state else None
            poll_every = sync_schedule.poll_interval_s(row.settings) if _lists_events(ctx, row.provider) else 0.0
            reconcile_every = sync_schedule.reconcile_interval_s(row.settings)
            status.connections.append(ConnectionRow(
                row.name, row.provider, row.paused, stopped, state.calls_stopped_reason if state else None,
                state.stopped_key if state else None, state.cursor if state else None,
                _iso(last_poll), state.lag_s if state else None,
                queued, pollers.get(row.id), rate, drain_s(queued, rate),
                breaker.state if breaker is not None else "closed", breaker.reason if breaker is not None else None,
                _iso(breaker.failing_since) if breaker is not None else None,
                poll_every or None, _iso(sync_schedule.next_due(last_poll, poll_every, now)),
                reconcile_every or None, _iso(reconciled.get(row.id)),
                _iso(sync_schedule.next_due(reconciled.get(row.id), reconcile_every, now))))
        status.commands = {name: int(count) for name, count in conn.execute(
            select(commands.c.status, func.count()).group_by(commands.c.status)).all()}
        status.open_failures = {category: int(count) for category, count in conn.execute(
            select(failures.c.category, func.count())
            .where(failures.c.state.not_in([str(s) for s in CLOSED_STATES]))
            .group_by(failures.c.category)).all()}
    status.leases = [LeaseRow(row.resource, row.holder, round((row.expires_at - now).total_seconds(), 1),
                              row.takeovers) for row in lease_rows]
    status.lease_takeovers = sum(row.takeovers for row in lease_rows)
    sqlite = ctx.engine.dialect.name == "sqlite"
    for process in processes.live(ctx, "engine", now):
        status.engines.append(EngineRow(
            process.id, process.host, process.pid, process.started_at.isoformat(), process.seen_at.isoformat(),
            round((now - process.seen_at).total_seconds(), 1), (process.id == store_holder) if sqlite else None))
    return status
