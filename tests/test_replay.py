"""Replay: stored raw events re-run through the current (or a changed) mapping. A dry run
writes nothing; a real replay explains every change and is idempotent."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from adapters import AdapterRegistry
from adapters.stripe import StripeAdapter
from store.database import reading
from store.models import Base, Record, Transition
from tests.support import T0, acting_as, add_stripe, capture, pi_event
from workbench.domain.canonical import MappedEvent
from workbench.domain.statuses import Status
from workbench.services import audit
from workbench.services.context import ServiceContext
from workbench.services.errors import NotFound
from workbench.services.ingest import ingest
from workbench.services.replay import replay

CREATED = int(T0.timestamp())
V2 = "stripe.payment_intent/2"


class ReviewAwareStripe(StripeAdapter):
    """The Stripe adapter under a newer mapping that knows `requires_review` (a status from a
    newer API version) and maps it to processing."""

    mapping_version = V2

    def map(self, event: Any) -> Any:
        mapped = super().map(event)
        if not isinstance(mapped, MappedEvent):
            return mapped
        status = Status.PROCESSING if mapped.provider_status == "requires_review" else mapped.status
        return dataclasses.replace(mapped, status=status, mapping_version=V2)


def with_new_mapping(ctx: ServiceContext) -> ServiceContext:
    return dataclasses.replace(ctx, adapters=AdapterRegistry({"stripe": ReviewAwareStripe()}))


def store_snapshot(ctx: ServiceContext) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, for before/after comparisons."""
    with reading(ctx.engine) as conn:
        return {name: sorted(tuple(map(repr, row)) for row in conn.execute(select(table)))
                for name, table in Base.metadata.tables.items()}


def _record(ctx, external_id: str = "pi_1") -> Any:
    from store.models import ProviderRef

    refs = ProviderRef.__table__
    records = Record.__table__
    with reading(ctx.engine) as conn:
        return conn.execute(select(records).join(refs, refs.c.record_id == records.c.id)
                            .where(refs.c.external_id == external_id)).one()


def _transitions(ctx, record_id: str) -> Sequence[Any]:
    t = Transition.__table__
    with reading(ctx.engine) as conn:
        return conn.execute(select(t).where(t.c.record_id == record_id).order_by(t.c.version)).all()


def drifted(ctx, external_id: str = "pi_1", name: str = "acme") -> None:
    """A payment that went to review because of a status our mapping did not know."""
    ingest(ctx, name, [capture(pi_event(f"evt_{external_id}_1", external_id, "processing", CREATED)),
                       capture(pi_event(f"evt_{external_id}_2", external_id, "requires_review", CREATED + 5,
                                        "payment_intent.updated"), T0 + timedelta(seconds=5))])
    assert _record(ctx, external_id).status == "needs_review"


@pytest.fixture
def review(ctx):
    add_stripe(ctx)
    drifted(ctx)
    return ctx


def test_current_mapping_on_a_consistent_store_changes_nothing(review):
    before = store_snapshot(review)
    report = replay(review, dry_run=True)
    assert (report.examined, report.changes) == (1, [])
    assert store_snapshot(review) == before


def test_dry_run_reports_the_change_and_writes_nothing(review):
    new = with_new_mapping(review)
    before = store_snapshot(review)
    report = replay(new, dry_run=True)
    assert store_snapshot(review) == before  # not even an audit entry
    [change] = report.changes
    record = _record(review)
    assert (change.record_id, change.external_id, change.connection) == (record.id, "pi_1", "acme")
    assert (change.from_status, change.to_status) == ("needs_review", "processing")
    assert change.changed_fields == ()  # the fields already hold what the provider said
    assert V2 in change.reason
    assert change.as_dict()["from"] == "needs_review" and change.as_dict()["to"] == "processing"


def test_mapping_change_takes_the_record_out_of_review_explained_and_audited(review):
    new = acting_as(with_new_mapping(review), "user:engineer", "operator")
    record = _record(review)
    seq_before = audit.verify(review).checked
    report = replay(new)
    assert [(c.from_status, c.to_status) for c in report.changes] == [("needs_review", "processing")]
    after = _record(review)
    assert (after.status, after.version) == ("processing", record.version + 1)
    assert after.fields["provider_status"] == "requires_review"
    last = _transitions(review, record.id)[-1]
    assert (last.from_status, last.to_status, last.cause) == ("needs_review", "processing", "replay")
    assert (last.actor, last.mapping_version, last.version) == ("user:engineer", V2, after.version)
    assert last.delivery_id is not None  # the evidence: the stored event that now decides
    trail = audit.search(new)[: audit.verify(review).checked - seq_before]
    assert {e["action"] for e in trail} == {"record.replay", "replay.run"}
    [entry] = [e for e in trail if e["action"] == "record.replay"]
    assert entry["target_id"] == record.id and entry["actor"] == "user:engineer"
    assert entry["before"] == {"status": "needs_review", "version": record.version}
    assert entry["after"] == {"status": "processing", "version": record.version + 1}
    assert audit.verify(review).ok


