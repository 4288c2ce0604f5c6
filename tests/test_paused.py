"""Ingest into a paused connection stores the deliveries (held) and applies them on resume."""

from __future__ import annotations

import gc
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner, Result
from sqlalchemy import func, select

from store.database import open_store, reading
from store.models import AuditEntry, Connection, Delivery, Failure, ProviderRef, Record
from tests.support import T0, add_stripe, capture, capture_line, make_context, pi_event
from workbench.cli.main import cli
from workbench.services import connections
from workbench.services.ingest import ingest

CREATED = int(T0.timestamp())
deliveries = Delivery.__table__

EVENTS: list[dict[str, Any] | bytes] = [
    pi_event("evt_1", "pi_1", "processing", CREATED),
    pi_event("evt_2", "pi_1", "succeeded", CREATED + 10),
    pi_event("evt_2", "pi_1", "succeeded", CREATED + 10),  # redelivered: duplicate
    pi_event("evt_0", "pi_1", "requires_payment_method", CREATED - 10),  # arrives late
    b'{"id": "evt_x", "type": "payment_intent.succ',  # truncated: invalid
    {"id": "evt_c", "object": "event", "type": "customer.created", "created": CREATED, "data": {"object": {}}},
    pi_event("evt_3", "pi_1", "processing", CREATED + 20),  # completed -> processing: rejected
    pi_event("evt_4", "pi_2", "requires_review", CREATED, "payment_intent.updated"),  # unknown status
    pi_event("evt_5", "pi_3", "requires_action", CREATED),
]


@pytest.fixture(autouse=True)
def _release_engines() -> Iterator[None]:
    yield
    gc.collect(1)


def wb(db_url: str, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--db", db_url, *args], catch_exceptions=False)


def capture_file(tmp_path: Path) -> Path:
    path = tmp_path / "captures.jsonl"
    path.write_bytes(b"\n".join(capture_line(e, T0 + timedelta(seconds=i)) for i, e in enumerate(EVENTS)) + b"\n")
    return path


def _snapshot(engine: Any, name: str) -> dict[str, Any]:
    """What a connection's store holds, without IDs that differ between connections."""
    connections_t, refs, records = Connection.__table__, ProviderRef.__table__, Record.__table__
    failures = Failure.__table__
    with reading(engine) as conn:
        cid = conn.execute(select(connections_t.c.id).where(connections_t.c.name == name)).scalar_one()
        beliefs = conn.execute(select(refs.c.external_id, records.c.status, records.c.version, records.c.fields)
                               .join(records, records.c.id == refs.c.record_id)
                               .where(records.c.connection_id == cid)).all()
        verdicts = conn.execute(select(deliveries.c.verdict, func.count()).where(deliveries.c.connection_id == cid)
                                .group_by(deliveries.c.verdict)).all()
        failed = conn.execute(select(failures.c.category, func.count()).where(failures.c.connection_id == cid)
                              .group_by(failures.c.category)).all()
    return {"beliefs": sorted(map(tuple, beliefs)), "verdicts": dict(verdicts), "failures": dict(failed)}


def test_paused_ingest_holds_and_resume_applies_as_an_ingest_would(db_url, tmp_path):
    path = capture_file(tmp_path)
    assert wb(db_url, "db", "upgrade").exit_code == 0
    for name in ("acme", "live"):
        assert wb(db_url, "connection", "add", name, "--provider", "stripe").exit_code == 0
    assert wb(db_url, "connection", "pause", "acme", "--reason", "maintenance").exit_code == 0

    held = wb(db_url, "ingest", "acme", str(path))
    assert held.exit_code == 0, held.output
    assert dict(line.split("\t") for line in held.stdout.splitlines()) == {"held": "9", "total": "9"}
    assert held.stderr.strip() == "connection acme is paused: 9 deliveries stored, they will be applied on resume"
    again = wb(db_url, "ingest", "acme", str(path))  # the same file while paused: stored once
    assert dict(line.split("\t") for line in again.stdout.splitlines()) == {"already_stored": "9", "total": "9"}

    engine = open_store(db_url)
    try:
        paused = _snapshot(engine, "acme")
        assert paused == {"beliefs": [], "verdicts": {"held": 9}, "failures": {}}  # nothing decided yet
        with reading(engine) as conn:
            held_ids = set(conn.execute(select(deliveries.c.id).where(deliveries.c.verdict == "held")).scalars())
            bodies = sorted(bytes(b) for b in conn.execute(select(deliveries.c.body)).scalars())

        resumed = wb(db_url, "connection", "resume", "acme", "--reason", "done")
        assert resumed.exit_code == 0, resumed.output
        assert wb(db_url, "ingest", "live", str(path)).exit_code == 0  # never paused

        # As if it had never been paused: the same records, versions, verdicts and failures.
        after = _snapshot(engine, "acme")
        assert after == _snapshot(engine, "live") and len(after["beliefs"]) == 3
        assert after["verdicts"] == {"applied": 3, "duplicate": 1, "stale": 1, "invalid": 1, "ignored": 1,
                                     "rejected": 1, "failed": 1}
        with reading(engine) as conn:
            acme_id = conn.execute(select(Connection.__table__.c.id)
                                   .where(Connection.__table__.c.name == "acme")).scalar_one()
            rows = conn.execute(select(deliveries.c.id, deliveries.c.body)
                                .where(deliveries.c.connection_id == acme_id)).all()
            audit = [a for a in conn.execute(select(AuditEntry.__table__)) if a.action == "connection.apply_held"]
        assert {r.id for r in rows} == held_ids  # the same deliveries, now decided
        assert sorted(bytes(r.body) for r in rows) == bodies
        [entry] = audit
        assert sum(entry.after["counts"].values()) == 9 and entry.reason == "done"
    finally:
        engine.dispose()


def test_a_held_redelivery_of_an_applied_event_is_a_duplicate_on_resume(engine):
    ctx = make_context(engine)
    add_stripe(ctx)
    event = pi_event("evt_1", "pi_1", "processing", CREATED)
    ingest(ctx, "acme", [capture(event)])
    connections.set_paused(ctx, "acme", True, "incident")
    later = pi_event("evt_2", "pi_1", "succeeded", CREATED + 5)
    report = ingest(ctx, "acme", [capture(event, T0 + timedelta(seconds=1)), capture(later, T0 + timedelta(seconds=2)),
                                  capture(later, T0 + timedelta(seconds=3))])
    assert report.counts == {"held": 3}
    change = connections.change_paused(ctx, "acme", False, "over")
    assert not change.connection.paused
    assert change.applied == Counter({"duplicate": 2, "applied": 1})
    with reading(engine) as conn:
        status = conn.execute(select(Record.__table__.c.status)).scalar_one()
        failures = conn.execute(select(func.count()).select_from(Failure.__table__)).scalar_one()
    assert status == "completed" and failures == 0
    # Resuming again finds nothing held.
    assert connections.change_paused(ctx, "acme", False, "again").applied == Counter()


def test_held_deliveries_show_in_events(db_url, tmp_path):
    assert wb(db_url, "db", "upgrade").exit_code == 0
    assert wb(db_url, "connection", "add", "acme", "--provider", "stripe").exit_code == 0
    assert wb(db_url, "connection", "pause", "acme", "--reason", "r").exit_code == 0
    assert wb(db_url, "ingest", "acme", str(capture_file(tmp_path))).exit_code == 0
    events = orjson.loads(wb(db_url, "events", "--json").stdout)
    assert {e["verdict"] for e in events} == {"held"} and len(events) == 9
    assert all(e["record_id"] is None for e in events)
