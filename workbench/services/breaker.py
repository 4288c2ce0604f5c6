"""Each connection's circuit breaker in the store (table `breakers`), so every engine on a
PostgreSQL store obeys the same one, and the auto-pause of a connection failing too long.

The dispatcher asks `CallGate.admit` before it sends a claimed batch (breaker and pace decide
which commands go now, at which moment, and how long the others wait: they are released
unsent, so nothing is dropped) and tells `CallGate.observed` the batch's outcomes after. Every
change of state is an audit entry; opening and closing are alerts (`alert_signals.emit`, rule
"breaker.opened", the close `cleared=True`). `watch` (the engine's control loop) gives the
auto-pause warnings at 50% and 90% of `auto_pause_after_s` and pauses at 100%.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select, update

from store.database import reading, writing
from store.models import Breaker as BreakerTable
from workbench.domain.breaker import (
    Breaker,
    BreakerPolicy,
    BreakerState,
    Change,
    may_call,
    observe,
    start_probe,
    wait_s,
    warning_due,
)
from workbench.domain.taxonomy import Category

from . import alert_signals, audit, connections, pacing
from .alert_signals import Signal
from .connections import ConnectionInfo
from .context import ServiceContext
from .leases import insert_ignoring_conflict
from .pace import outbound_rate

log = logging.getLogger(__name__)

breakers = BreakerTable.__table__

OPENED_RULE = "breaker.opened"
WARNING_RULE = "autopause.warning"
PAUSED_RULE = "autopause.paused"
HALF_OPEN_WAIT_S = 1.0  # a probe is in flight: the connection's other commands look again this soon


def policy_for(connection: ConnectionInfo) -> BreakerPolicy:
    """The connection's `breaker` settings over the defaults (domain.breaker.BreakerPolicy)."""
    section = connection.settings.get("breaker")
    if not isinstance(section, dict):
        return BreakerPolicy()
    default = BreakerPolicy()
    rates = section.get("rates")
    return BreakerPolicy(
        window_s=float(section.get("window_s", default.window_s)),
        min_calls=int(section.get("min_calls", default.min_calls)),
        rates={**default.rates, **rates} if isinstance(rates, dict) else default.rates,
        open_s=float(section.get("open_s", default.open_s)),
        auto_pause_after_s=(float(section["auto_pause_after_s"]) if section.get("auto_pause_after_s") is not None
                            else None))


def _from_row(row: Any) -> Breaker:
    return Breaker(BreakerState(row.state), row.window_started_at, row.calls, dict(row.failures or {}),
                   row.opened_at, row.probe_at, row.failing_since, row.warned, row.reason)


def _values(breaker: Breaker, now: datetime) -> dict[str, Any]:
    return {"state": str(breaker.state), "window_started_at": breaker.window_started_at, "calls": breaker.calls,
            "failures": breaker.failures, "opened_at": breaker.opened_at, "probe_at": breaker.probe_at,
            "failing_since": breaker.failing_since, "warned": breaker.warned, "reason": breaker.reason,
            "updated_at": now}


def load(conn: Connection, connection_id: str, *, for_update: bool = False) -> Breaker:
    query = select(breakers).where(breakers.c.connection_id == connection_id)
    if for_update and conn.dialect.name == "postgresql":
        query = query.with_for_update()
    row = conn.execute(query).first()
    return _from_row(row) if row is not None else Breaker()


def _save(conn: Connection, connection_id: str, breaker: Breaker, now: datetime) -> None:
    values = _values(breaker, now)
    if not conn.execute(update(breakers).where(breakers.c.connection_id == connection_id).values(**values)).rowcount:
        if not insert_ignoring_conflict(conn, breakers, {"connection_id": connection_id, **values}):
            conn.execute(update(breakers).where(breakers.c.connection_id == connection_id).values(**values))


def states(ctx: ServiceContext) -> dict[str, Breaker]:
    """Every connection's breaker that is not in its initial state, by connection ID."""
    with reading(ctx.engine) as conn:
        return {row.connection_id: _from_row(row) for row in conn.execute(select(breakers))}


