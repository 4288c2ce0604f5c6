"""The timeline of one record: deliveries, transitions, failures, notes, commands, attempts and
audit entries, merged in time order, found by internal or external ID."""

from __future__ import annotations

from datetime import timedelta

import orjson
import pytest
from sqlalchemy import select

from adapters.stripe import StripeAdapter
from store.database import writing
from store.models import Command
from tests.support import T0, acting_as, add_stripe, capture, make_context, pi_event
from tests.test_replay import with_new_mapping
from workbench.services import commands, connections, triage
from workbench.services.errors import NotFound
from workbench.services.ingest import ingest
from workbench.services.queries import iter_failures, iter_records
from workbench.services.replay import replay
from workbench.services.timeline import load_timeline, record_state

CREATED = int(T0.timestamp())
R0 = T0 - timedelta(days=1)  # the provider's traffic, well before the (deterministic) clock's actions
KINDS = {"delivery", "transition", "failure", "note", "audit", "command", "attempt"}


@pytest.fixture
def story(engine):
    """pi_1: created, processing, completed, then a rejected late `processing` event that an
    analyst resolves with a note, and a command whose attempt hit a rate limit."""
    ctx = make_context(engine, deterministic=True)
    add_stripe(ctx)
    ingest(ctx, "acme", [capture(pi_event("evt_1", "pi_1", "requires_payment_method", CREATED, "payment_intent.created"), R0),
                         capture(pi_event("evt_2", "pi_1", "processing", CREATED + 5), R0 + timedelta(seconds=5)),
                         capture(pi_event("evt_3", "pi_1", "succeeded", CREATED + 9), R0 + timedelta(seconds=9))])
    ingest(ctx, "acme", [capture(pi_event("evt_4", "pi_1", "processing", CREATED + 60), R0 + timedelta(seconds=60))])
    ingest(ctx, "acme", [capture(pi_event("evt_9", "pi_9", "processing", CREATED), R0)])  # another record
    [failure] = list(iter_failures(ctx))
    triage.resolve(acting_as(ctx, "user:maria.ops", "operator"), [failure["id"]], "late event, provider agrees it succeeded")
    record_id = failure["record_id"]
    adapter = StripeAdapter()
    with writing(ctx.engine) as conn:
        command_id = commands.enqueue(conn, ctx, connection_id=connections.get_connection(ctx, "acme").id,
                                      record_id=record_id, intent="refund_payment", payload={"amount": 500})
        command = conn.execute(select(Command.__table__).where(Command.__table__.c.id == command_id)).one()
        outcome = adapter.classify_response(429, {"error": {"code": "rate_limit", "message": "slow down"}},
                                            {"Retry-After": "2"})
        commands.record_attempt(conn, ctx, command=command, provider="stripe", number=1,
                                request={"headers": {"Authorization": "Bearer sk_live_abcdefghijklmnop"}},
                                response_status=429, response_body=None, latency_ms=40,
                                category=outcome.category, code=outcome.code, message=outcome.message)
    return ctx, record_id, failure["id"]


def test_internal_and_external_ids_give_the_same_story(story):
    ctx, record_id, _ = story
    by_internal = load_timeline(ctx, record_id).as_dict()
    by_external = load_timeline(ctx, "pi_1").as_dict()
    assert by_internal == by_external
    assert by_internal["record"]["id"] == record_id
    assert by_internal["record"]["provider_refs"] == [{"provider": "stripe", "external_id": "pi_1"}]
    assert (by_internal["record"]["status"], by_internal["record"]["version"]) == ("completed", 3)


def test_every_kind_is_present_and_only_this_records(story):
    ctx, record_id, failure_id = story
    entries = load_timeline(ctx, "pi_1").entries
    assert {e.kind for e in entries} == KINDS
    assert [e.detail["provider_event_id"] for e in entries if e.kind == "delivery"] == ["evt_1", "evt_2", "evt_3", "evt_4"]
    assert [e.summary.split(" v")[0] for e in entries if e.kind == "transition"] == [
        "(new) -> submitted", "submitted -> processing", "processing -> completed"]
    failures = [e for e in entries if e.kind == "failure"]
    assert {e.detail["category"] for e in failures} == {"business_rule_rejection", "rate_limit"}
    assert any(e.kind == "audit" and "failure.resolve" in e.summary and e.detail["target"] == failure_id
               for e in entries)
    assert any(e.kind == "note" and "provider agrees" in e.summary and "user:maria.ops" in e.summary for e in entries)
    assert "pi_9" not in orjson.dumps(load_timeline(ctx, "pi_1").as_dict()).decode()


