"""The circuit breaker and the auto-pause in the store, on both backends: against the chaos
sandbox a 5xx burst opens the breaker (the sandbox sees no more calls), a half-open probe
closes it once the sandbox recovers, the alert and its recovery are emitted once each and
reach a local notifier endpoint once each, and nothing is dropped; a connection failing too
long is warned about at 50% and 90% and then paused (audited), each step by one engine only;
`engine status` shows the breaker and the backlog's drain time at the connection's pace."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import Connection, select

from store.database import reading, writing
from store.models import AuditEntry, Command
from tests.engine_harness import wait_until
from tests.engine_support import RUN, callable_connection, ledger, sandbox, set_chaos
from tests.notifier_server import NotifierEndpoint, notifier_endpoint
from workbench.domain.taxonomy import Category
from workbench.services import (
    alert_notify,
    alert_signals,
    breaker,
    command_submit,
    dispatch,
    engine_status,
    pacing,
    provider_calls,
    vault as vault_service,
)
from workbench.services.alert_signals import Signal
from workbench.services.connections import get_connection
from workbench.services.context import ServiceContext

__all__ = ["sandbox"]

BREAKER = {"sync": {"interval_s": 60, "retry_schedule_s": [0, 0, 0, 0, 0, 0, 0, 0]},
           "breaker": {"window_s": 60, "min_calls": 5, "open_s": 1}}
BURST = 1000  # 5xx answers the sandbox has in store: it never runs out during the test


@pytest.fixture
def emitted(monkeypatch: pytest.MonkeyPatch) -> list[Signal]:
    """What alert_signals.emit received (it still runs: the spy only listens)."""
    seen: list[Signal] = []
    real = alert_signals.emit

    def spy(conn: Connection, ctx: ServiceContext, signal: Signal) -> None:
        seen.append(signal)
        real(conn, ctx, signal)
    monkeypatch.setattr(alert_signals, "emit", spy)
    return seen


@pytest.fixture(autouse=True)
def _calm(sandbox: str) -> Iterator[None]:
    set_chaos(sandbox)
    yield
    set_chaos(sandbox)


def five_xx_left(base: str) -> int:
    left: int = httpx.get(base + "/_admin/chaos").json()["fail_5xx"]
    return left


def actions(ctx: ServiceContext, prefix: str) -> Counter[str]:
    table = AuditEntry.__table__
    with reading(ctx.engine) as conn:
        return Counter(conn.execute(select(table.c.action).where(table.c.action.startswith(prefix))).scalars())


def command_statuses(ctx: ServiceContext) -> Counter[str]:
    with reading(ctx.engine) as conn:
        return Counter(conn.execute(select(Command.__table__.c.status)).scalars())


@pytest.fixture(scope="module")
def endpoint() -> Iterator[NotifierEndpoint]:
    with notifier_endpoint() as served:
        yield served


def test_a_5xx_burst_opens_the_breaker_and_a_probe_closes_it(ctx: ServiceContext, sandbox: str,
                                                             emitted: list[Signal], endpoint: NotifierEndpoint) -> None:
    # Its alerts go to a webhook (the local endpoint; its URL a vault secret) besides the log.
    alerting = {"alerts": {"notifiers": [{"name": "oncall", "kind": "webhook", "format": "json",
                                          "url_secret": {"name": "oncall-url"}}],
                           "signal_notifiers": ["oncall"]}}
    unlocked = callable_connection(ctx, "pay", "payroll", sandbox, settings={**BREAKER, **alerting})
    vault_service.set_secret(ctx, unlocked, "oncall-url", endpoint.url("/breaker"))
    endpoint.clear()
    references = {command_submit.submit(ctx, "pay", "payroll_run.submit", {**RUN, "amount": 1000 + i}).command
                  for i in range(12)}
    set_chaos(sandbox, fail_5xx=BURST)
    pool = dispatch.Clients(lambda info: provider_calls.open_client(ctx, info.name, {"sandbox": unlocked},
                                                                    timeout_s=5))
    gate = breaker.CallGate(ctx)
    try:
        report = dispatch.dispatch_once(ctx, pool, gate=gate)
        # min_calls 5, all failing: the fifth failure opens it; the other seven are not sent.
        assert report.outcomes == {("pay", "provider_outage"): 5}
        # Each failed submit is two requests at the sandbox: the POST, and the lookup by our
        # reference the payroll client makes after a 5xx (did it go through after all?).
        assert BURST - five_xx_left(sandbox) == 2 * 5
        info = get_connection(ctx, "pay")
        (row,) = engine_status.read_status(ctx).connections
        assert (row.breaker, row.pending_commands) == ("open", 12)
        assert row.breaker_reason == "5 of 5 calls failed as provider_outage within 60 s (trips at 50%)"
        # The failed commands are due again at once (schedule 0 s): still no call while open.
        for _ in range(3):
            dispatch.dispatch_once(ctx, pool, gate=gate)
        assert BURST - five_xx_left(sandbox) == 2 * 5 and breaker.calls_held(ctx) == {info.id}
        set_chaos(sandbox)  # the provider recovers
        deadline = time.monotonic() + 15
        while command_statuses(ctx) != Counter({"succeeded": 12}) and time.monotonic() < deadline:
            dispatch.dispatch_once(ctx, pool, gate=gate)
            time.sleep(0.1)
    finally:
        pool.close()
    assert command_statuses(ctx) == Counter({"succeeded": 12}), "nothing is dropped while the breaker is open"
    with reading(ctx.engine) as conn:
        operations = set(conn.execute(select(Command.__table__.c.operation_id)
                                      .where(Command.__table__.c.id.in_(references))).scalars())
    created = Counter(entry["reference"] for entry in ledger(sandbox, "run.created"))
    assert all(created[operation] == 1 for operation in operations)
    mine = [(s.rule, s.cleared, s.severity) for s in emitted if s.connection_id == info.id]
    # Every change of state is an alert: the half-open probe counts on the open alert.
    assert mine == [("breaker.opened", False, "critical"), ("breaker.opened", False, "critical"),
                    ("breaker.opened", True, "info")]
    assert actions(ctx, "engine.breaker_") == Counter({"engine.breaker_opened": 1, "engine.breaker_half_opened": 1,
                                                       "engine.breaker_closed": 1})
    assert breaker.calls_held(ctx) == set()
    # The notices, delivered as the engine's notification worker delivers them: the alert and its
    # recovery reach the endpoint once each, however many rounds the worker makes.
    worker = alert_notify.NotificationWorker(ctx, {"sandbox": unlocked})
    try:
        for _ in range(3):  # in order: the recovery waits for the opening's delivery
            worker.pump()
            wait_until(lambda: worker.busy == 0, 10)
    finally:
        worker.close()
    received = [(body["rule"], body["connection"], body["event"]) for body in endpoint.bodies("/breaker")]
    assert received == [("breaker.opened", "pay", "opened"), ("breaker.opened", "pay", "recovered")]


def test_a_connection_failing_too_long_is_warned_about_then_paused(engine: Any, emitted: list[Signal]) -> None:
    from tests.support import make_context

    now = [datetime(2026, 11, 29, 12, 0, tzinfo=UTC)]
    ctx = replace(make_context(engine), clock=lambda: now[0])
    settings = {**BREAKER, "breaker": {"min_calls": 50, "open_s": 5, "auto_pause_after_s": 100}}
    callable_connection(ctx, "pay", "payroll", "http://127.0.0.1:9", settings=settings)
    command_submit.submit(ctx, "pay", "payroll_run.submit", RUN)
    info = get_connection(ctx, "pay")
    gate = breaker.CallGate(ctx)
    gate.observed([(info, Category.TIMEOUT), (info, Category.PROVIDER_OUTAGE)])  # failing from now on

    def step(seconds: float) -> list[tuple[str, bool]]:
        now[0] += timedelta(seconds=seconds)
        before = len(emitted)
        for _ in range(2):  # two engines look at once: one of them takes each step
            breaker.watch(ctx, {info.id: get_connection(ctx, "pay")})
        return [(s.rule, s.cleared) for s in emitted[before:]]

    assert step(49) == []
    assert step(1) == [("autopause.warning", False)]
    assert step(30) == []
    assert step(10) == [("autopause.warning", False)]
    assert [s.summary for s in emitted][-1] == ("pay: failing for 90 s without a break; it will be paused at 100 s "
                                                "(90% of the way)")
    assert step(10) == [("autopause.paused", False), ("autopause.warning", True)]
    paused = get_connection(ctx, "pay")
    assert paused.paused and actions(ctx, "connection.pause") == Counter({"connection.pause": 1})
    table = AuditEntry.__table__
    with reading(ctx.engine) as conn:
        reason = conn.execute(select(table.c.reason).where(table.c.action == "connection.pause")).scalar_one()
    assert reason.startswith("auto-paused by the engine: calls failed for 100 s without a break")
    assert command_statuses(ctx) == Counter({"pending": 1}), "the paused connection's command waits"
    assert step(500) == []  # paused: no more steps


def test_the_pace_is_shared_and_status_shows_the_drain_time(ctx: ServiceContext) -> None:
    callable_connection(ctx, "pay", "payroll", "http://127.0.0.1:9",
                        settings={**BREAKER, "rate_limit": {"per_minute": 600}})
    info = get_connection(ctx, "pay")
    for i in range(25):
        command_submit.submit(ctx, "pay", "payroll_run.submit", {**RUN, "amount": 1000 + i})
    # Two engines taking calls: the second's slots follow the first's, 0.1 s apart (10/s).
    with writing(ctx.engine) as conn:
        first, _ = pacing.take(conn, info.id, 10.0, 3, 1000.0)
    with writing(ctx.engine) as conn:
        second, _ = pacing.take(conn, info.id, 10.0, 2, 1000.05)
    assert [round(s, 3) for s in first + second] == [1000.0, 1000.1, 1000.2, 1000.3, 1000.4]
    with writing(ctx.engine) as conn:  # idle for a while: at most BURST_S (0.5 s) of slots made up at once
        slots, _ = pacing.take(conn, info.id, 10.0, 8, 2000.0)
    assert [round(s, 3) for s in slots] == [1999.5, 1999.6, 1999.7, 1999.8, 1999.9, 2000.0, 2000.1, 2000.2]
    with writing(ctx.engine) as conn:  # no slot more than HORIZON_S (1 s) ahead: the rest wait their turn
        slots, wait = pacing.take(conn, info.id, 10.0, 20, 2000.0)
    assert [round(s, 3) for s in slots] == [2000.3, 2000.4, 2000.5, 2000.6, 2000.7, 2000.8, 2000.9, 2001.0]
    assert round(wait, 3) == 1.1
    (row,) = engine_status.read_status(ctx).connections
    assert (row.rate_per_s, row.drain_s, row.breaker, row.pending_commands) == (10.0, 2.5, "closed", 25)