def _announce(conn: Connection, ctx: ServiceContext, connection: ConnectionInfo, change: Change,
              before: Breaker, after: Breaker, policy: BreakerPolicy) -> None:
    """The audit entry of a change of state, and its alert: opening raises `breaker.opened`, a
    half-open probe and a reopening count on that same alert (alerting keeps one open per rule
    and connection, and repeats a notice no more often than the rule's interval), closing
    clears it with a recovery notice."""
    audit.append(conn, ctx, f"engine.breaker_{change}", "connection", connection.id,
                 before={"state": str(before.state)}, after={"state": str(after.state), "reason": after.reason},
                 reason=after.reason or f"breaker {after.state}")
    log.info("breaker of %s %s: %s", connection.name, change, after.reason or after.state)
    if change == "opened":
        alert_signals.emit(conn, ctx, Signal(
            OPENED_RULE, connection.id, "critical",
            f"{connection.name}: circuit breaker opened ({after.reason}); calls stop for "
            f"{policy.open_s:g} s, then one probe"))
    elif change == "half_opened":
        alert_signals.emit(conn, ctx, Signal(
            OPENED_RULE, connection.id, "critical",
            f"{connection.name}: circuit breaker half-open: one probe call decides whether it closes"))
    elif change == "reopened":  # the same alert, counted again (alerting keeps one open per rule)
        alert_signals.emit(conn, ctx, Signal(
            OPENED_RULE, connection.id, "critical",
            f"{connection.name}: circuit breaker open again ({after.reason}); next probe in {policy.open_s:g} s"))
    elif change == "closed":
        alert_signals.emit(conn, ctx, Signal(
            OPENED_RULE, connection.id, "info", f"{connection.name}: circuit breaker closed: a probe call succeeded",
            cleared=True))


@dataclass(frozen=True)
class Admit:
    at: float | None  # epoch seconds when this command may be sent; None: not now
    wait_s: float = 0.0  # not now: release it for this long


Sleep = Callable[[float], None]


class CallGate:
    """The breaker and the pace between a claimed batch and the provider (see the module)."""

    def __init__(self, ctx: ServiceContext, *, wall: Callable[[], float] = time.time, sleep: Sleep = time.sleep) -> None:
        self.ctx = ctx
        self._wall = wall
        self._sleep = sleep
        # Connections whose breaker this gate saw open since it last admitted their commands:
        # the rest of a batch already admitted stays unsent (checked just before each call).
        self._opened: set[str] = set()

    def admit(self, chunk: Sequence[ConnectionInfo]) -> list[Admit]:
        """For each command of a batch (given by its connection, in order): when it may go."""
        answers: list[Admit | None] = [None] * len(chunk)
        by_connection: dict[str, list[int]] = {}
        for index, connection in enumerate(chunk):
            by_connection.setdefault(connection.id, []).append(index)
        now = self.ctx.clock()
        with writing(self.ctx.engine) as conn:
            for positions in by_connection.values():
                connection = chunk[positions[0]]
                allowed = self._breaker_allows(conn, connection, len(positions), now)
                if allowed:
                    self._opened.discard(connection.id)
                rate = outbound_rate(connection, self.ctx.adapters)
                slots, paced_wait_s = (pacing.take(conn, connection.id, rate, allowed, self._wall()) if rate
                                       else ([0.0] * allowed, 0.0))
                for number, index in enumerate(positions):
                    if number < len(slots):
                        answers[index] = Admit(slots[number])
                    elif number < allowed:  # the breaker lets it go, the pace not yet
                        answers[index] = Admit(None, paced_wait_s)
                    else:
                        answers[index] = Admit(None, self._waiting_s(conn, connection, now))
        return [answer if answer is not None else Admit(None, HALF_OPEN_WAIT_S) for answer in answers]

    def _breaker_allows(self, conn: Connection, connection: ConnectionInfo, wanted: int, now: datetime) -> int:
        breaker = load(conn, connection.id, for_update=True)
        decision = may_call(breaker, now)
        if decision == "call":
            return wanted
        if decision == "wait":
            return 0
        policy = policy_for(connection)
        probing = start_probe(breaker, policy, now)
        _save(conn, connection.id, probing.breaker, now)
        if probing.change is not None:
            _announce(conn, self.ctx, connection, probing.change, breaker, probing.breaker, policy)
        return 1

    @staticmethod
    def _waiting_s(conn: Connection, connection: ConnectionInfo, now: datetime) -> float:
        breaker = load(conn, connection.id)
        if breaker.state is BreakerState.HALF_OPEN:
            return HALF_OPEN_WAIT_S
        return max(HALF_OPEN_WAIT_S, wait_s(breaker, now))

    def holds(self, connection_id: str) -> bool:
        """Whether the connection's breaker opened after its commands were admitted."""
        return connection_id in self._opened

    def wait_until(self, at: float) -> None:
        """Hold a send until its paced slot (called on the sending thread)."""
        delay = at - self._wall()
        if delay > 0:
            self._sleep(delay)

    def observed(self, results: Sequence[tuple[ConnectionInfo, Category | None]]) -> None:
        """A batch's outcomes (None: success), counted into each connection's breaker."""
        with writing(self.ctx.engine) as conn:
            self.observed_in(conn, results)

    def observed_in(self, conn: Connection, results: Sequence[tuple[ConnectionInfo, Category | None]]) -> None:
        """`observed` in the caller's transaction (the one that records the batch's attempts)."""
        by_connection: dict[str, tuple[ConnectionInfo, list[str | None]]] = {}
        for connection, category in results:
            by_connection.setdefault(connection.id, (connection, []))[1].append(
                str(category) if category is not None else None)
        if not by_connection:
            return
        now = self.ctx.clock()
        for connection, outcomes in by_connection.values():
            before = load(conn, connection.id, for_update=True)
            policy = policy_for(connection)
            after = observe(before, policy, now, outcomes)
            if after.breaker == before:
                continue
            _save(conn, connection.id, after.breaker, now)
            if after.breaker.state is BreakerState.OPEN:
                self._opened.add(connection.id)
            if after.change is not None:
                _announce(conn, self.ctx, connection, after.change, before, after.breaker, policy)
            if before.warned and after.breaker.failing_since is None:
                alert_signals.emit(conn, self.ctx, Signal(
                    WARNING_RULE, connection.id, "info", f"{connection.name}: calls succeed again", cleared=True))


