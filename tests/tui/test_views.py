"""The TUI read models (workbench.services.views), on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support import capture, pi_event
from workbench.services import connections, queries
from workbench.services.context import ServiceContext
from workbench.services.errors import ServiceError
from workbench.services.ingest import ingest
from workbench.services.views import (
    Vocabulary,
    deliveries_pair,
    delivery_against_state,
    filter_vocabulary,
    parse_record_filter,
    records_page,
)

VOCABULARY = Vocabulary(frozenset({"completed", "needs_review"}), frozenset({"payment"}), {"acme": "con_1"})


def test_parse_filter_terms() -> None:
    parse = parse_record_filter
    assert parse("", VOCABULARY).describe() == "all records"
    flt = parse("needs_review payment acme pi_3Ab", VOCABULARY)
    assert (flt.status, flt.kind, flt.connection, flt.connection_id, flt.external_prefix) == (
        "needs_review", "payment", "acme", "con_1", "pi_3Ab")
    assert parse("rec_01a", VOCABULARY).record_prefix == "rec_01a"
    assert parse("re", VOCABULARY).record_prefix == "re"  # typing an internal ID
    assert parse("status:completed ext:rec_x id:rec_0", VOCABULARY).external_prefix == "rec_x"
    assert parse("conn:nope", VOCABULARY).problems == ("no connection 'nope'",)
    assert parse('"unclosed', VOCABULARY).external_prefix == '"unclosed'


def test_vocabulary_reads_kinds_and_connections(db_ctx: ServiceContext) -> None:
    vocabulary = filter_vocabulary(db_ctx)
    assert vocabulary.kinds == {"payment"}
    assert set(vocabulary.connections) == {"acme", "globex"}
    assert "needs_review" in vocabulary.statuses


def ids(page: Any) -> list[str]:
    return [row.id for row in page.rows]


def test_pages_walk_forward_and_back(db_ctx: ServiceContext) -> None:
    everything = [r["id"] for r in queries.iter_records(db_ctx)]
    flt = parse_record_filter("", filter_vocabulary(db_ctx))
    first = records_page(db_ctx, flt, limit=3)
    assert ids(first) == everything[:3] and not first.has_before and first.has_after
    second = records_page(db_ctx, flt, after=first.rows[-1].position, limit=3)
    assert ids(second) == everything[3:6] and second.has_before and second.has_after
    third = records_page(db_ctx, flt, after=second.rows[-1].position, limit=3)
    assert ids(third) == everything[6:] and not third.has_after
    back = records_page(db_ctx, flt, before=third.rows[0].position, limit=3)
    assert ids(back) == everything[3:6] and back.has_before
    again = records_page(db_ctx, flt, at=second.rows[0].position, limit=3)
    assert ids(again) == ids(second) and again.has_before


def test_filters_match_what_they_say(db_ctx: ServiceContext) -> None:
    vocabulary = filter_vocabulary(db_ctx)
    records = list(queries.iter_records(db_ctx))

    def expect(text: str, keep: Any) -> None:
        page = records_page(db_ctx, parse_record_filter(text, vocabulary))
        assert sorted(ids(page)) == sorted(r["id"] for r in records if keep(r)), text

    expect("needs_review", lambda r: r["status"] == "needs_review")
    expect("globex", lambda r: r["connection"] == "globex")
    expect("acme needs_review", lambda r: r["connection"] == "acme" and r["status"] == "needs_review")
    expect("pi_3Glob", lambda r: r["provider_refs"][0]["external_id"].startswith("pi_3Glob"))
    expect("pi_3acme", lambda r: False)  # external IDs are case-sensitive
    expect("kind:payment completed", lambda r: r["status"] == "completed")
    expect(records[2]["id"][:-3], lambda r: r["id"].startswith(records[2]["id"][:-3]))
    expect(records[2]["id"], lambda r: r["id"] == records[2]["id"])
    expect("pi_3_", lambda r: False)  # _ and % are literal, not wildcards
    expect("pi_%", lambda r: False)


def test_external_prefix_pages_in_external_id_order(db_ctx: ServiceContext) -> None:
    flt = parse_record_filter("pi_3", filter_vocabulary(db_ctx))
    first = records_page(db_ctx, flt, limit=4)
    rest = records_page(db_ctx, flt, after=first.rows[-1].position, limit=4)
    externals = [row.external_ids[0] for row in first.rows + rest.rows]
    assert externals == sorted(externals) and len(externals) == 7
    assert first.order == "external_id" and not rest.has_after
    back = records_page(db_ctx, flt, before=rest.rows[0].position, limit=4)
    assert ids(back) == ids(first)


def test_the_same_external_id_in_two_connections(db_ctx: ServiceContext) -> None:
    connections.add_connection(db_ctx, "initech", "stripe", "sandbox")
    ingest(db_ctx, "initech", [capture(pi_event("evt_dup", "pi_3AcmeAAA", "processing", 1_793_534_400))])
    page = records_page(db_ctx, parse_record_filter("pi_3AcmeAAA", filter_vocabulary(db_ctx)), limit=1)
    following = records_page(db_ctx, page.filter, after=page.rows[0].position, limit=1)
    assert {page.rows[0].connection, following.rows[0].connection} == {"acme", "initech"}


def test_diff_pairs(db_ctx: ServiceContext) -> None:
    record = next(r for r in queries.iter_records(db_ctx) if r["provider_refs"][0]["external_id"] == "pi_3AcmeAAA")
    deliveries = [e["id"] for e in queries.iter_events(db_ctx, record_id=record["id"])]
    pair = deliveries_pair(db_ctx, deliveries[0], deliveries[2])
    assert pair.left.ref == deliveries[0] and pair.left.value["type"] == "payment_intent.created"
    assert pair.right.value["data"]["object"]["client_secret"] == "[redacted]"
    state = delivery_against_state(db_ctx, deliveries[2], record["id"])
    assert state.left.value["status"] == state.right.value["status"] == "completed"
    broken = next(e["id"] for e in queries.iter_events(db_ctx) if e["verdict"] == "invalid")
    with pytest.raises(ServiceError):
        delivery_against_state(db_ctx, broken, record["id"])


def test_the_timelines_first_window_is_its_tail(db_ctx: ServiceContext) -> None:
    # The timeline screen paints first from load_timeline(limit=...), which reads only the
    # deliveries that can be among the newest entries: with notes, assignments and retries
    # mixed in, it must still be exactly the tail of the whole timeline.
    from workbench.services import timeline, triage

    failure = next(iter(queries.iter_failures(db_ctx, open_only=True, connection="acme")))
    triage.assign(db_ctx, [failure["id"]], "alice", note="looking")
    triage.retry(db_ctx, [failure["id"]])
    for record in queries.iter_records(db_ctx):
        full = timeline.load_timeline(db_ctx, record["id"])
        for newest in (1, 3, 100):
            window = timeline.load_timeline(db_ctx, record["id"], limit=newest)
            assert window.record == full.record
            assert window.entries == full.entries[-newest:]


def test_a_connection_pages_through_its_references(db_ctx: ServiceContext) -> None:
    vocabulary = filter_vocabulary(db_ctx)
    flt = parse_record_filter("acme", vocabulary)
    first = records_page(db_ctx, flt, limit=2)
    assert first.order == "connection"
    pages = [first]
    while pages[-1].has_after:
        pages.append(records_page(db_ctx, flt, after=pages[-1].rows[-1].position, limit=2))
    externals = [row.external_ids[0] for page in pages for row in page.rows]
    assert externals == sorted(externals) and len(externals) == 5
    assert all(row.connection == "acme" for page in pages for row in page.rows)
    back = records_page(db_ctx, flt, before=pages[1].rows[0].position, limit=2)
    assert ids(back) == ids(first)
    # A rare status with the connection: served from the status index, in internal ID order.
    rare = records_page(db_ctx, parse_record_filter("acme needs_review", vocabulary))
    assert rare.order == "id" and len(rare.rows) == 2
