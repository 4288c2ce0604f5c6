"""Recovery by filter: the plan counts what matches in the store, the confirmed run touches
exactly that planned set (not what arrives after the plan, not closed failures, not other
connections), one audit entry names the filter and the count, and a cancelled recovery
leaves the rest untouched. Both backends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from click.testing import CliRunner
from sqlalchemy import select, update

from adapters.stripe import StripeAdapter
from store.database import reading, writing
from store.models import Command, Failure, FailureNote
from tests.engine_harness import wait_until
from tests.support import T0, add_stripe
from tests.test_engine_control import Running
from tests.test_triage import rejected
from workbench.cli.main import cli
from workbench.domain.failure_filter import BadFilter, FailureFilter, parse_failure_filter
from workbench.domain.taxonomy import Category
from workbench.engine.daemon import Engine, EngineOptions
from workbench.services import audit, commands, connections, recovery, role_bindings, triage
from workbench.services.connections import ConnectionInfo
from workbench.services.errors import InvalidArgument, NotFound, ServiceError

failures = Failure.__table__
cmd_table = Command.__table__
notes = FailureNote.__table__
NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def command_failure(ctx: Any, info: ConnectionInfo, category: Category, at: datetime) -> str:
    """A failed command and its open failure, recorded at `at`."""
    outcome = StripeAdapter().classify_response(None, timed_out=True)
    with writing(ctx.engine) as conn:
        command_id = commands.enqueue(conn, ctx, connection_id=info.id, record_id=None,
                                      intent="payment.create", payload={"amount": 100})
        command = conn.execute(select(cmd_table).where(cmd_table.c.id == command_id)).one()
        failure_id = commands.record_attempt(conn, ctx, command=command, provider="stripe", number=1, request={},
                                             response_status=None, response_body=None, latency_ms=10,
                                             category=category, code=outcome.code, message=outcome.message)
        assert failure_id is not None
        conn.execute(update(cmd_table).where(cmd_table.c.id == command_id).values(status="failed"))
        conn.execute(update(failures).where(failures.c.id == failure_id).values(created_at=at))
    return failure_id


def snapshot(ctx: Any) -> dict[str, tuple[Any, ...]]:
    """Every failure's state, note count and command status: what a recovery may change."""
    with reading(ctx.engine) as conn:
        counts: dict[str, int] = {}
        for (failure_id,) in conn.execute(select(notes.c.failure_id)):
            counts[failure_id] = counts.get(failure_id, 0) + 1
        rows = conn.execute(select(failures.c.id, failures.c.state, cmd_table.c.status)
                            .select_from(failures.outerjoin(cmd_table, cmd_table.c.id == failures.c.command_id)))
        return {row.id: (row.state, row.status, counts.get(row.id, 0)) for row in rows}


def run_all(ctx: Any) -> None:
    for _ in range(100):
        if not recovery.run_batch(ctx):
            return
    raise AssertionError("the recovery did not finish")


@pytest.fixture
def seeded(ctx: Any) -> dict[str, Any]:
    acme, beta = add_stripe(ctx, "acme"), add_stripe(ctx, "beta")
    minute = timedelta(minutes=1)
    timeouts = [command_failure(ctx, acme, Category.TIMEOUT, T0 + i * minute) for i in range(6)]
    outages = [command_failure(ctx, acme, Category.PROVIDER_OUTAGE, T0 + 3 * minute) for _ in range(2)]
    others = [command_failure(ctx, beta, Category.TIMEOUT, T0 + 3 * minute) for _ in range(2)]
    closed = command_failure(ctx, acme, Category.TIMEOUT, T0 + 3 * minute)
    triage.resolve(ctx, [closed], "handled by hand")
    return {"acme": acme, "timeouts": timeouts, "outages": outages, "others": others, "closed": closed}


