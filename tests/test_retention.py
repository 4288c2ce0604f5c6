"""Retention of raw bodies (issue 9, item 7): purged past each connection's `raw_days`, with
the record's timeline and transitions intact and every reader saying the body is gone."""

from __future__ import annotations

import gc
import io
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import orjson
import pytest
from click.testing import CliRunner, Result
from sqlalchemy import select

from store.database import reading
from store.models import AuditEntry, Delivery, Transition
from tests.support import T0, FixedClock, capture, pi_event, seed_admins, table_counts
from workbench.cli.main import cli
from workbench.domain.ids import IdFactory
from workbench.services import connections, retention
from workbench.services.capture_export import export_captures
from workbench.services.context import ServiceContext
from workbench.services.errors import ServiceError
from workbench.services.ingest import ingest
from workbench.services.payload_settings import PayloadChange, set_payload_settings
from workbench.services.replay import replay
from workbench.services.timeline import delivery_payload, load_timeline
from workbench.vault import KdfParams, create, vault_path

CREATED = int(T0.timestamp())
deliveries = Delivery.__table__
audit_entries = AuditEntry.__table__
NOW = T0 + timedelta(days=40)  # the clock the purge runs by


@pytest.fixture(autouse=True)
def _release_engines() -> Iterator[None]:
    yield
    gc.collect(1)


@pytest.fixture
def later(engine: Any) -> ServiceContext:
    """A context whose clock reads 40 days after the deliveries' receipt (the store's admins
    bound as in every test, so CLI runs in the same test act as an admin too)."""
    seed_admins(engine)
    return ServiceContext(engine=engine, clock=FixedClock(NOW), ids=IdFactory(seed=7), actor="user:tester")


