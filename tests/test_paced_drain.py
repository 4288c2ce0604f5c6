"""Paced dispatch with two real engines on one PostgreSQL store: 1,000 queued commands drain at
the connection's configured rate (100/s) within 10%, measured at the chaos sandbox's ledger, and
both engines take part (each one's metrics), so the limit is shared, not per engine. While
they drain, `engine status --json` gives the backlog's expected drain time at that pace."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import httpx
import orjson
import pytest
from sqlalchemy import func, select

from store.database import reading, writing
from store.models import Command
from tests.conftest import fresh_database
from tests.engine_harness import EngineProcess, cli, wait_until
from tests.engine_support import RUN, callable_connection, ledger, sandbox, set_chaos
from tests.stripe_servers import free_port
from workbench.services import connections, role_bindings
from workbench.services.commands import enqueue
from workbench.services.context import ServiceContext

__all__ = ["sandbox"]

commands = Command.__table__

RATE = 100.0  # per second: 1,000 commands in ~10 s (two engines dispatch 300+/s unpaced even under load)
COUNT = 1000


@pytest.fixture(params=[pytest.param("postgres", id="postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """PostgreSQL only: on SQLite one engine is active at a time, there is nothing to share."""
    with fresh_database(request, request.param, tmp_path / "workbench.db") as url:
        yield url


def succeeded(ctx: ServiceContext) -> int:
    with reading(ctx.engine) as conn:
        return int(conn.execute(select(func.count()).where(commands.c.status == "succeeded")).scalar_one())


def dispatched_ok(port: int) -> float:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    found = re.search(r'^workbench_dispatches_total\{connection="pay",outcome="ok"\} (\S+)$', text, re.M)
    return float(found.group(1)) if found else 0.0


def test_two_engines_drain_a_backlog_at_the_shared_rate(ctx: ServiceContext, db_url: str, sandbox: str) -> None:
    set_chaos(sandbox)
    role_bindings.grant(ctx, "system:engine", "operator", "tests: the engine")
    callable_connection(ctx, "pay", "payroll", sandbox, settings={"sync": {"interval_s": 3600},
                                                                   "rate_limit": {"per_second": RATE}})
    info = connections.set_paused(ctx, "pay", True, "tests: queue the backlog first")
    with writing(ctx.engine) as conn:  # the outbox itself (command submit would take ~40 s here)
        for i in range(COUNT):
            enqueue(conn, ctx, connection_id=info.id, record_id=None, intent="payroll_run.submit",
                    payload={**RUN, "amount": 1000 + i})
    ports = [free_port(), free_port()]
    engines = [EngineProcess(db_url, "--metrics-port", str(port), "--lease-ttl", "5") for port in ports]
    try:
        for engine in engines:
            engine.wait_started()
        before = len(ledger(sandbox, "run.created"))
        connections.set_paused(ctx, "pay", False, "tests: drain")
        wait_until(lambda: len(ledger(sandbox, "run.created")) > before + 50, 20)
        shown = orjson.loads(cli(db_url, "engine", "status", "--json").stdout)
        (row,) = shown["connections"]
        assert row["rate_per_s"] == RATE and row["breaker"] == "closed"
        assert row["drain_s"] == pytest.approx(row["pending_commands"] / RATE, abs=0.1)
        assert 0 < row["drain_s"] <= COUNT / RATE
        wait_until(lambda: 'workbench_drain_seconds{connection="pay"}' in httpx.get(
            f"http://127.0.0.1:{ports[0]}/metrics").text, 10)  # the gauge, at the engine's heartbeat
        wait_until(lambda: succeeded(ctx) == COUNT, 60, 0.5)
        wait_until(lambda: sum(dispatched_ok(port) for port in ports) >= COUNT, 10)
        shares = [dispatched_ok(port) for port in ports]
        for engine in engines:
            assert engine.terminate() == 0, engine.log
    finally:
        for engine in engines:
            engine.close()
    created = ledger(sandbox, "run.created")[before:]
    assert len(created) == COUNT
    times = [datetime.fromisoformat(entry["at"]) for entry in created]
    elapsed = (times[-1] - times[0]).total_seconds()
    rate = (COUNT - 1) / elapsed
    assert RATE * 0.9 <= rate <= RATE * 1.1, f"{rate:.1f}/s over {elapsed:.2f} s; engines sent {shares}"
    assert all(share > 0 for share in shares) and sum(shares) == COUNT, shares