def test_entries_are_in_time_order_with_causes_before_conclusions(story):
    ctx, _, _ = story
    entries = load_timeline(ctx, "pi_1").entries
    assert [e.at for e in entries] == sorted(e.at for e in entries)
    kinds = [e.kind for e in entries]
    # Each delivery is followed by what it caused: the rejected one by its failure.
    assert kinds[:6] == ["delivery", "transition", "delivery", "transition", "delivery", "transition"]
    assert kinds[6:8] == ["delivery", "failure"]
    # The analyst acted after the failure was raised; the resolution note and audit come later.
    assert kinds.index("note") > kinds.index("failure") and kinds.index("audit") > kinds.index("failure")


def test_limit_keeps_the_newest_entries(story):
    ctx, _, _ = story
    full = load_timeline(ctx, "pi_1").entries
    assert load_timeline(ctx, "pi_1", limit=3).entries == full[-3:]


def test_json_shape(story):
    ctx, _, _ = story
    data = orjson.loads(orjson.dumps(load_timeline(ctx, "pi_1").as_dict()))
    assert set(data) == {"record", "entries"}
    assert set(data["record"]) >= {"id", "connection", "kind", "status", "version", "fields", "updated_at",
                                   "provider_refs"}
    for entry in data["entries"]:
        assert set(entry) == {"at", "kind", "id", "summary", "detail"}
        assert entry["at"].endswith("+00:00")
    attempt = next(e for e in data["entries"] if e["kind"] == "attempt")
    assert attempt["detail"]["request"]["headers"]["Authorization"] == "[redacted]"
    assert "sk_live" not in orjson.dumps(data).decode()


def test_unknown_and_ambiguous_ids(ctx):
    add_stripe(ctx, "acme")
    add_stripe(ctx, "globex")
    for name in ("acme", "globex"):
        ingest(ctx, name, [capture(pi_event("evt_1", "pi_shared", "processing", CREATED))])
    with pytest.raises(NotFound, match="no record"):
        load_timeline(ctx, "pi_nowhere")
    with pytest.raises(NotFound, match="internal ID"):
        load_timeline(ctx, "pi_shared")
    ids = [r["id"] for r in iter_records(ctx)]
    assert {load_timeline(ctx, i).record["connection"] for i in ids} == {"acme", "globex"}
    assert record_state(ctx, ids[0])["id"] == ids[0]


def test_a_replay_shows_after_the_problem_it_fixed(engine):
    """The replay's transition happened when the replay ran, not when the provider's event
    arrived: it must read after the failure that sent the record to review."""
    ctx = make_context(engine, deterministic=True)
    add_stripe(ctx)
    ingest(ctx, "acme", [capture(pi_event("evt_1", "pi_1", "processing", CREATED), R0),
                         capture(pi_event("evt_2", "pi_1", "requires_review", CREATED + 5, "payment_intent.updated"),
                                 R0 + timedelta(seconds=5))])
    replay(with_new_mapping(ctx))
    entries = load_timeline(ctx, "pi_1").entries
    assert [e.at for e in entries] == sorted(e.at for e in entries)
    kinds = [e.kind for e in entries]
    replayed = next(i for i, e in enumerate(entries) if e.kind == "transition" and e.detail["cause"] == "replay")
    assert kinds.index("failure") < replayed
    assert entries[-1].kind == "audit" and "record.replay" in entries[-1].summary
    assert entries[replayed].at > entries[kinds.index("failure")].at


def test_a_retried_event_reads_when_it_was_retried(engine):
    """A refused event, retried after the provider's late review status made it allowed: its
    replayed copy and transition read after that status change, so versions read in order."""
    ctx = make_context(engine, deterministic=True)
    add_stripe(ctx)
    ingest(ctx, "acme", [capture(pi_event("evt_1", "pi_1", "succeeded", CREATED), R0)])
    ingest(ctx, "acme", [capture(pi_event("evt_3", "pi_1", "processing", CREATED + 60), R0 + timedelta(seconds=60))])
    ingest(ctx, "acme", [capture(pi_event("evt_2", "pi_1", "requires_review", CREATED + 30, "payment_intent.updated"),
                                 R0 + timedelta(seconds=90))])
    [rejection] = [f for f in iter_failures(ctx) if f["category"] == "business_rule_rejection"]
    assert triage.retry(ctx, [rejection["id"]]).messages[rejection["id"]].startswith("retry: applied")
    entries = load_timeline(ctx, "pi_1").entries
    versions = [e.detail["version"] for e in entries if e.kind == "transition"]
    assert versions == [1, 2, 3]
    copy = next(e for e in entries if e.kind == "delivery" and e.detail["replay_of"])
    review = next(e for e in entries if e.kind == "delivery" and e.detail["provider_event_id"] == "evt_2")
    assert copy.at > review.at
    kinds = [e.kind for e in entries]
    assert kinds[-4:] == ["delivery", "transition", "note", "audit"]  # the copy, its transition, the retry
