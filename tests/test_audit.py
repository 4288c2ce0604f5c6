"""The audit trail: every operator action and configuration change is appended to a hash chain;
verify names the first entry that was altered, deleted or reordered; export is JSON lines."""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import orjson
import pytest
from sqlalchemy import select, text

from store.database import reading, writing
from store.models import AuditEntry
from tests.support import add_stripe, make_context
from workbench.domain.audit_chain import legacy_hash
from workbench.services import audit, connections

entries = AuditEntry.__table__


@pytest.fixture
def chain(ctx):
    """Five entries from real configuration changes."""
    add_stripe(ctx, "acme")
    connections.set_paused(ctx, "acme", True, "key rotation")
    connections.set_paused(ctx, "acme", False, "rotation done")
    connections.add_connection(ctx, "globex", "stripe", "live", "new tenant")
    connections.set_paused(ctx, "globex", True, "incident 42")
    assert audit.verify(ctx).ok and audit.verify(ctx).checked == 5
    return ctx


def _sql(ctx, statement: str, **params) -> None:
    with writing(ctx.engine) as conn:
        conn.execute(text(statement), params)


def _actions(ctx) -> list[str]:
    with reading(ctx.engine) as conn:
        return list(conn.execute(select(entries.c.action).order_by(entries.c.seq)).scalars())


def test_configuration_changes_are_audited_in_order(chain):
    assert _actions(chain) == ["connection.add", "connection.pause", "connection.resume", "connection.add",
                               "connection.pause"]
    [paused] = [e for e in audit.search(chain, "incident")]
    assert paused["before"]["paused"] is False and paused["after"]["paused"] is True
    assert paused["actor"] == "user:tester" and paused["reason"] == "incident 42"


def test_pausing_an_already_paused_connection_writes_nothing(chain):
    connections.set_paused(chain, "globex", True, "again")
    assert audit.verify(chain).checked == 5


@contextmanager
def tampered(ctx, *statements: str, **params: Any) -> Iterator[None]:
    """Tamper with the trail by raw SQL, then put every row back as it was."""
    with reading(ctx.engine) as conn:
        saved = [row._asdict() for row in conn.execute(select(entries).order_by(entries.c.seq))]
    for statement in statements:
        _sql(ctx, statement, **params)
    try:
        yield
    finally:
        with writing(ctx.engine) as conn:
            conn.execute(entries.delete())
            conn.execute(entries.insert(), saved)
        assert audit.verify(ctx).ok


ALTERATIONS = [
    ("reason", "nothing to see here"),
    ("actor", "user:someone-else"),
    ("action", "connection.delete"),
    ("after", '{"paused": false}'),
    ("target_id", "con_other"),
    ("prev_hash", "f" * 64),
    ("hash", "e" * 64),
]


def test_an_altered_row_is_named(chain):
    for column, value in ALTERATIONS:
        with tampered(chain, f"UPDATE audit_entries SET {column} = :value WHERE seq = 3", value=value):
            result = audit.verify(chain)
            assert (result.ok, result.broken_seq, result.checked) == (False, 3, 2), column
            assert "entry 3" in result.problem


def test_an_altered_time_is_detected(chain):
    with writing(chain.engine) as conn:
        at = conn.execute(select(entries.c.at).where(entries.c.seq == 2)).scalar_one()
        conn.execute(entries.update().where(entries.c.seq == 2).values(at=at.replace(year=at.year - 1)))
    assert audit.verify(chain).broken_seq == 2


def test_a_row_rehashed_without_the_key_is_caught_at_that_row(chain):
    """Altering a row and recomputing a plain hash for it (what passed before keyed entries)
    no longer hides the change: its MAC fails, or its plain hash is refused as forged."""
    with writing(chain.engine) as conn:
        row = conn.execute(select(entries).where(entries.c.seq == 2)).one()
        fields = {**audit._stored(row), "reason": "forged"}
        conn.execute(entries.update().where(entries.c.seq == 2)
                     .values(reason="forged", hash=legacy_hash(row.prev_hash, fields)))
    result = audit.verify(chain)
    assert (result.ok, result.broken_seq, result.cause) == (False, 2, "edited")
    _sql(chain, "UPDATE audit_entries SET scheme = 'sha256' WHERE seq = 2")
    result = audit.verify(chain)
    assert (result.ok, result.broken_seq, result.cause) == (False, 2, "forged")