def test_a_recovery_touches_exactly_the_planned_set(ctx, seeded):
    flt = recovery.connection_filter(ctx, "acme", since=T0 + timedelta(minutes=2), until=T0 + timedelta(minutes=5),
                                     category="timeout")
    plan = recovery.plan(ctx, flt)
    planned = set(seeded["timeouts"][2:5])
    assert (plan.failures, plan.commands, plan.deliveries) == (3, 3, 0)
    assert [(c.name, c.failures, c.rate_per_s) for c in plan.connections] == [("acme", 3, 25.0)]
    assert plan.connections[0].expected_s == pytest.approx(3 / 25)
    # Matching, but after the plan was shown: not part of what the operator confirmed.
    late = command_failure(ctx, seeded["acme"], Category.TIMEOUT, T0 + timedelta(minutes=3))
    before = snapshot(ctx)
    trail = audit.verify(ctx).checked

    started = recovery.submit(ctx, plan, note="provider back")
    assert (started.state, started.total, started.done) == ("running", 3, 0)
    assert recovery.item_states(ctx, started.id) == dict.fromkeys(planned, "pending")
    run_all(ctx)

    after = snapshot(ctx)
    changed = {failure_id for failure_id in after if after[failure_id] != before[failure_id]}
    assert changed == planned
    for failure_id in planned:  # back in the outbox, the failure retrying, with a note naming the recovery
        assert after[failure_id] == ("retrying", "pending", before[failure_id][2] + 1)
    assert after[late] == before[late]
    [info] = recovery.status(ctx, started.id)
    assert (info.state, info.done, info.skipped, info.pending) == ("finished", 3, 0, 0)
    assert triage.failure_detail(ctx, seeded["timeouts"][2])["notes"][-1]["note"] == \
        f"retry: command returned to the outbox - recovery {started.id}"
    # The whole operation is one audit entry naming the filter and the count.
    assert audit.verify(ctx).checked == trail + 1
    [entry] = audit.search(ctx, limit=1)
    assert entry["action"] == "recovery.start"
    assert entry["after"]["count"] == 3
    assert entry["after"]["filter"] == flt.describe()
    assert "connection=acme" in flt.describe() and "category=timeout" in flt.describe()


def test_a_cancelled_recovery_leaves_the_rest_untouched(ctx, seeded):
    plan = recovery.plan(ctx, parse_failure_filter("connection=acme", NOW))
    assert plan.failures == 8  # six timeouts, two outages; not the resolved one, not beta's
    before = snapshot(ctx)
    started = recovery.submit(ctx, plan)
    assert recovery.run_batch(ctx, batch=3)
    recovery.cancel(ctx, started.id, note="wrong filter")
    assert recovery.run_batch(ctx)  # the engine sees the cancel: closes it, touches nothing more
    assert not recovery.run_batch(ctx)

    states = recovery.item_states(ctx, started.id)
    done = {f for f, s in states.items() if s == "done"}
    assert len(done) == 3 and sorted(s for s in states.values() if s != "done") == ["cancelled"] * 5
    after = snapshot(ctx)
    assert {f for f in after if after[f] != before[f]} == done
    [info] = recovery.status(ctx, started.id)
    assert (info.state, info.done, info.pending) == ("cancelled", 3, 0)
    assert [e["action"] for e in audit.search(ctx, limit=2)] == ["recovery.cancel", "recovery.start"]
    with pytest.raises(ServiceError, match="is cancelled"):
        recovery.cancel(ctx, started.id)


def test_a_planned_failure_closed_meanwhile_is_skipped_saying_why(ctx, seeded):
    started = recovery.submit(ctx, recovery.plan(ctx, parse_failure_filter("category=provider_outage", NOW)))
    first, second = seeded["outages"]
    triage.resolve(ctx, [first], "fixed by hand before the engine got to it")
    run_all(ctx)
    [info] = recovery.status(ctx, started.id)
    assert (info.state, info.done, info.skipped) == ("finished", 1, 1)
    assert recovery.item_states(ctx, started.id) == {first: "skipped", second: "done"}
    assert triage.failure_detail(ctx, first)["state"] == "resolved"  # left as the person left it