def watch(ctx: ServiceContext, infos: dict[str, ConnectionInfo]) -> list[str]:
    """Warn about (50%, 90%) and pause (100%) connections failing longer than their
    `breaker.auto_pause_after_s`; each step is taken by one engine only. The names paused."""
    now = ctx.clock()
    paused: list[str] = []
    for connection_id, breaker in states(ctx).items():
        info = infos.get(connection_id)
        if info is None or info.paused or breaker.failing_since is None:
            continue
        policy = policy_for(info)
        step = warning_due(breaker, policy, now)
        if step is None or policy.auto_pause_after_s is None:
            continue
        failing_for = (now - breaker.failing_since).total_seconds()
        with writing(ctx.engine) as conn:
            taken = conn.execute(update(breakers).where(
                breakers.c.connection_id == connection_id, breakers.c.warned < step,
                breakers.c.failing_since == breaker.failing_since).values(warned=step, updated_at=now)).rowcount
            if not taken:
                continue  # another engine gave this step
            if step < 100:
                alert_signals.emit(conn, ctx, Signal(
                    WARNING_RULE, connection_id, "warning",
                    f"{info.name}: failing for {failing_for:.0f} s without a break; it will be paused at "
                    f"{policy.auto_pause_after_s:g} s ({step}% of the way)"))
        if step == 100:
            reason = (f"auto-paused by the engine: calls failed for {failing_for:.0f} s without a break "
                      f"(breaker.auto_pause_after_s = {policy.auto_pause_after_s:g}); {breaker.reason or ''}").rstrip("; ")
            connections.change_paused(ctx, info.name, True, reason)
            with writing(ctx.engine) as conn:
                # Paused: the failing clock starts again after the resume.
                conn.execute(update(breakers).where(breakers.c.connection_id == connection_id)
                             .values(failing_since=None, warned=0, updated_at=now))
                alert_signals.emit(conn, ctx, Signal(PAUSED_RULE, connection_id, "critical", f"{info.name}: {reason}"))
                alert_signals.emit(conn, ctx, Signal(WARNING_RULE, connection_id, "info",
                                                     f"{info.name}: paused", cleared=True))
            paused.append(info.name)
    return paused


def calls_held(ctx: ServiceContext) -> set[str]:
    """Connections whose breaker is not closed (their polls wait too)."""
    with reading(ctx.engine) as conn:
        return set(conn.execute(select(breakers.c.connection_id)
                                .where(breakers.c.state != str(BreakerState.CLOSED))).scalars())
