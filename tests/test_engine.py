"""`workbench engine` as a real subprocess, on both backends: it dispatches the outbox and polls
events into ingest (unchecked signatures, one record per run), beats in `processes`, obeys a
pause made by another process within 2 s, reports itself in `engine status`, and on SIGTERM
releases its work and exits 0. Two engines: on SQLite one stands by and takes over when the
active one dies; on PostgreSQL both work, no command is dispatched twice, and a killed
engine's poll lease is taken over."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest
from click.testing import CliRunner, Result
from sqlalchemy import select

from store.database import reading
from store.models import Attempt, Command, Delivery, Lease, Process, ProviderRef, Record, SyncState
from tests.engine_harness import EngineProcess, cli, wait_until
from tests.engine_support import RUN, callable_connection, ledger, one_live_record_per_command, sandbox, set_chaos
from tests.stripe_servers import free_port
from workbench.cli.main import cli as cli_group
from workbench.services import command_submit, connections, role_bindings
from workbench.services.context import ServiceContext

__all__ = ["sandbox"]

POLL_EVERY = {"sync": {"interval_s": 1, "retry_schedule_s": [0, 0, 0, 0, 0, 0, 0, 0]}}
FAST = ("--lease-ttl", "2", "--call-timeout", "2")


@pytest.fixture
def engines() -> Iterator[list[EngineProcess]]:
    started: list[EngineProcess] = []
    yield started
    for engine in started:
        engine.close()


@pytest.fixture(autouse=True)
def _calm(sandbox: str) -> Iterator[None]:
    set_chaos(sandbox)
    yield
    set_chaos(sandbox)


def rows(ctx: ServiceContext, table: Any) -> list[Any]:
    with reading(ctx.engine) as conn:
        return list(conn.execute(select(table)))


def set_up(ctx: ServiceContext, sandbox: str, settings: dict[str, Any] | None = None) -> None:
    role_bindings.grant(ctx, "system:engine", "operator", "tests: the engine")
    callable_connection(ctx, "pay", "payroll", sandbox, settings=settings or POLL_EVERY)


def submit(ctx: ServiceContext, count: int) -> list[str]:
    return [command_submit.submit(ctx, "pay", "payroll_run.submit", {**RUN, "amount": 1000 + i}).command
            for i in range(count)]


def in_process(db_url: str, *args: str) -> Result:
    """`workbench ARGS` run by this process (CliRunner)."""
    return CliRunner().invoke(cli_group, ["--db", db_url, *args])


def statuses(ctx: ServiceContext) -> Counter[str]:
    return Counter(c.status for c in rows(ctx, Command.__table__))


def test_the_engine_dispatches_polls_reports_and_stops_cleanly(ctx: ServiceContext, db_url: str, sandbox: str,
                                                               engines: list[EngineProcess]) -> None:
    set_up(ctx, sandbox)
    port = free_port()
    engine = EngineProcess(db_url, "--metrics-port", str(port), *FAST)
    engines.append(engine)
    assert ": active" in engine.wait_started() or "running on" in engine.log
    submit(ctx, 3)
    wait_until(lambda: statuses(ctx) == Counter({"succeeded": 3}))
    # The runs' events come back by polling, into ingest: unchecked, and about the same records.
    wait_until(lambda: len([d for d in rows(ctx, Delivery.__table__) if d.source == "poll"]) >= 3)
    polled = [d for d in rows(ctx, Delivery.__table__) if d.source == "poll"]
    assert {d.signature_verdict for d in polled} == {"unchecked"}
    one_live_record_per_command(rows(ctx, Command.__table__), rows(ctx, Record.__table__),
                                rows(ctx, ProviderRef.__table__))
    # The cursor is recorded after the page it read is ingested (a separate transaction).
    wait_until(lambda: all(s.cursor is not None for s in rows(ctx, SyncState.__table__)))
    (state,) = rows(ctx, SyncState.__table__)
    assert state.cursor is not None and state.last_poll_at is not None and state.lag_s is not None
    (process,) = [p for p in rows(ctx, Process.__table__) if p.kind == "engine"]
    assert process.stopped_at is None

    status = cli(db_url, "engine", "status", "--json")
    assert status.returncode == 0, status.stderr
    shown = orjson.loads(status.stdout)
    assert [e["id"] for e in shown["engines"]] == [process.id]
    (connection,) = shown["connections"]
    assert connection["name"] == "pay" and connection["calls_stopped"] is False and connection["cursor"]
    assert shown["commands"] == {"succeeded": 3}
    text = cli(db_url, "engine", "status").stdout
    assert "pay" in text and "heartbeat" in text

    def scraped() -> bool:
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics").text
        return 'workbench_dispatches_total{connection="pay",outcome="ok"} 3.0' in metrics and \
            "workbench_lag_seconds" in metrics
    wait_until(scraped, 10)

    assert engine.terminate() == 0, engine.log
    assert "engine stopped" in engine.log and "Traceback" not in engine.log
    (process,) = [p for p in rows(ctx, Process.__table__) if p.kind == "engine"]
    assert process.stopped_at is not None
    assert rows(ctx, Lease.__table__) == []  # every lease given up


def test_a_pause_in_another_process_is_obeyed_within_two_seconds(ctx: ServiceContext, db_url: str, sandbox: str,
                                                                  engines: list[EngineProcess]) -> None:
    set_up(ctx, sandbox)
    set_chaos(sandbox, latency_ms=500)  # dispatching 80 runs (a POST each), 8 at a time, takes 5 s
    engine = EngineProcess(db_url, *FAST)
    engines.append(engine)
    submit(ctx, 80)  # while the engine starts up: it dispatches them once it runs
    engine.wait_started()
    wait_until(lambda: statuses(ctx)["succeeded"] >= 3)
    # The command itself, in this process (the engine's is another): no second of start-up
    # between the runs seen and the pause.
    paused = in_process(db_url, "connection", "pause", "pay", "--reason", "tests: stop the engine")
    assert paused.exit_code == 0, paused.output
    obeyed_by = datetime.now(UTC) + timedelta(seconds=2)
    time.sleep(3)
    late = [a for a in rows(ctx, Attempt.__table__) if a.created_at > obeyed_by]
    assert late == []
    (state,) = rows(ctx, SyncState.__table__)
    assert state.last_poll_at < obeyed_by  # polls stopped too
    waiting = statuses(ctx)["pending"]
    assert waiting > 0, statuses(ctx)
    set_chaos(sandbox)  # the slow provider has served its purpose: the rest drain at once
    resumed = in_process(db_url, "connection", "resume", "pay", "--reason", "tests: go on")
    assert resumed.exit_code == 0, resumed.output
    wait_until(lambda: statuses(ctx) == Counter({"succeeded": 80}), 60)
    made = Counter(e["reference"] for e in ledger(sandbox, "run.created"))
    assert all(made[c.operation_id] == 1 for c in rows(ctx, Command.__table__))
    assert engine.terminate() == 0


def test_two_engines_share_the_store_and_a_killed_ones_work_is_taken_over(
        ctx: ServiceContext, db_url: str, sandbox: str, engines: list[EngineProcess]) -> None:
    set_up(ctx, sandbox)
    set_chaos(sandbox, latency_ms=20)
    first = EngineProcess(db_url, *FAST)
    # The second starts up beside the first, held back from the store until the first runs.
    second = EngineProcess(db_url, *FAST, held=True)
    engines.extend((first, second))
    first.wait_started()
    second.go()
    second_line = second.wait_started()
    sqlite = db_url.startswith("sqlite")
    if sqlite:
        assert "standing by" in second_line
    submit(ctx, 30)
    wait_until(lambda: statuses(ctx) == Counter({"succeeded": 30}), 60)
    attempts = Counter(a.command_id for a in rows(ctx, Attempt.__table__))
    assert set(attempts.values()) == {1}  # no command dispatched twice
    made = Counter(e["reference"] for e in ledger(sandbox, "run.created"))
    assert all(made[c.operation_id] == 1 for c in rows(ctx, Command.__table__))

    # Kill whichever engine holds the connection's poll lease (SQLite: the active one).
    wait_until(lambda: any(lease.resource.startswith("poll:") for lease in rows(ctx, Lease.__table__)))
    holder = next(lease.holder for lease in rows(ctx, Lease.__table__) if lease.resource.startswith("poll:"))
    by_id = {p.id: p.pid for p in rows(ctx, Process.__table__)}
    victim, survivor = (first, second) if by_id[holder] == first.process.pid else (second, first)
    victim.kill()
    wait_until(lambda: any(lease.resource.startswith("poll:") and lease.holder != holder and lease.takeovers >= 1
                           for lease in rows(ctx, Lease.__table__)), 20)
    submit(ctx, 5)
    wait_until(lambda: statuses(ctx) == Counter({"succeeded": 35}), 30)
    assert survivor.terminate() == 0, survivor.log


def test_a_killed_engines_claimed_commands_are_taken_over_by_the_other(
        ctx: ServiceContext, db_url: str, sandbox: str, engines: list[EngineProcess]) -> None:
    """Two engines; the commands are released at once (made while the connection is paused), so
    one engine claims them all in one batch (on SQLite: the active one). It is killed after the
    first succeeds; the other takes its expired claims over and finishes: each command still
    made exactly one run. Which engine claimed: their claims last differently long
    (--lease-ttl + 2 x --call-timeout: 6 s and 7 s), and a claim's deadline is in the store."""
    set_up(ctx, sandbox)
    # 24 commands, 8 at a time: about 3 s of calls. The dispatcher writes answers in groups (at
    # most every 0.5 s): the first group lands while most of the batch is still claimed.
    set_chaos(sandbox, latency_ms=1000)
    ports = [free_port(), free_port()]
    claim_s = [6.0, 7.0]
    for port, timeout in zip(ports, ("2", "2.5"), strict=True):
        engines.append(EngineProcess(db_url, "--metrics-port", str(port), "--lease-ttl", "2", "--call-timeout",
                                     timeout))
    for engine in engines:
        engine.wait_started()
    connections.set_paused(ctx, "pay", True, "tests: let the commands gather")
    submit(ctx, 24)
    connections.set_paused(ctx, "pay", False, "tests: go")
    wait_until(lambda: statuses(ctx)["succeeded"] >= 1, 30)
    claims = {round((c.next_attempt_at - c.updated_at).total_seconds()) for c in rows(ctx, Command.__table__)
              if c.status == "dispatching"}
    assert len(claims) == 1  # one batch, one engine
    claimer = claim_s.index(claims.pop())
    engines[claimer].kill()
    assert statuses(ctx)["dispatching"] >= 1  # the dead engine's claims: taken over, not lost
    set_chaos(sandbox)  # what is left goes fast once taken over
    wait_until(lambda: statuses(ctx) == Counter({"succeeded": 24}), 60)
    made = Counter(e["reference"] for e in ledger(sandbox, "run.created"))
    assert all(made[c.operation_id] == 1 for c in rows(ctx, Command.__table__))
    metrics = httpx.get(f"http://127.0.0.1:{ports[1 - claimer]}/metrics").text
    taken = [line for line in metrics.splitlines() if line.startswith("workbench_command_takeovers_total")]
    assert taken and float(taken[0].split()[-1]) >= 1, taken
    assert engines[1 - claimer].terminate() == 0, engines[1 - claimer].log
    assert rows(ctx, Lease.__table__) == []
