"""The outbox dispatcher against the payroll chaos sandbox and localstripe, on both backends:
every attempt recorded and shown in the record's timeline; a timeout that hid a success, a
429 storm and a 5xx burst all end in exactly one side effect per command in the sandbox's
ledger; a used-up schedule needs review; an authentication failure stops the connection's
calls until its API key reference changes; 20 payment.create make exactly 20 intents."""

from __future__ import annotations

import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from store.database import reading, writing
from store.models import Attempt, Command, Failure, ProviderRef, Record, Transition
from tests.engine_support import KEY, RUN, add_key, callable_connection, ledger, sandbox, set_chaos
from tests.stripe_servers import API_KEY, card_payment_method, localstripe, localstripe_server, payment_intents
from workbench.services import command_submit, dispatch, provider_calls, reconcile, sync_state, timeline
from workbench.services.connections import get_connection
from workbench.services.context import ServiceContext
from workbench.services.dispatch_bulk import Answer, record_many
from workbench.vault import UnlockedVault

__all__ = ["localstripe", "localstripe_server", "sandbox"]  # fixtures, imported to be found

FAST = {"sync": {"interval_s": 60, "retry_schedule_s": [0, 0, 0, 0, 0, 0, 0, 0]}}


def clients(ctx: ServiceContext, unlocked: UnlockedVault, timeout_s: float = 5.0) -> dispatch.Clients:
    return dispatch.Clients(lambda info: provider_calls.open_client(ctx, info.name, {"sandbox": unlocked},
                                                                    timeout_s=timeout_s))


def rows(ctx: ServiceContext, table: Any, **where: Any) -> list[Any]:
    query = select(table)
    for name, value in where.items():
        query = query.where(table.c[name] == value)
    with reading(ctx.engine) as conn:
        return list(conn.execute(query))