def test_free_words_match_in_the_store_as_on_the_screen(ctx, seeded):
    one = rejected(ctx, "pi_9", "acme")  # a delivery failure: re-run through ingest
    flt = parse_failure_filter("BUSINESS_rule", NOW)
    plan = recovery.plan(ctx, flt)
    assert (plan.failures, plan.commands, plan.deliveries) == (1, 0, 1)
    assert flt.matches(one["category"], "acme", one["fingerprint"], one["message"])
    started = recovery.submit(ctx, plan)
    run_all(ctx)
    assert recovery.item_states(ctx, started.id) == {one["id"]: "done"}
    assert triage.failure_detail(ctx, one["id"])["notes"][-1]["note"].startswith("retry: ")


def test_nothing_to_recover_and_bad_requests_are_one_line(ctx, seeded):
    with pytest.raises(ServiceError, match="nothing to recover"):
        recovery.submit(ctx, recovery.plan(ctx, parse_failure_filter("category=authentication", NOW)))
    with pytest.raises(NotFound, match="unknown connection 'nope'"):
        recovery.connection_filter(ctx, "nope", since=T0)
    with pytest.raises(InvalidArgument, match="before"):
        recovery.connection_filter(ctx, "acme", since=T0, until=T0)
    with pytest.raises(InvalidArgument, match="reopen them first"):
        recovery.plan(ctx, FailureFilter(state="resolved"))
    with pytest.raises(NotFound, match="no recovery"):
        recovery.cancel(ctx, "rcv_nope")


@pytest.mark.parametrize("text, problem", [
    ("colour=red", "unknown filter key 'colour'"),
    ("category=nope", "unknown category 'nope'"),
    ("state=closed", "unknown state 'closed'"),
    ("since=yesterday", "since: 'yesterday' is not a time"),
    ("since=2h until=3h", "since must be before until"),
    ("since=2030-01-01", "in the future"),
    ("category=timeout category=timeout", "given twice"),
    ("fingerprint=", "needs a value"),
])
def test_filter_parser_refuses_in_one_line(text, problem):
    with pytest.raises(BadFilter, match=problem):
        parse_failure_filter(text, NOW)


def test_filter_parser_reads_keys_times_and_words():
    flt = parse_failure_filter("category=timeout connection=acme since=2h until=2026-11-29T11:30 Gateway", NOW)
    assert flt == FailureFilter(category="timeout", connection="acme", since=NOW - timedelta(hours=2),
                                until=datetime(2026, 11, 29, 11, 30, tzinfo=UTC), words=("gateway",))
    assert flt.describe() == ("category=timeout connection=acme since=2026-11-29T10:00:00+00:00 "
                              "until=2026-11-29T11:30:00+00:00 gateway")
    assert flt.matches("timeout", "acme", "abc", "Bad Gateway")
    assert not flt.matches("timeout", "acme", "abc", "reset by peer")
    assert not flt.matches("timeout", "beta", "abc", "Bad Gateway")


# -- the CLI ------------------------------------------------------------------------------------

def wb(db_url: str, *args: str, stdin: str | None = None) -> Any:
    return CliRunner().invoke(cli, ["--db", db_url, *args], input=stdin, catch_exceptions=False)


def one_line(result: Any, *words: str) -> None:
    assert result.exit_code != 0
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: ") and "Traceback" not in result.output
    for word in words:
        assert word in line, line


