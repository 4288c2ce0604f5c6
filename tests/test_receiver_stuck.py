"""`workbench listen stuck [--retry]`: the deliveries the store refused, set aside in the
receivers' spools by the mover, listed and moved into the store once the cause is fixed; on
SQLite and PostgreSQL, through the real command line in-process."""

from __future__ import annotations

import gc
import hashlib
import sqlite3
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner, Result
from sqlalchemy import select, update

from store.database import reading, writing
from store.models import AuditEntry, Delivery, RoleBinding
from tests.receiver_harness import event_body
from tests.support import add_stripe
from workbench.cli.main import cli
from workbench.domain.ids import IdFactory
from workbench.receiver.mover import Mover, Spooled, SpoolReader, UnknownConnection
from workbench.receiver.spool import INSERT, SpoolClaim, lock_path, open_spool, pack, unpack, waiting
from workbench.services import connections
from workbench.services.context import ServiceContext, default_actor
from workbench.services.payload_crypto import NO_VAULTS

deliveries = Delivery.__table__
LATER = IdFactory(seed=7).new("con")  # the ID of a connection the store gets only later (the cause, fixed)
MISSING = f"UnknownConnection: connection {LATER} is not in the store"


@pytest.fixture(autouse=True)
def _release_engines() -> Iterator[None]:
    yield
    gc.collect(1)  # each invocation opened its own engine (in a reference cycle): close them


@pytest.fixture
def spools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("WORKBENCH_SPOOL_DIR", str(tmp_path / "spool"))
    (tmp_path / "spool").mkdir()
    return tmp_path / "spool"