def drain(ctx: ServiceContext, pool: dispatch.Clients, timeout_s: float = 30.0) -> None:
    """Dispatch until no command is pending or dispatching (retries due after Retry-After)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        dispatch.dispatch_once(ctx, pool)
        if not [c for c in rows(ctx, Command.__table__) if c.status in ("pending", "dispatching")]:
            return
        time.sleep(0.2)
    raise AssertionError("commands still pending: " + repr([(c.id, c.status) for c in rows(ctx, Command.__table__)]))


def submit_runs(ctx: ServiceContext, name: str, count: int) -> list[str]:
    return [command_submit.submit(ctx, name, "payroll_run.submit", {**RUN, "amount": 1000 + i}).command
            for i in range(count)]


def created_per_reference(base: str) -> Counter[str]:
    return Counter(entry["reference"] for entry in ledger(base, "run.created"))


def test_dispatch_records_attempts_moves_records_and_shows_in_the_timeline(ctx: ServiceContext, sandbox: str) -> None:
    set_chaos(sandbox)
    unlocked = callable_connection(ctx, "pay", "payroll", sandbox, settings=FAST)
    submitted = [command_submit.submit(ctx, "pay", "payroll_run.submit", {**RUN, "amount": 1000 + i})
                 for i in range(3)]
    pool = clients(ctx, unlocked)
    try:
        report = dispatch.dispatch_once(ctx, pool)
    finally:
        pool.close()
    assert report.claimed == 3 and report.outcomes == {("pay", "ok"): 3}
    operations = {c.operation_id for c in rows(ctx, Command.__table__)}
    assert set(created_per_reference(sandbox)) >= operations
    for item in submitted:
        (command,) = rows(ctx, Command.__table__, id=item.command)
        assert (command.status, command.attempts) == ("succeeded", 1)
        (record,) = rows(ctx, Record.__table__, id=item.record)
        assert (record.status, record.version, record.fields["reference"]) == ("submitted", 2, command.operation_id)
        (ref,) = rows(ctx, ProviderRef.__table__, record_id=item.record)
        assert ref.kind == "payroll_run" and ref.external_id.startswith("run_")
        (attempt,) = rows(ctx, Attempt.__table__, command_id=item.command)
        assert attempt.outcome == "ok" and attempt.response_status == 201
        assert attempt.request["intent"] == "payroll_run.submit" and KEY not in str(attempt.request)
        entries = timeline.load_timeline(ctx, item.record).entries
        kinds = [entry.kind for entry in entries]
        assert "attempt" in kinds and "command" in kinds and kinds.count("transition") == 2


def test_a_groups_answers_are_written_together_like_one_by_one(ctx: ServiceContext, sandbox: str) -> None:
    """record_many over one group: successes in bulk, a failure by its category's policy, a
    claim lost meanwhile (another engine took it over) left to its new holder."""
    set_chaos(sandbox, fail_5xx=1)  # the first call of the group fails
    unlocked = callable_connection(ctx, "pay", "payroll", sandbox, settings=FAST)
    submit_runs(ctx, "pay", 4)
    claimed = dispatch.claim(ctx, limit=10)
    pool = clients(ctx, unlocked)
    try:
        connection = get_connection(ctx, "pay")
        paths = dispatch.answer_paths(ctx.adapters.get("payroll").redacted_paths)
        capabilities = ctx.adapters.get("payroll").capabilities
        answers = [Answer(connection, item, dispatch.send(pool.get(connection), capabilities, item), paths)
                   for item in claimed]
    finally:
        pool.close()
    lost = claimed[3]
    with writing(ctx.engine) as conn:  # another engine's claim, after ours expired
        conn.execute(update(Command.__table__).where(Command.__table__.c.id == lost.id)
                     .values(next_attempt_at=lost.deadline + timedelta(minutes=1)))
    with writing(ctx.engine) as conn:
        outcomes = record_many(conn, ctx, answers)
    assert [o.outcome if o else None for o in outcomes] == ["provider_outage", "ok", "ok", None]
    commands = {c.id: c for c in rows(ctx, Command.__table__)}
    assert [commands[i.id].status for i in claimed] == ["pending", "succeeded", "succeeded", "dispatching"]
    assert [commands[i.id].attempts for i in claimed] == [1, 1, 1, 0]
    assert sorted(a.command_id for a in rows(ctx, Attempt.__table__)) == sorted(i.id for i in claimed[:3])
    (failure,) = rows(ctx, Failure.__table__)
    assert (failure.command_id, failure.category, failure.state) == (claimed[0].id, "provider_outage", "retrying")
    for item, answer in zip(claimed[1:3], answers[1:3], strict=True):
        (record,) = rows(ctx, Record.__table__, id=item.record_id)
        assert (record.status, record.version, record.fields["reference"]) == ("submitted", 2, item.operation_id)
        (ref,) = rows(ctx, ProviderRef.__table__, record_id=item.record_id)
        assert answer.result.body is not None and ref.external_id == answer.result.body["id"]
        moved = [t for t in rows(ctx, Transition.__table__, record_id=item.record_id) if t.version == 2]
        assert [(t.cause, t.command_id, t.to_status) for t in moved] == [("command", item.id, "submitted")]
    assert [r.status for r in rows(ctx, Record.__table__, id=claimed[3].record_id)] == ["draft"]


def test_a_batch_dispatched_in_parallel_ends_like_one_by_one(ctx: ServiceContext, sandbox: str) -> None:
    set_chaos(sandbox, latency_ms=5)
    unlocked = callable_connection(ctx, "pay", "payroll", sandbox, settings=FAST)
    submit_runs(ctx, "pay", 40)
    pool = clients(ctx, unlocked)
    senders = ThreadPoolExecutor(8)
    try:
        report = dispatch.dispatch_once(ctx, pool, limit=64, senders=senders, parallel=8)
    finally:
        senders.shutdown()
        pool.close()
    set_chaos(sandbox)
    assert report.claimed == 40 and report.outcomes == {("pay", "ok"): 40}
    commands = rows(ctx, Command.__table__)
    assert all(created_per_reference(sandbox)[c.operation_id] == 1 for c in commands)
    assert Counter(a.command_id for a in rows(ctx, Attempt.__table__)) == Counter({c.id: 1 for c in commands})
    assert Counter(r.status for r in rows(ctx, Record.__table__)) == Counter({"submitted": 40})
    assert len(rows(ctx, ProviderRef.__table__)) == 40 and len(rows(ctx, Transition.__table__)) == 80


def test_chaos_timeouts_429s_and_5xx_end_in_one_side_effect_per_command(ctx: ServiceContext, sandbox: str) -> None:
    unlocked = callable_connection(ctx, "pay", "payroll", sandbox, settings=FAST)
    pool = clients(ctx, unlocked, timeout_s=1.0)
    try:
        set_chaos(sandbox, timeout_after_commit=2, timeout_hang_s=3.0)  # the write happened, the answer is lost
        timed_out = submit_runs(ctx, "pay", 2)
        dispatch.dispatch_once(ctx, pool)
        # The client looked the run up after the timeout and found it: one attempt, a success.
        first = {a.command_id: a.outcome for a in rows(ctx, Attempt.__table__)}
        assert [first[c] for c in timed_out] == ["ok", "ok"]
        reasons = {t.reason for t in rows(ctx, Transition.__table__) if t.command_id in timed_out}
        assert "payroll_run.submit succeeded (found_after_timeout)" in reasons
        set_chaos(sandbox, rate_limit=6, retry_after_s=1)  # a 429 storm, Retry-After 1 s
        submit_runs(ctx, "pay", 2)
        started = time.monotonic()
        dispatch.dispatch_once(ctx, pool)
        set_chaos(sandbox, fail_5xx=5)
        submit_runs(ctx, "pay", 2)
        drain(ctx, pool)
        assert time.monotonic() - started >= 1.0  # Retry-After was honoured
    finally:
        pool.close()
    commands = rows(ctx, Command.__table__)
    assert {c.status for c in commands} == {"succeeded"}
    made = created_per_reference(sandbox)
    assert all(made[c.operation_id] == 1 for c in commands)  # exactly one side effect each
    outcomes = Counter(a.outcome for a in rows(ctx, Attempt.__table__))
    assert outcomes["rate_limit"] >= 1 and outcomes["provider_outage"] >= 1
    failures = rows(ctx, Failure.__table__)
    assert failures and all(f.state == "resolved" for f in failures)  # each retried to success
    # One failure per command and category, however many attempts failed that way.
    assert len({(f.command_id, f.category) for f in failures}) == len(failures)


def test_a_retry_after_an_expired_claim_looks_up_before_sending(ctx: ServiceContext, sandbox: str) -> None:
    """An engine died mid-call after the provider made the run: the command's claim expires,
    the next claim takes it over and finds the run by our reference instead of posting."""
    set_chaos(sandbox)
    unlocked = callable_connection(ctx, "pay", "payroll", sandbox, settings=FAST)
    (command_id,) = submit_runs(ctx, "pay", 1)
    (lost,) = dispatch.claim(ctx, claim_s=0.0)  # claimed, then the engine died: the deadline is now
    pool = clients(ctx, unlocked)
    try:
        api = pool.get(get_connection(ctx, "pay"))
        made = api.send("payroll_run.submit", RUN, reference=lost.operation_id, idempotency_key=None)
        assert made.outcome.category is None  # the dead engine's call reached the provider
        time.sleep(0.01)
        report = dispatch.dispatch_once(ctx, pool)
    finally:
        pool.close()
    assert (report.claimed, report.taken_over, report.outcomes) == (1, 1, {("pay", "ok"): 1})
    (attempt,) = rows(ctx, Attempt.__table__, command_id=command_id)
    assert attempt.request["method"] == "GET"  # a lookup, no second POST
    assert created_per_reference(sandbox)[lost.operation_id] == 1


def test_a_used_up_schedule_needs_review(ctx: ServiceContext, sandbox: str) -> None:
    unlocked = callable_connection(ctx, "pay", "payroll", sandbox,
                                   settings={"sync": {"interval_s": 60, "retry_schedule_s": [0]}})
    set_chaos(sandbox, fail_5xx=50)
    (command_id,) = submit_runs(ctx, "pay", 1)
    pool = clients(ctx, unlocked)
    try:
        dispatch.dispatch_once(ctx, pool)
        dispatch.dispatch_once(ctx, pool)
        assert dispatch.dispatch_once(ctx, pool).claimed == 0
    finally:
        pool.close()
        set_chaos(sandbox)
    (command,) = rows(ctx, Command.__table__, id=command_id)
    assert (command.status, command.attempts) == ("failed", 2)
    (failure,) = rows(ctx, Failure.__table__, command_id=command_id)  # one item in the queue, not two
    assert (failure.category, failure.state) == ("provider_outage", "needs_review")
    assert failure.message.startswith("attempt 2: ")


def test_authentication_stops_the_connection_until_its_key_changes(ctx: ServiceContext, sandbox: str) -> None:
    set_chaos(sandbox)
    unlocked = callable_connection(ctx, "pay", "payroll", sandbox, key="sk_revoked", settings=FAST)
    (command_id,) = submit_runs(ctx, "pay", 1)
    pool = clients(ctx, unlocked)
    try:
        report = dispatch.dispatch_once(ctx, pool)
        assert report.outcomes == {("pay", "authentication"): 1}
        info = get_connection(ctx, "pay")
        state = sync_state.all_states(ctx)[info.id]
        assert state.calls_stopped_at is not None and state.stopped_key == sync_state.current_key(info, ctx.clock())
        assert state.calls_stopped_reason
        submit_runs(ctx, "pay", 1)
        assert dispatch.dispatch_once(ctx, pool).claimed == 0  # stopped: nothing is sent
        assert not sync_state.resume_if_rotated(ctx, info, state)  # same key: still stopped
        add_key(ctx, "pay", KEY)  # the rotation
        info = get_connection(ctx, "pay")
        assert sync_state.resume_if_rotated(ctx, info, state)
        drain(ctx, pool)
    finally:
        pool.close()
    assert {c.status for c in rows(ctx, Command.__table__)} == {"succeeded"}
    (command,) = rows(ctx, Command.__table__, id=command_id)
    assert command.attempts == 2
    assert created_per_reference(sandbox)[command.operation_id] == 1


def test_twenty_payment_creates_make_exactly_twenty_intents_and_reconcile_without_drift(
        ctx: ServiceContext, localstripe: str) -> None:
    unlocked = callable_connection(ctx, "shop", "stripe", localstripe, key=API_KEY, settings=FAST)
    method = card_payment_method(localstripe)
    for i in range(20):
        command_submit.submit(ctx, "shop", "payment.create",
                              {"amount": 1000 + i, "currency": "usd", "payment_method": method})
    pool = clients(ctx, unlocked)
    try:
        drain(ctx, pool)
        assert dispatch.dispatch_once(ctx, pool).claimed == 0
    finally:
        pool.close()
    intents = payment_intents(localstripe)
    assert len(intents) == 20
    ours = {c.operation_id for c in rows(ctx, Command.__table__)}
    assert {i["metadata"]["workbench_reference"] for i in intents} == ours
    assert {r.status for r in rows(ctx, Record.__table__)} == {"submitted"}
    assert len(rows(ctx, ProviderRef.__table__)) == 20
    # What the commands left us believing is what Stripe holds: reconciliation finds no drift.
    report = reconcile.reconcile(ctx, "shop", vaults={"sandbox": unlocked})
    assert (report.status, report.records_checked, report.provider_objects, report.findings) == ("finished", 20, 20, 0)


@pytest.fixture(autouse=True)
def _calm_after(request: pytest.FixtureRequest) -> Any:
    yield
    if "sandbox" in request.fixturenames:
        set_chaos(request.getfixturevalue("sandbox"))