def test_a_deleted_row_is_named(chain):
    for where, broken, checked in [("seq = 1", 1, 0), ("seq = 3", 3, 2), ("seq = 5", 5, 4),
                                   ("seq >= 4", 4, 3), ("seq IN (2, 4)", 2, 1), ("seq > 0", 1, 0)]:
        with tampered(chain, f"DELETE FROM audit_entries WHERE {where}"):
            result = audit.verify(chain)
            assert (result.ok, result.broken_seq, result.checked) == (False, broken, checked), where
            assert result.problem


def test_two_swapped_rows_name_the_first(chain):
    for a, b in [(2, 4), (4, 5), (1, 2)]:
        with tampered(chain, "UPDATE audit_entries SET seq = -1 WHERE seq = :a",
                      "UPDATE audit_entries SET seq = :a WHERE seq = :b",
                      "UPDATE audit_entries SET seq = :b WHERE seq = -1", a=a, b=b):
            result = audit.verify(chain)
            assert (result.ok, result.broken_seq) == (False, a), (a, b)


def test_swapped_contents_keeping_sequence_numbers_are_detected(chain):
    with writing(chain.engine) as conn:
        two, four = (conn.execute(select(entries).where(entries.c.seq == s)).one()._asdict() for s in (2, 4))
        for target, source in ((two, four), (four, two)):
            conn.execute(entries.update().where(entries.c.seq == target["seq"])
                         .values({k: v for k, v in source.items() if k != "seq"}))
    assert audit.verify(chain).broken_seq == 2


def test_the_chain_continues_correctly_after_many_appends(chain):
    for i in range(30):
        connections.set_paused(chain, "acme", i % 2 == 0, f"flip {i}")
    result = audit.verify(chain, batch=7)  # several pages
    assert result.ok and result.checked == 35


def test_verify_during_concurrent_appends_is_not_a_false_alarm(chain):
    """On a shared store the engine keeps appending while an operator verifies: entries
    appended after the walk began are not deletions."""
    writer = make_context(chain.engine)
    stop = threading.Event()
    errors: list[BaseException] = []

    def keep_appending() -> None:
        i = 0
        try:
            while not stop.is_set():
                connections.set_paused(writer, "acme", i % 2 == 0, f"flip {i}")
                i += 1
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    thread = threading.Thread(target=keep_appending)
    thread.start()
    try:
        results = [audit.verify(chain, batch=3) for _ in range(25)]
    finally:
        stop.set()
        thread.join()
    assert not errors
    assert [r for r in results if not r.ok] == []
    assert audit.verify(chain).ok


# -- export ----------------------------------------------------------------------------------------

def test_export_is_json_lines_in_sequence(chain):
    out = io.BytesIO()
    assert audit.export(chain, out) == 5
    lines = out.getvalue().splitlines()
    assert len(lines) == 5 and out.getvalue().endswith(b"\n")
    rows = [orjson.loads(line) for line in lines]
    assert [r["seq"] for r in rows] == [1, 2, 3, 4, 5]
    assert set(rows[0]) >= {"seq", "at", "actor", "action", "target_type", "target_id", "before", "after",
                            "reason", "prev_hash", "hash", "scheme", "seal"}
    assert rows[0]["prev_hash"] == audit.GENESIS_HASH
    assert all(later["prev_hash"] == earlier["hash"] for earlier, later in zip(rows, rows[1:]))


def test_export_of_an_empty_trail_is_empty(ctx):
    out = io.BytesIO()
    assert audit.export(ctx, out) == 0 and out.getvalue() == b""
    assert audit.verify(ctx).ok


def test_search_matches_actor_action_target_and_reason(chain):
    assert [e["seq"] for e in audit.search(chain, "rotation")] == [3, 2]  # newest first
    assert {e["action"] for e in audit.search(chain, "connection.add")} == {"connection.add"}
    assert len(audit.search(chain, "TESTER")) == 5
    assert len(audit.search(chain, limit=2)) == 2


def test_a_clock_in_another_time_zone_keeps_the_chain_verifiable(engine):
    """Whatever zone the host's clock reports, what is hashed is what the store gives back."""
    from datetime import datetime, timedelta, timezone

    from workbench.services.context import ServiceContext

    local = ServiceContext(engine=engine, actor="user:tester",
                           clock=lambda: datetime.now(timezone(timedelta(hours=2))))
    add_stripe(local, "acme")
    connections.set_paused(local, "acme", True, "tz")
    result = audit.verify(local)
    assert (result.ok, result.checked) == (True, 3)  # the first user's admin binding, then the two changes
    assert audit.search(local)[0]["at"].endswith("+00:00")
