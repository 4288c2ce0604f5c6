"""Error-queue triage: group, resolve and ignore with a note, retry, replay, assign; single and
bulk; every action audited and visible in the record's timeline."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from adapters.stripe import StripeAdapter
from store.database import reading, writing
from store.models import Command, Delivery, Failure, FailureNote
from tests.support import T0, acting_as, add_stripe, capture, pi_event
from tests.test_replay import _record, drifted, store_snapshot, with_new_mapping
from workbench.services import audit, commands, triage
from workbench.services.errors import NotFound, ServiceError
from workbench.services.ingest import ingest
from workbench.services.queries import iter_failures
from workbench.services.timeline import load_timeline

CREATED = int(T0.timestamp())
failures = Failure.__table__
notes = FailureNote.__table__
deliveries = Delivery.__table__


def rejected(ctx, external_id: str = "pi_1", name: str = "acme") -> dict[str, Any]:
    """A completed payment, then a `processing` event the state machine refuses."""
    ingest(ctx, name, [capture(pi_event(f"evt_{external_id}_a", external_id, "succeeded", CREATED))])
    ingest(ctx, name, [capture(pi_event(f"evt_{external_id}_c", external_id, "processing", CREATED + 60),
                               T0 + timedelta(seconds=60))])
    [failure] = [f for f in iter_failures(ctx) if f["record_id"] == _record(ctx, external_id).id]
    assert (failure["category"], failure["state"]) == ("business_rule_rejection", "needs_review")
    return failure


def failure(ctx, failure_id: str) -> dict[str, Any]:
    return triage.failure_detail(ctx, failure_id)


def audit_count(ctx) -> int:
    return audit.verify(ctx).checked


@pytest.fixture
def one(ctx):
    add_stripe(ctx)
    return rejected(ctx)


# -- resolve / ignore ------------------------------------------------------------------------------

def test_resolve_and_ignore_need_a_note(ctx, one):
    before = store_snapshot(ctx)
    for action in (triage.resolve, triage.ignore, triage.reopen):
        for note in (None, "", "   \n"):
            with pytest.raises(ServiceError, match="note"):
                action(ctx, [one["id"]], note)
    assert store_snapshot(ctx) == before


@pytest.mark.parametrize("action, state, verb", [(triage.resolve, "resolved", "failure.resolve"),
                                                 (triage.ignore, "ignored", "failure.ignore")])
def test_resolve_and_ignore_write_state_note_and_audit_and_show_in_the_timeline(ctx, one, action, state, verb):
    analyst = acting_as(ctx, "user:maria.ops", "operator")
    seq = audit_count(ctx)
    result = action(analyst, [one["id"]], "  provider confirmed  ")
    assert result.done == [one["id"]] and result.skipped == []
    detail = failure(ctx, one["id"])
    assert detail["state"] == state
    assert [(n["actor"], n["note"]) for n in detail["notes"]] == [("user:maria.ops", "provider confirmed")]
    [entry] = audit.search(ctx, limit=audit_count(ctx) - seq)
    assert (entry["action"], entry["target_id"], entry["actor"]) == (verb, one["id"], "user:maria.ops")
    assert (entry["before"], entry["after"], entry["reason"]) == (
        {"state": "needs_review"}, {"state": state}, "provider confirmed")
    story = load_timeline(ctx, one["record_id"])
    assert any(e.kind == "audit" and verb in e.summary and "provider confirmed" in e.summary for e in story.entries)
    assert any(e.kind == "note" and "provider confirmed" in e.summary for e in story.entries)
    assert any(e.kind == "failure" and f"[{state}]" in e.summary for e in story.entries)
    # the error queue no longer holds it
    assert [f["id"] for f in iter_failures(ctx, open_only=True)] == []
    assert triage.groups(ctx) == [] and len(triage.groups(ctx, open_only=False)) == 1


def test_a_closed_failure_cannot_be_closed_again_but_can_be_reopened(ctx, one):
    triage.resolve(ctx, [one["id"]], "done")
    again = triage.ignore(ctx, [one["id"]], "changed my mind")
    assert again.done == [] and again.skipped == [(one["id"], "cannot go from resolved to ignored")]
    assert triage.resolve(ctx, [one["id"]], "again").skipped == [(one["id"], "already resolved")]
    assert triage.reopen(ctx, [one["id"]], "not done after all").done == [one["id"]]
    assert failure(ctx, one["id"])["state"] == "open"


def test_unknown_failure_is_skipped_and_empty_selection_refused(ctx, one):
    result = triage.resolve(ctx, ["fail_nope", one["id"]], "x")
    assert result.done == [one["id"]] and result.skipped == [("fail_nope", "no failure 'fail_nope'")]
    with pytest.raises(ServiceError):
        triage.resolve(ctx, [], "x")
    with pytest.raises(NotFound):
        triage.failure_detail(ctx, "fail_nope")


# -- retry -----------------------------------------------------------------------------------------

def test_retry_of_a_rejected_event_stays_in_review_with_a_note(ctx, one):
    record = _record(ctx)
    seq = audit_count(ctx)
    result = triage.retry(ctx, [one["id"]], "checking again")
    assert result.done == [one["id"]]
    assert result.messages[one["id"]].startswith("retry: rejected")
    detail = failure(ctx, one["id"])
    assert detail["state"] == "needs_review"
    [note] = detail["notes"]
    assert note["note"].startswith("retry: rejected") and note["note"].endswith("- checking again")
    # The event was re-run as a replayed copy of the original; the record did not move and no
    # second failure was opened for the same problem.
    with reading(ctx.engine) as conn:
        copy = conn.execute(select(deliveries).where(deliveries.c.replay_of == one["event_id"])).one()
        assert conn.execute(select(func.count()).select_from(failures)).scalar_one() == 1
    assert (copy.source, copy.verdict, copy.record_id) == ("replay", "rejected", record.id)
    assert (_record(ctx).status, _record(ctx).version) == (record.status, record.version)
    [entry] = audit.search(ctx, limit=audit_count(ctx) - seq)
    assert entry["action"] == "failure.retry" and entry["after"] == {"state": "needs_review"}


def test_retry_after_the_blocking_condition_changed_resolves(ctx, one):
    # The provider's (late) review status moves the completed payment to needs_review, from
    # where the refused `processing` event is allowed.
    ingest(ctx, "acme", [capture(pi_event("evt_review", "pi_1", "requires_review", CREATED + 30, "payment_intent.updated"))])
    assert _record(ctx).status == "needs_review"
    result = triage.retry(ctx, [one["id"]])
    assert result.messages[one["id"]].startswith("retry: applied")
    assert failure(ctx, one["id"])["state"] == "resolved"
    assert _record(ctx).status == "processing"
    story = load_timeline(ctx, "pi_1")
    assert any(e.kind == "transition" and "needs_review -> processing" in e.summary for e in story.entries)
    assert any(e.kind == "audit" and "failure.retry" in e.summary for e in story.entries)


def test_retry_under_a_new_mapping_resolves_a_contract_mismatch(ctx):
    add_stripe(ctx)
    drifted(ctx)
    [mismatch] = list(iter_failures(ctx))
    assert mismatch["category"] == "contract_mismatch"
    assert triage.retry(ctx, [mismatch["id"]]).messages[mismatch["id"]].startswith("retry: stale")
    assert failure(ctx, mismatch["id"])["state"] == "needs_review"
    assert triage.retry(with_new_mapping(ctx), [mismatch["id"]]).messages[mismatch["id"]] == \
        "retry: applied (provider status 'requires_review')"
    assert failure(ctx, mismatch["id"])["state"] == "resolved"
    assert _record(ctx).status == "processing"


def test_closed_failures_cannot_be_retried(ctx, one):
    for close in (triage.resolve, triage.ignore):
        close(ctx, [one["id"]], "closed")
        before = store_snapshot(ctx)
        result = triage.retry(ctx, [one["id"]])
        assert result.done == [] and "reopen it first" in result.skipped[0][1]
        assert store_snapshot(ctx) == before
        triage.reopen(ctx, [one["id"]], "next case")


def test_retry_of_a_command_failure_returns_the_command_to_the_outbox(ctx):
    info = add_stripe(ctx)
    ingest(ctx, "acme", [capture(pi_event("evt_1", "pi_1", "processing", CREATED))])
    cmd_table = Command.__table__
    with writing(ctx.engine) as conn:
        command_id = commands.enqueue(conn, ctx, connection_id=info.id, record_id=_record(ctx).id,
                                      intent="capture_payment", payload={"amount": 2000})
        command = conn.execute(select(cmd_table).where(cmd_table.c.id == command_id)).one()
        outcome = StripeAdapter().classify_response(None, timed_out=True)
        failure_id = commands.record_attempt(conn, ctx, command=command, provider="stripe", number=1, request={},
                                             response_status=None, response_body=None, latency_ms=30000,
                                             category=outcome.category, code=outcome.code, message=outcome.message)
    assert failure(ctx, failure_id)["category"] == "timeout"
    triage.assign(ctx, [failure_id], "ops")  # any state but closed may be retried
    result = triage.retry(ctx, [failure_id])
    assert result.messages[failure_id] == "retry: command returned to the outbox"
    assert failure(ctx, failure_id)["state"] == "retrying"
    with reading(ctx.engine) as conn:
        assert conn.execute(select(cmd_table.c.status).where(cmd_table.c.id == command_id)).scalar_one() == "pending"


# -- replay from the queue, assign, notes ------------------------------------------------------------

def test_replay_from_the_queue_resolves_when_the_record_leaves_review(ctx):
    add_stripe(ctx)
    drifted(ctx)
    [mismatch] = list(iter_failures(ctx))
    unchanged = triage.replay_records(ctx, [mismatch["id"]])
    assert unchanged.messages[mismatch["id"]] == "replay: belief unchanged"
    assert failure(ctx, mismatch["id"])["state"] == "needs_review"
    result = triage.replay_records(with_new_mapping(ctx), [mismatch["id"]], "mapping v2 shipped")
    assert result.messages[mismatch["id"]] == "replay: needs_review -> processing"
    detail = failure(ctx, mismatch["id"])
    assert detail["state"] == "resolved"
    assert detail["notes"][-1]["note"] == "replay: needs_review -> processing - mapping v2 shipped"
    assert {e["action"] for e in audit.search(ctx, limit=3)} >= {"failure.replay", "record.replay"}


def test_assign_records_who_with_an_audit_entry(ctx, one):
    result = triage.assign(acting_as(ctx, "user:lead", "operator"), [one["id"]], " maria.ops ", "yours")
    assert result.messages == {one["id"]: "assigned to maria.ops"}
    detail = failure(ctx, one["id"])
    assert detail["assignee"] == "maria.ops" and detail["state"] == "needs_review"
    assert [n["note"] for n in detail["notes"]] == ["yours"]
    [entry] = audit.search(ctx, "failure.assign")
    assert (entry["before"], entry["after"], entry["actor"]) == ({"assignee": None}, {"assignee": "maria.ops"},
                                                                 "user:lead")
    triage.assign(ctx, [one["id"]], "dev.lee")
    assert audit.search(ctx, "failure.assign")[0]["before"] == {"assignee": "maria.ops"}
    with pytest.raises(ServiceError):
        triage.assign(ctx, [one["id"]], "  ")


def test_add_note_is_audited_and_needs_text(ctx, one):
    triage.add_note(ctx, one["id"], "called the customer")
    assert failure(ctx, one["id"])["notes"][0]["note"] == "called the customer"
    assert audit.search(ctx, "failure.note")[0]["reason"] == "called the customer"
    with pytest.raises(ServiceError):
        triage.add_note(ctx, one["id"], " ")
    with pytest.raises(NotFound):
        triage.add_note(ctx, "fail_nope", "x")


def test_detail_carries_the_policy(ctx, one):
    detail = failure(ctx, one["id"])
    assert detail["policy"]["recovery"] == "block_workflow" and detail["policy"]["retryable"] is False
    assert set(detail) >= {"id", "category", "state", "record_id", "event_id", "fingerprint", "message", "notes"}


# -- bulk and groups -----------------------------------------------------------------------------------

def test_bulk_resolve_reports_progress_and_audits_each(ctx):
    add_stripe(ctx)
    ids = [rejected(ctx, f"pi_{i}")["id"] for i in range(5)]
    seq = audit_count(ctx)
    seen: list[tuple[int, int]] = []
    result = triage.resolve(ctx, ids, "bulk: provider confirmed", lambda done, total: seen.append((done, total)))
    assert result.done == ids and result.skipped == []
    assert seen == [(1, 5), (2, 5), (3, 5), (4, 5), (5, 5)]
    trail = audit.search(ctx, limit=audit_count(ctx) - seq)
    assert sorted(e["target_id"] for e in trail) == sorted(ids)
    assert {e["action"] for e in trail} == {"failure.resolve"}
    with reading(ctx.engine) as conn:
        assert conn.execute(select(func.count()).select_from(notes)).scalar_one() == 5


def test_bulk_with_some_that_cannot_be_done_handles_the_rest(ctx):
    add_stripe(ctx)
    ids = [rejected(ctx, f"pi_{i}")["id"] for i in range(3)]
    triage.ignore(ctx, [ids[1]], "noise")
    seen: list[tuple[int, int]] = []
    result = triage.retry(ctx, ids + ["fail_nope"], progress=lambda d, t: seen.append((d, t)))
    assert result.done == [ids[0], ids[2]]
    assert [failure_id for failure_id, _ in result.skipped] == [ids[1], "fail_nope"]
    assert seen[-1] == (4, 4)


def test_groups_by_category_connection_and_fingerprint(ctx):
    add_stripe(ctx, "acme")
    add_stripe(ctx, "globex")
    for i in range(3):
        rejected(ctx, f"pi_{i}", "acme")
    rejected(ctx, "pi_9", "globex")
    drifted(ctx, "pi_d", "acme")
    ingest(ctx, "acme", [capture(b"not json at all")])
    got = [(g.category, g.connection, g.count) for g in triage.groups(ctx)]
    assert got == [("business_rule_rejection", "acme", 3), ("business_rule_rejection", "globex", 1),
                   ("contract_mismatch", "acme", 1), ("validation", "acme", 1)]
    acme = triage.groups(ctx)[0]
    assert acme.oldest <= acme.newest and "completed -> processing" in acme.sample_message
    same = list(iter_failures(ctx, fingerprint=acme.fingerprint, connection="acme"))
    assert len(same) == 3
    assert [g.count for g in triage.groups(ctx, category="validation")] == [1]
    triage.resolve(ctx, [f["id"] for f in same], "all three")
    assert [(g.category, g.connection) for g in triage.groups(ctx)] == [
        ("business_rule_rejection", "globex"), ("contract_mismatch", "acme"), ("validation", "acme")]