def wb(db_url: str, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--db", db_url, "listen", "stuck", *args], catch_exceptions=False)


def _row(n: int, connection_id: str) -> list[Any]:
    """One delivery as the receiver spools it (spool.COLUMNS, raw: the mover makes its stored
    form), verified and to be applied."""
    at = datetime(2026, 11, 29, 12, 0, n, tzinfo=UTC)
    return [f"dlv_st{n:04d}", connection_id, (at - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1),
            {"content-type": "application/json"}, event_body(f"evt_st{n}", f"pi_st{n}"), None, None, "verified",
            "held", "received: being applied", None, "whsec_ref", None, None, None]


def _stick(ctx: ServiceContext, path: Path, *rows: list[Any]) -> None:
    """Spool `rows` and let the mover do what it does when the store refuses some: the whole
    move fails, then each goes alone and the refused ones are set aside (stuck)."""
    conn = open_spool(path)
    conn.execute(INSERT, (len(rows), pack(list(rows))))
    reader, mover = SpoolReader(conn), Mover(ctx, NO_VAULTS)
    with pytest.raises(UnknownConnection):
        mover.move(reader)
    mover.move_one_by_one(reader, len(rows))
    conn.close()


def _stored(ctx: ServiceContext) -> dict[str, Any]:
    with reading(ctx.engine) as conn:
        return {row.id: row for row in conn.execute(select(deliveries))}


def _retry_audit(ctx: ServiceContext) -> list[Any]:
    entries = AuditEntry.__table__
    with reading(ctx.engine) as conn:
        return list(conn.execute(select(entries.c.after).where(entries.c.action == "receiver.retry_stuck")
                                 .order_by(entries.c.seq)).scalars())


def _one_line_error(result: Result, code: int, *words: str) -> None:
    assert result.exit_code == code and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in result.stderr, result.stderr
    for word in words:
        assert word in lines[0]


def test_a_stuck_delivery_is_listed_stays_stuck_until_fixed_then_moves_and_its_spool_goes(
        ctx: ServiceContext, db_url: str, spools: Path) -> None:
    acme = add_stripe(ctx)
    left = spools / "receiver-left.spool"  # a stopped receiver's: kept only for its stuck row
    _stick(ctx, left, _row(1, acme.id), _row(2, LATER))
    assert set(_stored(ctx)) == {"dlv_st0001"} and waiting(left) == (0, 1)

    listed = wb(db_url)
    assert listed.exit_code == 0, listed.output
    header, line, summary = listed.stdout.splitlines()
    assert header.split() == ["DELIVERY", "CONNECTION", "RECEIVED", "SPOOL", "REASON"]
    assert line.split(maxsplit=4) == ["dlv_st0002", LATER, "2026-11-29T12:00:02+00:00", "receiver-left.spool", MISSING]
    assert summary.startswith("1 stuck (1 retryable)")
    assert orjson.loads(wb(db_url, "--json").stdout) == [
        {"delivery": "dlv_st0002", "connection": LATER, "received_at": "2026-11-29T12:00:02+00:00",
         "reason": MISSING, "spool": "receiver-left.spool", "retryable": True}]

    # Tried again while the cause remains: still stuck, with the reason of this attempt.
    with sqlite3.connect(left) as spool:
        spool.execute("UPDATE stuck SET reason = 'OperationalError: database is locked'")
    spool.close()
    again = wb(db_url, "--retry")
    assert (again.exit_code, again.stdout.splitlines()) == (1, [f"dlv_st0002: still stuck: {MISSING}",
                                                                "0 moved, 1 still stuck"])
    assert orjson.loads(wb(db_url, "--json").stdout)[0]["reason"] == MISSING
    assert set(_stored(ctx)) == {"dlv_st0001"} and left.exists()

    # The cause fixed (the connection is in the store now): moved, under the ID it was answered with.
    assert connections.add_connection(replace(ctx, ids=IdFactory(seed=7)), "later", "stripe").id == LATER
    assert orjson.loads(wb(db_url, "--json").stdout)[0]["connection"] == "later"
    moved = wb(db_url, "--retry", "dlv_st0002")
    assert (moved.exit_code, moved.stdout.splitlines()) == (0, ["dlv_st0002: moved", "1 moved, 0 still stuck"])
    stored = _stored(ctx)["dlv_st0002"]
    assert (stored.connection_id, stored.verdict, stored.record_id is not None) == (LATER, "applied", True)
    assert list(spools.iterdir()) == []  # emptied and nobody's: removed, lock file and all

    # Nothing left: retrying is a no-op that says so, and the listing says there is nothing.
    nothing = wb(db_url, "--retry")
    assert (nothing.exit_code, nothing.stdout) == (0, "no stuck deliveries to retry\n")
    assert (wb(db_url).stdout, wb(db_url, "--json").stdout) == ("no stuck deliveries\n", "[]\n")
    assert len(_stored(ctx)) == 2
    assert [(entry["moved"], entry["still_stuck"], entry["asked"]) for entry in _retry_audit(ctx)] == [
        (0, 1, "all"), (1, 0, ["dlv_st0002"]), (0, 0, "all")]


def test_a_running_receivers_spool_is_read_and_retried_beside_it_never_locked_or_removed(
        ctx: ServiceContext, db_url: str, spools: Path) -> None:
    claim = SpoolClaim.new(spools)  # a running receiver's (its lock held)
    try:
        _stick(ctx, claim.spool, _row(3, LATER))
        writer = open_spool(claim.spool, sync_full=True)
        writer.execute("BEGIN IMMEDIATE")  # its spool writer in the middle of a batch
        writer.execute(INSERT, (1, pack([_row(4, LATER)])))
        listed = orjson.loads(wb(db_url, "--json").stdout)  # read beside it: no wait, no error
        writer.execute("ROLLBACK")
        writer.close()
        assert [item["delivery"] for item in listed] == ["dlv_st0003"]

        connections.add_connection(replace(ctx, ids=IdFactory(seed=7)), "later", "stripe")
        moved = wb(db_url, "--retry")
        assert (moved.exit_code, moved.stdout.splitlines()) == (0, ["dlv_st0003: moved", "1 moved, 0 still stuck"])
        assert "dlv_st0003" in _stored(ctx)
        # Empty now, but its receiver's still: the file and its lock (held: nobody could take
        # it over) stay.
        assert waiting(claim.spool) == (0, 0)
        assert claim.spool.exists() and lock_path(claim.spool).exists() and SpoolClaim.take(claim.spool) is None
    finally:
        claim.release()


def test_an_unknown_id_is_one_line_and_nothing_is_done(ctx: ServiceContext, db_url: str, spools: Path) -> None:
    _stick(ctx, spools / "receiver-left.spool", _row(5, LATER))
    connections.add_connection(replace(ctx, ids=IdFactory(seed=7)), "later", "stripe")

    unknown = wb(db_url, "--retry", "dlv_st0005", "dlv_nope\x1b[31m")
    _one_line_error(unknown, 2, "dlv_nope\\x1b[31m", "`workbench listen stuck` lists them", "nothing was retried")
    assert "dlv_st0005" not in _stored(ctx) and _retry_audit(ctx) == []
    assert waiting(spools / "receiver-left.spool") == (0, 1)

    _one_line_error(wb(db_url, "dlv_st0005"), 2, "--retry")  # an ID without --retry: a usage error
    _one_line_error(wb(db_url, "--retry", "--json"), 2)
    serving_options = CliRunner().invoke(cli, ["--db", db_url, "listen", "--port", "9999", "stuck"])
    _one_line_error(serving_options, 2, "--port are for serving")  # not silently ignored

    # Retrying needs what ingesting needs (operator): a viewer is refused in one line, nothing moves.
    bindings = RoleBinding.__table__
    with writing(ctx.engine) as conn:
        conn.execute(update(bindings).where(bindings.c.actor == default_actor()).values(role="viewer"))
    _one_line_error(wb(db_url, "--retry"), 1, "ingest needs the operator role")
    assert wb(db_url).exit_code == 0  # listing is a read
    assert "dlv_st0005" not in _stored(ctx) and waiting(spools / "receiver-left.spool") == (0, 1)


def test_an_unreadable_batch_is_listed_never_retried_and_a_damaged_spool_is_named(
        ctx: ServiceContext, db_url: str, spools: Path) -> None:
    acme = add_stripe(ctx)
    left = spools / "receiver-left.spool"
    conn = open_spool(left)
    conn.execute(INSERT, (3, b"\xc1 not a batch"))  # 0xc1: never used by msgpack
    assert Mover(ctx, NO_VAULTS).move(SpoolReader(conn)) == 0  # set aside whole, as `batch-1`
    conn.close()
    _stick(ctx, spools / "receiver-other.spool", _row(6, acme.id), _row(7, LATER))
    (spools / "receiver-damaged.spool").write_bytes(b"not a database at all " * 200)

    listed = wb(db_url, "--json")
    assert listed.exit_code == 3  # partial: one spool left out
    assert orjson.loads(listed.stdout) == [
        {"delivery": "dlv_st0007", "connection": LATER, "received_at": "2026-11-29T12:00:07+00:00",
         "reason": MISSING, "spool": "receiver-other.spool", "retryable": True},
        {"delivery": "batch-1", "connection": None, "received_at": None,
         "reason": "unreadable batch of 3 deliveries: FormatError", "spool": "receiver-left.spool",
         "retryable": False}]
    (warning,) = listed.stderr.splitlines()
    assert warning.startswith("warning: spool receiver-damaged.spool could not be read")
    assert "unreadable, never retried" in wb(db_url).stdout

    connections.add_connection(replace(ctx, ids=IdFactory(seed=7)), "later", "stripe")
    retried = wb(db_url, "--retry")
    assert retried.exit_code == 3, retried.output  # all that could be moved moved; a spool left out
    assert retried.stdout.splitlines() == ["dlv_st0007: moved", "batch-1: not retried: unreadable (it stays in "
                                           "receiver-left.spool)", "1 moved, 0 still stuck; 1 unreadable, not retried"]
    named = wb(db_url, "--retry", "batch-1")
    assert named.exit_code == 1 and "batch-1: not retried: unreadable" in named.stdout  # asked for, not done
    assert waiting(left) == (0, 1) and not (spools / "receiver-other.spool").exists()
    assert set(_stored(ctx)) == {"dlv_st0006", "dlv_st0007"}


def test_a_retry_killed_after_the_stores_commit_moves_nothing_twice(ctx: ServiceContext, db_url: str,
                                                                    spools: Path) -> None:
    """The window a SIGKILL can leave: the store has the delivery, the spool still has it stuck.
    The next retry finds it in the store by ID, stores nothing again and lets it go."""
    left = spools / "receiver-left.spool"
    _stick(ctx, left, _row(6, LATER))
    connections.add_connection(replace(ctx, ids=IdFactory(seed=7)), "later", "stripe")
    with sqlite3.connect(left) as spool:
        (kept,) = spool.execute("SELECT delivery FROM stuck").fetchone()
    spool.close()
    Mover(ctx, NO_VAULTS).store_one(Spooled(0, unpack(kept)[0]))  # committed; then the kill
    before = _stored(ctx)

    resumed = wb(db_url, "--retry")
    assert (resumed.exit_code, resumed.stdout.splitlines()) == (0, ["dlv_st0006: moved", "1 moved, 0 still stuck"])
    assert _stored(ctx).keys() == before.keys() and "dlv_st0006" in before
    assert list(spools.iterdir()) == []


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _discard_audit(ctx: ServiceContext) -> list[Any]:
    entries = AuditEntry.__table__
    with reading(ctx.engine) as conn:
        return list(conn.execute(select(entries.c.after, entries.c.reason)
                                 .where(entries.c.action == "receiver.discard_stuck").order_by(entries.c.seq)))


def test_an_admin_discards_what_no_fix_will_move_and_the_audit_keeps_what_each_was(
        ctx: ServiceContext, db_url: str, spools: Path) -> None:
    left = spools / "receiver-left.spool"  # a stopped receiver's, kept only for an unreadable batch
    damaged = b"\xc1 not a batch"
    conn = open_spool(left)
    conn.execute(INSERT, (3, damaged))
    Mover(ctx, NO_VAULTS).move(SpoolReader(conn))  # set aside whole, as `batch-1`
    conn.close()
    claim = SpoolClaim.new(spools)  # a running receiver's, with a delivery for a connection the store lost
    try:
        _stick(ctx, claim.spool, _row(8, LATER))
        with sqlite3.connect(claim.spool) as spool:
            (kept,) = spool.execute("SELECT delivery FROM stuck").fetchone()
        spool.close()

        # Misuse, each one line and nothing done: no IDs, no reason, with --retry or --json, an
        # unknown ID, a reason without --discard.
        _one_line_error(wb(db_url, "--discard", "--reason", "gone"), 2, "name the stuck deliveries")
        _one_line_error(wb(db_url, "--discard", "batch-1"), 2, "--reason")
        _one_line_error(wb(db_url, "--discard", "batch-1", "--reason", "  "), 2, "--reason")
        _one_line_error(wb(db_url, "--discard", "--retry", "batch-1", "--reason", "gone"), 2, "one or the other")
        _one_line_error(wb(db_url, "--discard", "--json", "batch-1", "--reason", "gone"), 2, "--json")
        _one_line_error(wb(db_url, "--reason", "gone"), 2, "--reason goes with --discard")
        _one_line_error(wb(db_url, "--discard", "batch-1", "dlv_nope", "--reason", "gone"), 2, "dlv_nope",
                        "nothing was discarded")
        # Removing data for good is an admin's: an operator (who may retry) is refused.
        bindings = RoleBinding.__table__
        with writing(ctx.engine) as conn_:
            conn_.execute(update(bindings).where(bindings.c.actor == default_actor()).values(role="operator"))
        _one_line_error(wb(db_url, "--discard", "batch-1", "--reason", "gone"), 1, "discard needs the admin role")
        with writing(ctx.engine) as conn_:
            conn_.execute(update(bindings).where(bindings.c.actor == default_actor()).values(role="admin"))
        assert _discard_audit(ctx) == [] and waiting(left) == (0, 1) and waiting(claim.spool) == (0, 1)

        done = wb(db_url, "--discard", "batch-1", "dlv_st0008", "--reason", "damaged on disk; connection lost in restore")
        assert done.exit_code == 0, done.output
        assert done.stdout.splitlines() == [  # spool by spool, in the order asked
            f"batch-1: discarded from receiver-left.spool (13 bytes, sha256 {_sha(damaged)[:16]})",
            f"dlv_st0008: discarded from {claim.spool.name} ({len(kept)} bytes, sha256 {_sha(kept)[:16]})",
            "2 discarded"]
        assert wb(db_url).stdout == "no stuck deliveries\n"
        assert not left.exists() and not lock_path(left).exists()  # nobody's, and empty: gone
        assert claim.spool.exists() and waiting(claim.spool) == (0, 0)  # its receiver's still: kept
        assert "dlv_st0008" not in _stored(ctx)

        ((after, reason),) = _discard_audit(ctx)
        assert reason == "damaged on disk; connection lost in restore"
        assert {item["delivery"]: (item["spool"], item["bytes"], item["sha256"]) for item in after["discarded"]} == {
            "batch-1": ("receiver-left.spool", 13, _sha(damaged)), "dlv_st0008": (claim.spool.name, len(kept), _sha(kept))}

        again = wb(db_url, "--discard", "batch-1", "--reason", "gone")
        _one_line_error(again, 2, "batch-1", "nothing was discarded")
    finally:
        claim.release()
