"""Read models for lists: records with their references, deliveries and failures, paged and
filtered the same on both backends."""

from __future__ import annotations

import pytest

from tests.support import T0, add_stripe, capture, pi_event
from workbench.services.errors import NotFound
from workbench.services.ingest import ingest
from workbench.services.queries import iter_events, iter_failures, iter_records

CREATED = int(T0.timestamp())


@pytest.fixture
def two_connections(ctx):
    add_stripe(ctx, "acme")
    add_stripe(ctx, "globex")
    ingest(ctx, "acme", [capture(pi_event(f"evt_{i}", f"pi_{i}", "processing" if i % 3 else "succeeded", CREATED + i))
                         for i in range(11)])
    ingest(ctx, "globex", [capture(pi_event("evt_g", "pi_g", "processing", CREATED)), capture(b"garbage")])
    ingest(ctx, "acme", [capture(pi_event("evt_late", "pi_0", "processing", CREATED + 99))])  # rejected
    return ctx


@pytest.mark.parametrize("chunk", [1, 2, 3, 5000])
def test_records_page_without_losing_or_repeating_any(two_connections, chunk):
    items = list(iter_records(two_connections, chunk=chunk))
    assert len(items) == 12 and len({i["id"] for i in items}) == 12
    assert [i["id"] for i in items] == sorted(i["id"] for i in items)
    assert all(len(i["provider_refs"]) == 1 for i in items)
    refs = sorted(i["provider_refs"][0]["external_id"] for i in items)
    assert refs == sorted([f"pi_{i}" for i in range(11)] + ["pi_g"])


def test_record_filters(two_connections):
    assert [r["provider_refs"][0]["external_id"] for r in iter_records(two_connections, connection="globex")] == ["pi_g"]
    completed = list(iter_records(two_connections, status="completed", chunk=2))
    assert sorted(r["provider_refs"][0]["external_id"] for r in completed) == ["pi_0", "pi_3", "pi_6", "pi_9"]
    assert list(iter_records(two_connections, connection="globex", status="completed")) == []


@pytest.mark.parametrize("chunk", [1, 4, 5000])
def test_events_page_in_arrival_order(two_connections, chunk):
    events = list(iter_events(two_connections, chunk=chunk))
    assert len(events) == 14
    assert [e["provider_event_id"] for e in events][:11] == [f"evt_{i}" for i in range(11)]
    assert [e["connection"] for e in events][11:] == ["globex", "globex", "acme"]
    assert [e["verdict"] for e in events][11:] == ["applied", "invalid", "rejected"]


def test_event_filters(two_connections):
    assert len(list(iter_events(two_connections, connection="globex"))) == 2
    pi_0 = next(r["id"] for r in iter_records(two_connections) if r["provider_refs"][0]["external_id"] == "pi_0")
    assert [e["provider_event_id"] for e in iter_events(two_connections, record_id=pi_0)] == ["evt_0", "evt_late"]


def test_failure_filters(two_connections):
    everything = list(iter_failures(two_connections, chunk=1))
    assert sorted((f["category"], f["connection"]) for f in everything) == [
        ("business_rule_rejection", "acme"), ("validation", "globex")]
    assert [f["category"] for f in iter_failures(two_connections, connection="globex")] == ["validation"]
    assert [f["category"] for f in iter_failures(two_connections, category="business_rule_rejection")] == [
        "business_rule_rejection"]
    fp = everything[0]["fingerprint"]
    assert [f["fingerprint"] for f in iter_failures(two_connections, fingerprint=fp)] == [fp]
    assert len(list(iter_failures(two_connections, state="needs_review", open_only=True))) == 2
    assert list(iter_failures(two_connections, state="resolved")) == []


@pytest.mark.parametrize("query", [iter_records, iter_events, iter_failures])
def test_an_unknown_connection_is_refused_before_anything_is_listed(two_connections, query):
    with pytest.raises(NotFound, match="nope"):
        query(two_connections, connection="nope")  # raised on the call, not on the first item
