"""Ingest: raw first, duplicates, ordering, the state machine and contract drift, on both backends."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select

from store.database import reading
from store.models import Delivery, Failure, Record, Transition
from tests.support import T0, add_stripe, capture, pi_event
from workbench.services.ingest import ingest

CREATED = int(T0.timestamp())


def _records(ctx):
    with reading(ctx.engine) as conn:
        return {r.id: r for r in conn.execute(select(Record.__table__))}


def _one_record(ctx):
    records = _records(ctx)
    assert len(records) == 1
    return next(iter(records.values()))


def _verdicts(ctx):
    with reading(ctx.engine) as conn:
        return [r.verdict for r in conn.execute(select(Delivery.__table__).order_by(Delivery.__table__.c.id))]


def _failures(ctx):
    with reading(ctx.engine) as conn:
        return list(conn.execute(select(Failure.__table__)))


def test_in_order_lifecycle_ends_completed_with_explained_transitions(ctx):
    add_stripe(ctx)
    events = [pi_event("evt_1", "pi_1", "requires_payment_method", CREATED, "payment_intent.created"),
              pi_event("evt_2", "pi_1", "processing", CREATED + 5),
              pi_event("evt_3", "pi_1", "succeeded", CREATED + 9)]
    report = ingest(ctx, "acme", [capture(e) for e in events])
    assert report.counts == {"applied": 3}
    record = _one_record(ctx)
    assert (record.status, record.version, record.kind) == ("completed", 3, "payment")
    with reading(ctx.engine) as conn:
        rows = conn.execute(select(Transition.__table__).order_by(Transition.__table__.c.version)).all()
    assert [(t.from_status, t.to_status) for t in rows] == [(None, "submitted"), ("submitted", "processing"),
                                                            ("processing", "completed")]
    assert all(t.mapping_version == "stripe.payment_intent/1" and t.delivery_id for t in rows)
    assert {t.cause for t in rows} == {"event"}


def test_redelivered_event_is_a_duplicate_and_changes_nothing(ctx):
    add_stripe(ctx)
    event = pi_event("evt_1", "pi_1", "processing", CREATED)
    ingest(ctx, "acme", [capture(event)])
    before = _one_record(ctx)
    report = ingest(ctx, "acme", [capture(event, T0 + timedelta(hours=1)), capture(event, T0 + timedelta(hours=2))])
    assert report.counts == {"duplicate": 2}
    after = _one_record(ctx)
    assert (after.status, after.version) == (before.status, before.version)
    assert _verdicts(ctx) == ["applied", "duplicate", "duplicate"]


def test_the_same_capture_again_is_already_stored_not_a_redelivery(ctx):
    add_stripe(ctx)
    event = pi_event("evt_1", "pi_1", "processing", CREATED)
    ingest(ctx, "acme", [capture(event)])
    # The same capture line (receipt, headers, body) twice more: nothing stored again.
    assert ingest(ctx, "acme", [capture(event), capture(event)]).counts == {"already_stored": 2}
    assert _verdicts(ctx) == ["applied"]
    # Another receipt of the same event is a real redelivery.
    assert ingest(ctx, "acme", [capture(event, T0 + timedelta(seconds=1))]).counts == {"duplicate": 1}


def test_duplicate_inside_one_batch(ctx):
    add_stripe(ctx)
    event = pi_event("evt_1", "pi_1", "processing", CREATED)
    assert ingest(ctx, "acme", [capture(event), capture(event, T0 + timedelta(seconds=1))]).counts == {
        "applied": 1, "duplicate": 1}


def test_late_event_is_stale_evidence_without_transition(ctx):
    add_stripe(ctx)
    ingest(ctx, "acme", [capture(pi_event("evt_2", "pi_1", "succeeded", CREATED + 10))])
    report = ingest(ctx, "acme", [capture(pi_event("evt_1", "pi_1", "processing", CREATED))])
    assert report.counts == {"stale": 1}
    record = _one_record(ctx)
    assert (record.status, record.version) == ("completed", 1)


def test_tie_in_occurrence_time_goes_to_the_event_further_along(ctx):
    add_stripe(ctx)
    ingest(ctx, "acme", [capture(pi_event("evt_b", "pi_1", "succeeded", CREATED)),
                         capture(pi_event("evt_a", "pi_1", "processing", CREATED))])
    assert _one_record(ctx).status == "completed"
    assert _verdicts(ctx) == ["applied", "stale"]


def test_payment_failed_event_means_failed_whatever_the_status(ctx):
    add_stripe(ctx)
    ingest(ctx, "acme", [capture(pi_event("evt_1", "pi_1", "requires_payment_method", CREATED,
                                          "payment_intent.payment_failed"))])
    assert _one_record(ctx).status == "failed"


def test_failed_payment_may_be_retried_to_completed(ctx):
    add_stripe(ctx)
    ingest(ctx, "acme", [
        capture(pi_event("evt_1", "pi_1", "requires_payment_method", CREATED, "payment_intent.payment_failed")),
        capture(pi_event("evt_2", "pi_1", "succeeded", CREATED + 3)),
    ])
    assert _one_record(ctx).status == "completed"


def test_forbidden_transition_is_rejected_with_a_failure(ctx):
    add_stripe(ctx)
    ingest(ctx, "acme", [capture(pi_event("evt_1", "pi_1", "succeeded", CREATED))])
    report = ingest(ctx, "acme", [capture(pi_event("evt_2", "pi_1", "processing", CREATED + 60))])
    assert report.counts == {"rejected": 1}
    record = _one_record(ctx)
    assert (record.status, record.version) == ("completed", 1)
    [failure] = _failures(ctx)
    assert (failure.category, failure.state, failure.record_id) == ("business_rule_rejection", "needs_review", record.id)
    assert "completed -> processing" in failure.message


def test_unknown_provider_status_sends_record_to_review_and_opens_contract_mismatch(ctx):
    add_stripe(ctx)
    ingest(ctx, "acme", [capture(pi_event("evt_1", "pi_1", "processing", CREATED)),
                         capture(pi_event("evt_2", "pi_1", "requires_review", CREATED + 5, "payment_intent.updated"))])
    record = _one_record(ctx)
    assert record.status == "needs_review"
    [failure] = _failures(ctx)
    assert failure.category == "contract_mismatch" and "requires_review" in failure.message
    assert failure.record_id == record.id


def test_garbage_body_is_stored_exactly_with_verdict_invalid_and_a_failure(ctx):
    add_stripe(ctx)
    garbage = b'{"id": "evt_1", "type": "payment_intent.succ'
    report = ingest(ctx, "acme", [capture(garbage, headers={"Stripe-Signature": "t=1,v1=ab"})])
    assert report.counts == {"invalid": 1}
    with reading(ctx.engine) as conn:
        row = conn.execute(select(Delivery.__table__)).one()
    assert row.body == garbage and row.headers == {"Stripe-Signature": "t=1,v1=ab"}
    [failure] = _failures(ctx)
    assert failure.category == "validation" and failure.delivery_id == row.id
    # The same garbage delivered again is recognised by its payload hash.
    assert ingest(ctx, "acme", [capture(garbage)]).counts == {"duplicate": 1}
    assert len(_failures(ctx)) == 1


def test_event_the_mapping_does_not_cover_is_stored_and_ignored(ctx):
    add_stripe(ctx)
    event = {"id": "evt_c", "type": "customer.created", "created": CREATED, "data": {"object": {"id": "cus_1"}}}
    assert ingest(ctx, "acme", [capture(event)]).counts == {"ignored": 1}
    assert _records(ctx) == {} and _failures(ctx) == []


def test_event_missing_its_object_is_a_contract_mismatch(ctx):
    add_stripe(ctx)
    event = {"id": "evt_x", "type": "payment_intent.succeeded", "created": CREATED, "data": {}}
    assert ingest(ctx, "acme", [capture(event)]).counts == {"invalid": 1}
    assert [f.category for f in _failures(ctx)] == ["contract_mismatch"]


def test_invalid_canonical_field_is_a_validation_failure(ctx):
    add_stripe(ctx)
    event = pi_event("evt_1", "pi_1", "processing", CREATED, amount=-5)
    assert ingest(ctx, "acme", [capture(event)]).counts == {"invalid": 1}
    assert [f.category for f in _failures(ctx)] == ["validation"]


def test_credentials_in_headers_never_rest_in_plain_text(ctx):
    add_stripe(ctx)
    ingest(ctx, "acme", [capture(pi_event("evt_1", "pi_1", "processing", CREATED),
                                 headers={"Authorization": "Bearer sk_live_abcdefghijklmnop"})])
    with reading(ctx.engine) as conn:
        headers = conn.execute(select(Delivery.__table__.c.headers)).scalar_one()
    assert "sk_live" not in str(headers) and headers["Authorization"].startswith("[redacted]")


def test_field_change_without_status_change_bumps_version(ctx):
    add_stripe(ctx)
    ingest(ctx, "acme", [capture(pi_event("evt_1", "pi_1", "requires_payment_method", CREATED)),
                         capture(pi_event("evt_2", "pi_1", "requires_action", CREATED + 1, amount=2500))])
    record = _one_record(ctx)
    assert (record.status, record.version, record.fields["amount"]) == ("submitted", 2, 2500)


def test_many_records_across_batches(ctx):
    add_stripe(ctx)
    events = [pi_event(f"evt_{i}", f"pi_{i % 50}", "processing" if i < 50 else "succeeded", CREATED + i)
              for i in range(100)]
    report = ingest(ctx, "acme", [capture(e) for e in events], batch_size=7)
    assert report.counts == {"applied": 100}
    statuses = {r.status for r in _records(ctx).values()}
    assert statuses == {"completed"} and len(_records(ctx)) == 50
    with reading(ctx.engine) as conn:
        assert conn.execute(select(func.count()).select_from(Transition.__table__)).scalar_one() == 100


def test_a_redelivery_belongs_to_its_original_record(ctx):
    add_stripe(ctx)
    event = pi_event("evt_1", "pi_1", "processing", CREATED)
    # original and redelivery in one batch, and again later
    ingest(ctx, "acme", [capture(event), capture(event, T0 + timedelta(seconds=1))])
    ingest(ctx, "acme", [capture(event, T0 + timedelta(seconds=2))])
    record = _one_record(ctx)
    with reading(ctx.engine) as conn:
        rows = conn.execute(select(Delivery.__table__.c.verdict, Delivery.__table__.c.record_id)).all()
    assert sorted(rows) == [("applied", record.id), ("duplicate", record.id), ("duplicate", record.id)]


def test_capture_lines_among_many_stored_ones_of_the_same_times(ctx):
    """A file whose receipt times interleave with many stored lines' (the lookup cannot take
    them by time range alone): new lines are stored, repeated ones recognised."""
    add_stripe(ctx)
    many = [capture(pi_event(f"evt_{i}", f"pi_{i}", "processing", CREATED), T0 + timedelta(seconds=i))
            for i in range(300)]
    assert ingest(ctx, "acme", many).counts == {"applied": 300}
    interleaved = [capture(pi_event("evt_a", "pi_a", "processing", CREATED), T0 + timedelta(seconds=10)),
                   capture(pi_event("evt_b", "pi_b", "processing", CREATED), T0 + timedelta(seconds=290)),
                   many[150]]
    assert ingest(ctx, "acme", interleaved).counts == {"applied": 2, "already_stored": 1}
    assert ingest(ctx, "acme", interleaved).counts == {"already_stored": 3}
    assert ingest(ctx, "acme", many[:200]).counts == {"already_stored": 200}
    assert len(_verdicts(ctx)) == 302