def test_cli_plans_refuses_without_confirmation_then_starts_with_yes(db_url, ctx, seeded):
    before = snapshot(ctx)
    since = (T0 + timedelta(minutes=2)).isoformat()
    refused = wb(db_url, "recover", "acme", "--since", since, "--until", "2026-11-01T12:05Z", "--category", "timeout")
    assert refused.stdout.splitlines()[0] == ("plan: retry 3 failure(s) matching category=timeout connection=acme "
                                              "since=2026-11-01T12:02:00+00:00 until=2026-11-01T12:05:00+00:00")
    assert "acme: 3 failure(s): 3 command(s) back to the outbox, 0 delivery(ies) re-run through ingest; pace 25/s" \
        in refused.stdout
    one_line(refused, "needs a confirmation", "--yes")
    assert recovery.status(ctx) == [] and snapshot(ctx) == before

    started = wb(db_url, "failures", "retry", "--filter", "connection=acme category=provider_outage", "--yes",
                 "--json")
    assert started.exit_code == 0, started.output
    [info] = recovery.status(ctx)
    shown = orjson.loads(started.stdout)
    assert (shown["plan"]["failures"], shown["plan"]["commands"], shown["recovery"]["id"]) == (2, 2, info.id)
    assert [c["connection"] for c in shown["plan"]["connections"]] == ["acme"]
    status = wb(db_url, "recover", "status", info.id, "--json")
    shown = orjson.loads(status.stdout)
    assert (shown["state"], shown["total"], shown["pending"], shown["filter"]) == \
        ("running", 2, 2, "category=provider_outage connection=acme")
    assert wb(db_url, "recover", "cancel", info.id).exit_code == 0
    run_all(ctx)
    assert orjson.loads(wb(db_url, "recover", "status", "--json").stdout)[0]["state"] == "cancelled"
    assert snapshot(ctx) == before


HOSTILE = [
    (("failures", "retry", "--filter", "colour=red"), ("unknown filter key 'colour'",)),
    (("failures", "retry", "--filter", "since=soon"), ("since: 'soon' is not a time",)),
    (("failures", "retry", "f_1", "--filter", "category=timeout"), ("not both",)),
    (("failures", "retry", "--filter", "connection=nope"), ("unknown connection 'nope'",)),
    (("recover", "nope", "--since", "2h"), ("unknown connection 'nope'",)),
    (("recover", "acme", "--since", "last tuesday"), ("--since: 'last tuesday' is not a time",)),
    (("recover", "acme", "--since", "2h", "--until", "3h"), ("--since must be before --until",)),
    (("recover", "acme", "--since", "2h", "--category", "weird"), ("unknown category 'weird'",)),
    (("recover", "status", "rcv_nope"), ("no recovery 'rcv_nope'",)),
    (("recover", "cancel", "rcv_nope\x1b[2J"), ("no recovery",)),
]


def test_cli_hostile_input_is_one_line(db_url, ctx):
    add_stripe(ctx, "acme")
    for args, words in HOSTILE:  # one store for every case: a store per case costs seconds on PostgreSQL
        result = wb(db_url, *args)
        one_line(result, *words)
        assert "\x1b" not in result.output
    assert recovery.status(ctx) == []


def test_a_running_engine_carries_out_a_recovery(ctx, seeded):
    """The engine's recoveries job, in this process: the frozen set retried;
    the connection is paused, so the requeued commands wait in the outbox (nothing dropped)."""
    role_bindings.grant(ctx, "system:engine", "operator", "tests")
    connections.set_paused(ctx, "acme", True, "tests: hold the outbox")
    started = recovery.submit(ctx, recovery.plan(ctx, parse_failure_filter("connection=acme", NOW)))
    engine = Running(Engine(ctx.as_actor("system:engine"), {}, EngineOptions(lease_ttl_s=2, recovery_every_s=0.1)))
    try:
        wait_until(lambda: recovery.status(ctx, started.id)[0].state == "finished", 10)
    finally:
        engine.stop()
    assert set(recovery.item_states(ctx, started.id).values()) == {"done"}
    with reading(ctx.engine) as conn:
        statuses = conn.execute(select(cmd_table.c.status).join(failures, failures.c.command_id == cmd_table.c.id)
                                .where(failures.c.id.in_(seeded["timeouts"] + seeded["outages"]))).scalars().all()
    assert statuses == ["pending"] * 8
