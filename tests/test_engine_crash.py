"""The engine killed with SIGKILL at random moments while it dispatches and polls, restarted
each time, on both backends: the end state is a clean run's (every command succeeded with
exactly one side effect in the sandbox's ledger, one live record per run, every run's events
stored, no lease left behind). 100 commands here; WORKBENCH_CRASH_COMMANDS=2000 for the
issue's full run."""

from __future__ import annotations

import os
import random
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select

from store.database import reading
from store.models import Command, Delivery, Lease, ProviderRef, Record
from tests.engine_harness import EngineProcess, wait_until
from tests.engine_support import RUN, callable_connection, ledger, one_live_record_per_command, sandbox, set_chaos
from workbench.services import command_submit, role_bindings
from workbench.services.context import ServiceContext

__all__ = ["sandbox"]

COMMANDS = int(os.environ.get("WORKBENCH_CRASH_COMMANDS", "100"))
KILLS = 4
FAST = ("--lease-ttl", "1", "--call-timeout", "2")


@pytest.fixture
def engines() -> Iterator[list[EngineProcess]]:
    started: list[EngineProcess] = []
    yield started
    for engine in started:
        engine.close()


def rows(ctx: ServiceContext, table: Any) -> list[Any]:
    with reading(ctx.engine) as conn:
        return list(conn.execute(select(table)))


def test_sigkill_at_random_moments_ends_like_a_clean_run(ctx: ServiceContext, db_url: str, sandbox: str,
                                                         engines: list[EngineProcess]) -> None:
    set_chaos(sandbox, latency_ms=5)
    role_bindings.grant(ctx, "system:engine", "operator", "tests: the engine")
    callable_connection(ctx, "pay", "payroll", sandbox,
                        settings={"sync": {"interval_s": 1, "retry_schedule_s": [0, 0, 0, 0, 0, 0, 0, 0]}})
    for i in range(COMMANDS):
        command_submit.submit(ctx, "pay", "payroll_run.submit", {**RUN, "amount": 1000 + i})
    rng = random.Random(11)
    for _ in range(KILLS):
        engine = EngineProcess(db_url, *FAST)
        engines.append(engine)
        engine.wait_started()
        time.sleep(rng.uniform(0.2, 1.5))
        engine.kill()
    final = EngineProcess(db_url, *FAST)
    engines.append(final)
    final.wait_started()

    def done() -> bool:
        statuses = Counter(c.status for c in rows(ctx, Command.__table__))
        mine = {c.record_id for c in rows(ctx, Command.__table__)}
        polled = {d.record_id for d in rows(ctx, Delivery.__table__) if d.source == "poll"}
        return statuses == Counter({"succeeded": COMMANDS}) and mine <= polled  # no lost event
    wait_until(done, 60 + COMMANDS / 10)
    assert final.terminate() == 0, final.log
    set_chaos(sandbox)

    commands = rows(ctx, Command.__table__)
    made = Counter(e["reference"] for e in ledger(sandbox, "run.created"))
    assert all(made[c.operation_id] == 1 for c in commands)  # one side effect per command
    # One record per run, however its event and its answer raced.
    one_live_record_per_command(commands, rows(ctx, Record.__table__), rows(ctx, ProviderRef.__table__))
    assert rows(ctx, Lease.__table__) == []  # the killed engines' leases were taken over, then given up
