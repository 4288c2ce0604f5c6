"""Rewinding a connection's polling cursor, against the payroll sandbox (events by offset): the
plan says where the cursor is and where it goes, the move is audited, the next poll re-reads
the events since then and stores nothing twice, and a rewind that would skip events or that
the provider cannot answer is refused in one line. Both backends."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from store.database import reading
from store.models import Delivery, Record, Transition
from tests.engine_support import KEY, RUN, callable_connection, sandbox, set_chaos
from workbench.services import audit, polling, provider_calls, rewind, sync_state
from workbench.services.connections import get_connection
from workbench.services.errors import ServiceError

__all__ = ["sandbox"]  # the fixture is used by name

deliveries = Delivery.__table__


def submit(base: str, reference: str) -> None:
    response = httpx.post(f"{base}/v1/payroll_runs", json={**RUN, "reference": reference},
                          headers={"Authorization": f"Bearer {KEY}"})
    assert response.status_code == 201, response.text


def stored(ctx: Any) -> tuple[int, int, int, int]:
    """Original deliveries, all delivery rows, records, transitions."""
    with reading(ctx.engine) as conn:
        def count(query: Any) -> int:
            return int(conn.execute(query).scalar_one())
        return (count(select(func.count()).where(deliveries.c.dedupe_key.is_not(None))),
                count(select(func.count()).select_from(deliveries)),
                count(select(func.count()).select_from(Record.__table__)),
                count(select(func.count()).select_from(Transition.__table__)))


@pytest.fixture
def polled(ctx: Any, sandbox: str) -> Iterator[dict[str, Any]]:
    """Connection `pay` on the module's sandbox, polled up to date: its events before `mid`
    and the three submitted after it."""
    vault = callable_connection(ctx, "pay", "payroll", sandbox)
    client = provider_calls.open_client(ctx, "pay", {"sandbox": vault})
    before = len(httpx.get(f"{sandbox}/v1/events", params={"limit": 100, "offset": 0},
                           headers={"Authorization": f"Bearer {KEY}"}).json()["data"])
    for i in range(2):
        submit(sandbox, f"rw_{time.monotonic_ns()}_{i}")
    time.sleep(0.002)  # the sandbox stamps events to the microsecond: `mid` falls between them
    mid = datetime.now(UTC)
    time.sleep(0.002)
    for i in range(3):
        submit(sandbox, f"rw_{time.monotonic_ns()}_late{i}")
    info = get_connection(ctx, "pay")
    report = polling.poll_connection(ctx, info, client)
    assert report.error is None and report.events == before + 5
    yield {"client": client, "info": info, "mid": mid, "total": before + 5}
    client.close()


def test_a_rewind_re_reads_the_events_since_then_and_stores_nothing_twice(ctx, polled):
    total = polled["total"]
    with reading(ctx.engine) as conn:
        assert sync_state.get_state(conn, polled["info"].id).cursor == str(total)
    plan = rewind.plan_rewind(ctx, "pay", polled["mid"], polled["client"])
    assert (plan.current, plan.target) == (str(total), str(total - 3))
    assert plan.calls <= 2 * total.bit_length() + 2  # a search over offsets, not a walk
    before = stored(ctx)
    rewind.apply_rewind(ctx, plan, "re-read after the outage")
    [entry] = audit.search(ctx, limit=1)
    assert (entry["action"], entry["before"], entry["after"]["cursor"]) == \
        ("connection.rewind", {"cursor": str(total)}, str(total - 3))

    again = polling.poll_connection(ctx, polled["info"], polled["client"])
    assert (again.events, again.stored) == (3, 0)  # the three since `mid` re-read, none stored again
    originals, rows, records, transitions = stored(ctx)
    assert (originals, records, transitions) == before[:1] + before[2:]
    assert rows == before[1] + 3  # kept as duplicates of their originals, nothing applied twice
    with reading(ctx.engine) as conn:
        assert sync_state.get_state(conn, polled["info"].id).cursor == str(total)


def test_a_rewind_that_would_skip_events_or_find_nothing_is_refused(ctx, polled, sandbox):
    trail = audit.verify(ctx).checked
    with pytest.raises(ServiceError, match="is later: a rewind only goes back"):
        rewind.plan_rewind(ctx, "pay", datetime.now(UTC) + timedelta(hours=1), polled["client"])
    start = rewind.plan_rewind(ctx, "pay", datetime(2000, 1, 1, tzinfo=UTC), polled["client"])
    assert start.target is None  # every event is newer: from the very start
    set_chaos(sandbox, fail_5xx=1)  # the first search call fails: no answer, nothing moved
    with pytest.raises(ServiceError, match="did not say where its events stood"):
        rewind.plan_rewind(ctx, "pay", polled["mid"], polled["client"])
    assert audit.verify(ctx).checked == trail  # plans write nothing


def wb(db_url: str, *args: str) -> Any:
    from click.testing import CliRunner

    from tests.engine_support import PASS
    from workbench.cli.main import cli
    return CliRunner().invoke(cli, ["--db", db_url, *args], catch_exceptions=False,
                              env={"WORKBENCH_VAULT_PASSPHRASE": PASS})


def test_cli_shows_the_plan_asks_then_moves(db_url, ctx, polled):
    total = polled["total"]
    since = polled["mid"].isoformat()
    refused = wb(db_url, "connection", "rewind", "pay", "--since", since)
    assert refused.exit_code == 2
    assert f"cursor now:   {total}" in refused.stdout and f"cursor after: {total - 3}" in refused.stdout
    assert refused.stderr.strip() == ("error: a rewind needs a confirmation: run it on a terminal to be asked, "
                                      "or pass --yes")
    with reading(ctx.engine) as conn:
        assert sync_state.get_state(conn, polled["info"].id).cursor == str(total)
    moved = wb(db_url, "connection", "rewind", "pay", "--since", since, "--yes", "--reason", "outage")
    assert moved.exit_code == 0, moved.output
    assert moved.stdout.splitlines()[-1] == f"pay: cursor rewound to {total - 3}"
    with reading(ctx.engine) as conn:
        assert sync_state.get_state(conn, polled["info"].id).cursor == str(total - 3)


HOSTILE = [
    (("nope", "--since", "2h"), "unknown connection 'nope'"),
    (("pay", "--since", "someday"), "--since: 'someday' is not a time"),
    (("pay", "--since", "2999-01-01"), "is in the future"),
]


def test_cli_hostile_input_is_one_line(db_url, ctx):
    for args, words in HOSTILE:  # one store for every case: a store per case costs seconds on PostgreSQL
        result = wb(db_url, "connection", "rewind", *args)
        assert result.exit_code != 0 and "Traceback" not in result.output
        [line] = result.stderr.strip().splitlines()
        assert line.startswith("error: ") and words in line, line