def wb(db_url: str, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--db", db_url, *args], catch_exceptions=False)


def story(ctx: ServiceContext, name: str = "acme", days_old: tuple[int, ...] = (35, 34, 5)) -> None:
    """pi_1's events received `days_old` days before NOW (a redelivery of the first among them)."""
    statuses = ["processing", "succeeded", "succeeded"]
    ingest(ctx, name, [capture(pi_event(f"evt_{i}", "pi_1", statuses[i], CREATED + i), NOW - timedelta(days=days))
                       for i, days in enumerate(days_old)])


def bodies(ctx: ServiceContext) -> list[Any]:
    with reading(ctx.engine) as conn:
        return list(conn.execute(select(deliveries.c.id, deliveries.c.body, deliveries.c.body_purged_at,
                                        deliveries.c.payload_hash, deliveries.c.verdict, deliveries.c.record_id)
                                 .order_by(deliveries.c.received_at)))


def retention_audit(ctx: ServiceContext) -> list[Any]:
    with reading(ctx.engine) as conn:
        return list(conn.execute(select(audit_entries).where(audit_entries.c.action == "retention.purge")))


def test_dry_run_writes_nothing_and_a_run_purges_only_what_is_due(db_url, later):
    connections.add_connection(later, "acme", "stripe", "sandbox")
    connections.add_connection(later, "forever", "stripe", "sandbox")
    story(later)
    story(later, "forever")
    set_payload_settings(later, "acme", PayloadChange(raw_days=30), "policy")
    before = [tuple(row) for row in bodies(later)]
    counts = table_counts(db_url)

    dry = retention.run_retention(later, dry_run=True)
    assert [(c.connection, c.raw_days, c.bodies) for c in dry.connections] == [("acme", 30, 2)]
    assert [tuple(row) for row in bodies(later)] == before and table_counts(db_url) == counts

    seen: list[tuple[str, int]] = []
    done = retention.run_retention(later, progress=lambda name, n: seen.append((name, n)))
    assert done.bodies == 2 and seen == [("acme", 2)]
    rows = {row.id: row for row in bodies(later)}
    acme_id = connections.get_connection(later, "acme").id
    with reading(later.engine) as conn:
        acme_rows = set(conn.execute(select(deliveries.c.id).where(deliveries.c.connection_id == acme_id)).scalars())
    purged = [row for row in rows.values() if row.body_purged_at is not None]
    assert {row.id for row in purged} < acme_rows and len(purged) == 2
    for row in purged:  # the body is gone; its hash and verdict stay
        assert bytes(row.body) == b"" and len(row.payload_hash) == 64 and row.verdict == "applied"
    assert sum(1 for row in rows.values() if bytes(row.body)) == 4  # the 5-day-old one and all of "forever"
    (entry,) = retention_audit(later)
    assert entry.after["bodies"] == 2 and entry.after["raw_days"] == 30 and entry.target_id == acme_id
    assert entry.after["cutoff"].startswith((NOW - timedelta(days=30)).date().isoformat())

    again = retention.run_retention(later)  # nothing more is due: nothing written, no new entry
    assert again.bodies == 0 and len(retention_audit(later)) == 1


def test_a_purged_body_keeps_its_record_and_readers_say_it_is_gone(db_url, later):
    connections.add_connection(later, "acme", "stripe", "sandbox")
    story(later, days_old=(35, 34))
    record_id = bodies(later)[0].record_id
    timeline_before = load_timeline(later, record_id)
    with reading(later.engine) as conn:
        transitions_before = list(conn.execute(select(Transition.__table__).order_by(Transition.__table__.c.id)))
    set_payload_settings(later, "acme", PayloadChange(raw_days=30), "policy")
    retention.run_retention(later)

    timeline = load_timeline(later, record_id)
    assert [(e.kind, e.id) for e in timeline.entries if e.kind != "audit"] == [
        (e.kind, e.id) for e in timeline_before.entries if e.kind != "audit"]
    deliveries_shown = [e for e in timeline.entries if e.kind == "delivery"]
    assert all("body purged" in e.summary and e.detail["body_purged_at"] for e in deliveries_shown)
    with reading(later.engine) as conn:
        assert list(conn.execute(select(Transition.__table__).order_by(Transition.__table__.c.id))) == transitions_before

    payload = delivery_payload(later, deliveries_shown[0].id)
    assert payload["body_state"] == "purged" and payload["body_purged_at"]
    assert "is gone: purged by retention at" in payload["body"] and payload["verdict"] == "applied"

    with pytest.raises(ServiceError, match="is gone: purged by retention at"):
        replay(later, record=record_id)
    result = wb(db_url, "replay", "--record", record_id)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "cannot replay record" in result.stderr and "purged by retention" in result.stderr
    report = replay(later, connection="acme", dry_run=True)
    assert report.changes == [] and report.skipped[0][0] == record_id

    out = io.BytesIO()
    left_out: list[int] = []
    assert export_captures(later, "acme", out, purged=left_out.append) == 0 and left_out == [2]


def test_held_deliveries_are_never_purged(later):
    connections.add_connection(later, "acme", "stripe", "sandbox")
    set_payload_settings(later, "acme", PayloadChange(raw_days=1), "policy")
    connections.set_paused(later, "acme", True, "maintenance")
    story(later, days_old=(35,))
    assert retention.run_retention(later).bodies == 0
    assert bytes(bodies(later)[0].body)
    assert connections.change_paused(later, "acme", False, "back").applied == {"applied": 1}


def test_encrypted_bodies_are_purged_too(later):
    vault = create(vault_path("sandbox"), "sandbox", "correct horse battery",
                   params=KdfParams(memory_kib=1024, iterations=1, lanes=1))
    vaults = {"sandbox": vault}
    connections.add_connection(later, "acme", "stripe", "sandbox")
    set_payload_settings(later, "acme", PayloadChange(encrypt=True, raw_days=30), "policy", vaults)
    ingest(later, "acme", [capture(pi_event("evt_1", "pi_1", "processing", CREATED), NOW - timedelta(days=31))],
           vaults=vaults)
    assert retention.run_retention(later).bodies == 1
    with reading(later.engine) as conn:
        row = conn.execute(select(deliveries.c.body, deliveries.c.body_key_version)).one()
    assert bytes(row.body) == b"" and row.body_key_version is None
    assert delivery_payload(later, bodies(later)[0].id)["body_state"] == "purged"  # not "locked"


def test_cli_retention_run(db_url, ctx):
    connections.add_connection(ctx, "acme", "stripe", "sandbox")
    result = wb(db_url, "retention", "run")
    assert result.exit_code == 0 and "no connection has a retention" in result.stdout
    ingest(ctx, "acme", [capture(pi_event("evt_1", "pi_1", "processing", CREATED), T0)])  # weeks ago, or more
    assert wb(db_url, "connection", "set", "acme", "--retain-raw", "7", "--reason", "policy").exit_code == 0
    dry = wb(db_url, "retention", "run", "--dry-run")
    assert dry.exit_code == 0 and "acme: would purge 1 raw bodies" in dry.stdout and "nothing written" in dry.stdout
    result = wb(db_url, "retention", "run", "--json")
    assert result.exit_code == 0, result.output
    (item,) = orjson.loads(result.stdout)["connections"]
    assert item["connection"] == "acme" and item["bodies"] == 1 and item["raw_days"] == 7
    again = wb(db_url, "retention", "run")
    assert "acme: purged 0 raw bodies" in again.stdout
    events = orjson.loads(wb(db_url, "events", "--json").stdout)
    assert events[0]["verdict"] == "applied" and events[0]["body_purged_at"]  # listed, saying the body went
    assert events[0]["body_encrypted"] is False
