"""The engine in this process (a thread; no signal handlers touched), on both backends: a
"reconcile now" request made through the store reaches the engine's reconciler within a
couple of seconds, once, audited; an engine without a reconciler leaves the request for one
that has; stop() gives up its leases and marks it stopped."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from click.testing import CliRunner, Result
from sqlalchemy import select

from adapters.protocol import ProviderClient
from store.database import reading
from store.models import AuditEntry, Delivery, Lease, Process, ReconcileRun, SyncState
from tests.engine_harness import EngineThread as Running, wait_until
from tests.engine_support import callable_connection, sandbox, vault
from workbench.cli.main import cli
from workbench.engine.daemon import Engine, EngineOptions
from workbench.services import connections, reconcile as reconcile_service, role_bindings, sync_state
from workbench.services.connections import ConnectionInfo
from workbench.services.context import ServiceContext

__all__ = ["sandbox"]


def rows(ctx: ServiceContext, table: Any) -> list[Any]:
    with reading(ctx.engine) as conn:
        return list(conn.execute(select(table)))


@pytest.fixture
def running() -> Iterator[list[Running]]:
    started: list[Running] = []
    yield started
    for item in started:
        if item.thread.is_alive():
            item.stop()


def test_reconcile_now_reaches_the_engines_reconciler_once(ctx: ServiceContext, sandbox: str,
                                                          running: list[Running]) -> None:
    role_bindings.grant(ctx, "system:engine", "operator", "tests")
    callable_connection(ctx, "pay", "payroll", sandbox, settings={"sync": {"interval_s": 3600}})
    engine_ctx = ctx.as_actor("system:engine")
    calls: list[tuple[str, int]] = []

    def reconcile(rctx: ServiceContext, info: ConnectionInfo, client: ProviderClient) -> None:
        page = client.list_events(None, 10)  # the connection's own client, with its key
        calls.append((info.name, len(page.bodies)))

    without = Running(Engine(engine_ctx, {"sandbox": vault()}, EngineOptions(lease_ttl_s=2)))
    running.append(without)
    sync_state.request_reconcile(ctx, "pay", "tests: compare now")
    wait_until(lambda: rows(ctx, SyncState.__table__))
    without.stop()  # ran a second or more: it left the request alone
    (state,) = rows(ctx, SyncState.__table__)
    assert state.reconcile_requested_at is not None

    with_reconciler = Running(Engine(engine_ctx, {"sandbox": vault()}, EngineOptions(lease_ttl_s=2),
                                     reconcile=reconcile))
    running.append(with_reconciler)
    wait_until(lambda: calls, 5)
    (state,) = rows(ctx, SyncState.__table__)
    assert state.reconcile_requested_at is None
    sync_state.request_reconcile(ctx, "pay", "tests: again")
    wait_until(lambda: len(calls) == 2, 5)
    with_reconciler.stop()
    assert [name for name, _ in calls] == ["pay", "pay"]
    actions = [e.action for e in rows(ctx, AuditEntry.__table__)]
    assert actions.count("connection.reconcile_requested") == 2
    assert rows(ctx, Lease.__table__) == []
    assert all(p.stopped_at is not None for p in rows(ctx, Process.__table__) if p.kind == "engine")


def test_a_reconcile_request_needs_a_reason_and_a_known_connection(ctx: ServiceContext) -> None:
    from workbench.services.errors import InvalidArgument, NotFound

    with pytest.raises(InvalidArgument, match="a reason is required"):
        sync_state.request_reconcile(ctx, "nope", " ")
    with pytest.raises(NotFound, match="unknown connection 'nope'"):
        sync_state.request_reconcile(ctx, "nope", "why")


def test_reconcile_now_from_the_cli_is_carried_out_by_a_running_engine(ctx: ServiceContext, sandbox: str,
                                                                       running: list[Running]) -> None:
    """The pieces together: `workbench reconcile NAME --now` (request_run + the engines' mark)
    and an engine given the real reconciler, as `workbench engine` gives it: the requested run
    finishes, once, and says what it compared."""
    role_bindings.grant(ctx, "system:engine", "operator", "tests")
    callable_connection(ctx, "pay", "payroll", sandbox, settings={"sync": {"interval_s": 3600}})
    run_id = reconcile_service.request_run(ctx, "pay")
    sync_state.request_reconcile(ctx, "pay", f"workbench reconcile --now (run {run_id})")
    engine = Running(Engine(ctx.as_actor("system:engine"), {"sandbox": vault()}, EngineOptions(lease_ttl_s=2),
                            reconcile=reconcile_service.run_for_engine))
    running.append(engine)

    def status() -> str:
        (run,) = [r for r in rows(ctx, ReconcileRun.__table__) if r.id == run_id]
        return str(run.status)

    wait_until(lambda: status() == "finished", 10)
    engine.stop()
    assert [r.id for r in rows(ctx, ReconcileRun.__table__)] == [run_id]  # carried out, no second run
    (state,) = rows(ctx, SyncState.__table__)
    assert state.reconcile_requested_at is None


def full_runs(ctx: ServiceContext) -> list[Any]:
    return sorted((r for r in rows(ctx, ReconcileRun.__table__) if r.record_id is None and not r.dry_run),
                  key=lambda r: r.started_at)


def test_reconciliation_on_a_schedule_one_at_a_time_paused_with_the_connection(
        ctx: ServiceContext, db_url: str, sandbox: str, running: list[Running]) -> None:
    """sync.reconcile_interval_s, set while two engines run on one store: between them they run
    the real reconciler every interval, never two runs of the connection at once nor closer
    than the interval; a pause stops it; `engine status --json` says when the next is due."""
    role_bindings.grant(ctx, "system:engine", "operator", "tests")
    callable_connection(ctx, "pay", "payroll", sandbox, settings={"sync": {"interval_s": 3600}})
    engine_ctx = ctx.as_actor("system:engine")
    for first in (True, False):  # on SQLite the second stands by; on PostgreSQL both work
        running.append(Running(Engine(engine_ctx, {"sandbox": vault()}, EngineOptions(lease_ttl_s=2),
                                      reconcile=reconcile_service.run_for_engine), active=first))
    wait_until(lambda: rows(ctx, SyncState.__table__))  # polled once: the engines have their jobs
    assert full_runs(ctx) == []  # no schedule, no run
    # Set on the running engines: they rebuild their jobs from the connection's new version.
    connections.update_settings(ctx, "pay", lambda s: {**s, "sync": {**s["sync"], "reconcile_interval_s": 1}},
                                "connection.set", "tests: reconcile every second")
    wait_until(lambda: len([r for r in full_runs(ctx) if r.status == "finished"]) >= 3, 10)
    done = full_runs(ctx)
    assert {r.status for r in done} <= {"running", "finished"}
    for earlier, later in zip(done, done[1:], strict=False):
        assert earlier.finished_at is not None and earlier.finished_at <= later.started_at  # one at a time
        assert (later.started_at - earlier.started_at).total_seconds() >= 0.85  # the interval, less the slack

    paused = cli_result(db_url, "connection", "pause", "pay", "--reason", "tests: hold on")
    assert paused.exit_code == 0, paused.output
    held_from = datetime.now(UTC) + timedelta(seconds=1.5)
    time.sleep(2.5)
    assert [r.id for r in full_runs(ctx) if r.started_at > held_from] == []

    status = cli_result(db_url, "engine", "status", "--json")
    assert status.exit_code == 0, status.output
    (shown,) = orjson.loads(status.stdout)["connections"]
    last = full_runs(ctx)[-1].started_at
    assert shown["reconcile_interval_s"] == 1 and shown["poll_interval_s"] == 3600
    assert datetime.fromisoformat(shown["last_reconcile_at"]) == last
    assert datetime.fromisoformat(shown["next_reconcile_at"]) >= last + timedelta(seconds=1)
    assert datetime.fromisoformat(shown["next_poll_at"]) > datetime.now(UTC) + timedelta(seconds=3000)
    text = cli_result(db_url, "engine", "status").stdout
    assert "NEXT RECONCILE" in text and "in 59m" in text  # the next poll, an hour after the first


def cli_result(db_url: str, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--db", db_url, *args])


def test_the_engine_runs_retention_only_when_bound_as_an_admin(ctx: ServiceContext, running: list[Running]) -> None:
    """The hourly retention job (here every second): an operator engine leaves old bodies be,
    an admin one purges those past the connection's raw_days, audited."""
    from tests.support import capture, pi_event
    from workbench.services.ingest import ingest
    from workbench.services.payload_settings import PayloadChange, set_payload_settings

    connections.add_connection(ctx, "acme", "stripe", "sandbox")
    set_payload_settings(ctx, "acme", PayloadChange(raw_days=30), "policy")
    now = ctx.clock()
    ingest(ctx, "acme", [capture(pi_event("evt_old", "pi_1", "processing", 1), now - timedelta(days=35)),
                         capture(pi_event("evt_new", "pi_1", "succeeded", 2), now - timedelta(days=1))])

    def purged() -> list[str]:
        return sorted(d.provider_event_id for d in rows(ctx, Delivery.__table__) if d.body_purged_at is not None)

    options = EngineOptions(lease_ttl_s=2, retention_every_s=0.5)
    role_bindings.grant(ctx, "system:engine", "operator", "tests")
    operator = Running(Engine(ctx.as_actor("system:engine"), {}, options))
    running.append(operator)
    time.sleep(1.5)
    operator.stop()
    assert purged() == []
    role_bindings.grant(ctx, "system:engine", "admin", "tests: retention too")
    running.append(Running(Engine(ctx.as_actor("system:engine"), {}, options)))

    def audited() -> int:  # the run's audit entry comes after its purge
        return [e.action for e in rows(ctx, AuditEntry.__table__)].count("retention.purge")
    wait_until(lambda: purged() == ["evt_old"] and audited() >= 1, 10)
    assert audited() == 1