def test_replaying_twice_changes_nothing_the_second_time(review):
    new = with_new_mapping(review)
    assert len(replay(new).changes) == 1
    before = store_snapshot(review)
    second = replay(new)
    assert second.changes == [] and second.examined == 1
    after = store_snapshot(review)
    # Only the run itself is audited again; no record, transition or failure changed.
    assert {k: v for k, v in after.items() if k not in ("audit_entries", "audit_head")} == \
        {k: v for k, v in before.items() if k not in ("audit_entries", "audit_head")}
    assert len(after["audit_entries"]) == len(before["audit_entries"]) + 1
    assert replay(new, dry_run=True).changes == []


def test_replay_by_record_internal_or_external_id_touches_only_that_record(ctx):
    add_stripe(ctx)
    drifted(ctx, "pi_1")
    drifted(ctx, "pi_2")
    new = with_new_mapping(ctx)
    by_external = replay(new, record="pi_2", dry_run=True)
    assert by_external.examined == 1 and [c.external_id for c in by_external.changes] == ["pi_2"]
    report = replay(new, record=_record(ctx, "pi_1").id)
    assert [c.external_id for c in report.changes] == ["pi_1"]
    assert (_record(ctx, "pi_1").status, _record(ctx, "pi_2").status) == ("processing", "needs_review")
    with pytest.raises(NotFound):
        replay(new, record="pi_missing")


def test_replay_by_connection_leaves_other_connections_alone(ctx):
    add_stripe(ctx, "acme")
    add_stripe(ctx, "globex")
    drifted(ctx, "pi_1", "acme")
    drifted(ctx, "pi_2", "globex")
    report = replay(with_new_mapping(ctx), connection="globex")
    assert report.examined == 1 and [c.connection for c in report.changes] == ["globex"]
    assert (_record(ctx, "pi_1").status, _record(ctx, "pi_2").status) == ("needs_review", "processing")
    with pytest.raises(NotFound):
        replay(ctx, connection="nope")


def test_replay_derives_belief_in_provider_order_whatever_the_arrival_order(ctx):
    """Completed, then a processing event the state machine rejected, then (late) the drift
    event that moved the record to review: in provider order the processing event is allowed."""
    add_stripe(ctx)
    ingest(ctx, "acme", [capture(pi_event("evt_1", "pi_1", "succeeded", CREATED))])
    ingest(ctx, "acme", [capture(pi_event("evt_3", "pi_1", "processing", CREATED + 60))])  # rejected
    ingest(ctx, "acme", [capture(pi_event("evt_2", "pi_1", "requires_review", CREATED + 30, "payment_intent.updated"))])
    assert _record(ctx).status == "needs_review"
    [change] = replay(ctx, dry_run=True).changes
    assert (change.from_status, change.to_status) == ("needs_review", "processing")
    replay(ctx)
    assert _record(ctx).status == "processing"
    assert replay(ctx).changes == []


def test_duplicates_and_unparseable_deliveries_do_not_disturb_replay(ctx):
    add_stripe(ctx)
    events = [pi_event("evt_1", "pi_1", "processing", CREATED), pi_event("evt_2", "pi_1", "succeeded", CREATED + 9)]
    ingest(ctx, "acme", [capture(e) for e in events])
    ingest(ctx, "acme", [capture(e, T0 + timedelta(hours=1)) for e in events] + [capture(b"not json")])
    before = store_snapshot(ctx)
    assert replay(ctx, dry_run=True).changes == []
    assert store_snapshot(ctx) == before
    replay(ctx)
    assert _record(ctx).version == 2


def test_replay_progress_counts_records(ctx):
    add_stripe(ctx)
    ingest(ctx, "acme", [capture(pi_event(f"evt_{i}", f"pi_{i}", "processing", CREATED + i)) for i in range(5)])
    seen: list[int] = []
    report = replay(ctx, dry_run=True, progress=seen.append)
    assert report.examined == 5 and seen[-1] == 5
    with reading(ctx.engine) as conn:
        assert conn.execute(select(func.count()).select_from(Transition.__table__)).scalar_one() == 5


def test_replay_of_a_record_is_narrowed_by_its_connection(ctx):
    add_stripe(ctx)
    add_stripe(ctx, "other")
    ingest(ctx, "acme", [capture(pi_event("evt_a1", "pi_shared", "processing", CREATED))])
    ingest(ctx, "other", [capture(pi_event("evt_o1", "pi_shared", "succeeded", CREATED))])
    with pytest.raises(NotFound, match="names 2 records"):
        replay(ctx, record="pi_shared", dry_run=True)
    assert replay(ctx, connection="other", record="pi_shared", dry_run=True).examined == 1
    with pytest.raises(NotFound, match="in that connection"):
        replay(ctx, connection="other", record="pi_missing", dry_run=True)
