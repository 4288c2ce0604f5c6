"""The receiver's mover: spooled deliveries into the store, applied on the way; found again
after a crash between the store's commit and the spool's delete, they are not stored twice;
one the store refuses is set aside in the spool (stuck) and the rest move on."""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings, strategies as st
from sqlalchemy import select

from store.bulk import Codec
from store.database import reading
from store.models import Delivery, Failure
from tests.receiver_harness import event_body
from tests.support import add_stripe
from workbench.receiver import applier, children
from workbench.receiver.mover import DamagedDelivery, Mover, SpoolReader, UnknownConnection
from workbench.receiver.spool import (
    INSERT,
    MOVED,
    SpoolClaim,
    SpoolFormatError,
    delivery_ids,
    open_spool,
    pack,
    received_text,
    received_time,
    waiting,
)
from workbench.services import connections
from workbench.services.captures import Capture
from workbench.services.context import ServiceContext
from workbench.services.ingest import ingest
from workbench.services.ingest_prepare import stored_form, stored_form_of
from workbench.services.payload_crypto import NO_VAULTS

deliveries = Delivery.__table__


def _row(n: int, connection_id: str, *, verdict: str = "held", problem: tuple[Any, ...] = (None, None, None)) -> list[Any]:
    at = datetime(2026, 11, 29, 12, 0, n, tzinfo=UTC).isoformat(" ", "microseconds")[:26]
    body = event_body(f"evt_mv{n}", f"pi_mv{n}")
    reason = "received: being applied" if verdict == "held" else "rejected: no v1 signature matches"
    return [f"dlv_mv{n:04d}", connection_id, at, orjson.dumps({"content-type": "application/json"}).decode(), body,
            f"{n:064x}", f"{n:032x}", "verified" if verdict == "held" else "failed", verdict, reason, None,
            "whsec_ref", *problem]


def _spool(path: Path, *batches: list[list[Any]]) -> SpoolReader:
    conn = open_spool(path)
    conn.executemany(INSERT, [(len(batch), pack(batch)) for batch in batches])
    return SpoolReader(conn)


def _stored(ctx: ServiceContext) -> dict[str, Any]:
    with reading(ctx.engine) as conn:
        return {row.id: row for row in conn.execute(select(deliveries))}


def test_spooled_deliveries_move_once_applied_and_rejections_open_their_failure(ctx: ServiceContext,
                                                                                tmp_path: Path) -> None:
    acme = add_stripe(ctx)
    rows = [_row(1, acme.id), _row(2, acme.id),
            _row(3, acme.id, verdict="rejected", problem=("authentication", "signature_failed", "no v1 signature"))]
    spool = _spool(tmp_path / "r.spool", rows[:2], rows[2:])
    mover = Mover(ctx, NO_VAULTS)

    assert mover.move(spool) == 3 and waiting(tmp_path / "r.spool") == (0, 0)
    stored = _stored(ctx)
    assert {key: row.verdict for key, row in stored.items()} == {
        "dlv_mv0001": "applied", "dlv_mv0002": "applied", "dlv_mv0003": "rejected"}
    assert stored["dlv_mv0001"].record_id is not None and stored["dlv_mv0001"].received_at.second == 1
    with reading(ctx.engine) as conn:
        failure = conn.execute(select(Failure.__table__)).one()
    assert (failure.delivery_id, failure.category) == ("dlv_mv0003", "authentication")

    # Killed after the store's commit, before the spool's delete: found again by the next
    # mover, stored once.
    spool.conn.executemany(INSERT, [(2, pack(rows[:2]))])
    assert mover.move(SpoolReader(spool.conn)) == 2 and len(_stored(ctx)) == 3


def test_moved_batches_are_handed_to_the_spool_writer_to_delete(ctx: ServiceContext, tmp_path: Path) -> None:
    """With a pipe to a live spool writer, the mover writes the last `seq` it moved there and
    leaves the delete to the writer (one writer per spool); it does not read those batches
    again meanwhile. A full pipe (a writer not reading) and the stop fall back to deleting here.
    (Killed before the writer deleted them, the next mover finds them in the store: above.)"""
    acme = add_stripe(ctx)
    spool = tmp_path / "r.spool"
    moved_read, moved_write = os.pipe()
    os.set_blocking(moved_write, False)
    reader = _spool(spool, [_row(1, acme.id)], [_row(2, acme.id), _row(3, acme.id)])
    reader = SpoolReader(reader.conn, moved_write)
    mover = Mover(ctx, NO_VAULTS)

    assert mover.move(reader) == 3 and len(_stored(ctx)) == 3
    assert os.read(moved_read, 64) == MOVED.pack(2) and waiting(spool) == (3, 0)  # still there: the writer deletes
    assert mover.move(reader) == 0  # not read again
    reader.remind()  # a writer started again lost the mark: given again while they are there
    assert os.read(moved_read, 64) == MOVED.pack(2)
    reader.stop_handing_off()  # the receiver stops its writer first: what it did not delete goes here
    assert waiting(spool) == (0, 0)

    reader = SpoolReader(reader.conn, moved_write)
    reader.conn.executemany(INSERT, [(1, pack([_row(4, acme.id)]))])
    while True:  # the writer stopped reading: the pipe fills up
        try:
            os.write(moved_write, MOVED.pack(0) * 512)
        except BlockingIOError:
            break
    assert mover.move(reader) == 1 and waiting(spool) == (0, 0) and len(_stored(ctx)) == 4
    os.set_blocking(moved_read, False)
    with pytest.raises(BlockingIOError):
        while os.read(moved_read, 1 << 16):  # the writer reads again: the pipe empties
            pass
    reader.remind()  # nothing left to delete: nothing said
    with pytest.raises(BlockingIOError):
        os.read(moved_read, 64)
    os.close(moved_read)
    os.close(moved_write)


def test_a_paused_connection_gets_them_held_and_a_refused_row_is_set_aside(ctx: ServiceContext, tmp_path: Path) -> None:
    acme = add_stripe(ctx)
    connections.set_paused(ctx, "acme", True)
    spool = _spool(tmp_path / "r.spool", [_row(1, acme.id), _row(2, "con_nobody"), _row(3, acme.id)])
    mover = Mover(ctx, NO_VAULTS)

    with pytest.raises(UnknownConnection):  # a delivery of no connection: the whole move refused
        mover.move(spool)
    mover.move_one_by_one(spool, 3)
    stored = _stored(ctx)
    assert {key: (row.verdict, row.verdict_reason) for key, row in stored.items()} == {
        "dlv_mv0001": ("held", "connection paused: applied on resume"),
        "dlv_mv0003": ("held", "connection paused: applied on resume")}
    assert waiting(tmp_path / "r.spool") == (0, 1)  # kept, never moved by itself, counted
    assert delivery_ids(tmp_path / "r.spool") == {"dlv_mv0002"}
    assert spool.conn.execute("SELECT reason FROM stuck").fetchall() == [
        ("UnknownConnection: connection con_nobody is not in the store",)]  # in words an operator reads
    assert mover.move(spool) == 0


def test_moved_deliveries_get_the_verdicts_bulk_ingest_gives(ctx: ServiceContext, tmp_path: Path) -> None:
    """The mover maps a delivery only once it is known not to be a duplicate (prepare's
    map_later); the verdicts must be those of ingest, which maps everything first."""
    acme, other = add_stripe(ctx), add_stripe(ctx, "other")
    bodies = [event_body("evt_a", "pi_a"), event_body("evt_a", "pi_a"),  # a redelivery in the batch
              event_body("evt_long", "pi_" + "x" * 300),  # an object ID too long to store
              event_body("evt_drift", "pi_d", status="teleported"),  # a status the mapping never saw
              orjson.dumps({"id": "evt_cust", "object": "event", "type": "customer.created", "created": 1,
                            "data": {"object": {"id": "cus_1", "object": "customer"}}}),  # not covered
              b"{not json"]
    first = [_row(1, acme.id)]  # evt_mv1 / pi_mv1, applied in an earlier move
    rows = [[*_row(10 + n, acme.id)[:4], body, *_row(10 + n, acme.id)[5:]] for n, body in enumerate(bodies)]
    # evt_mv1 again, received later: a duplicate of a delivery already in the store
    rows.append([*_row(59, acme.id)[:4], _row(1, acme.id)[4], *_row(59, acme.id)[5:]])
    mover = Mover(ctx, NO_VAULTS)
    mover.move(_spool(tmp_path / "r.spool", first))
    mover.move(_spool(tmp_path / "s.spool", rows))

    ingest(ctx, "other", [Capture(datetime(2026, 11, 29, 12, 0, n, tzinfo=UTC), {"content-type": "application/json"}, body)
                          for n, body in enumerate([event_body("evt_mv1", "pi_mv1"), *bodies,
                                                    event_body("evt_mv1", "pi_mv1")])])
    with reading(ctx.engine) as conn:
        def outcome(connection_id: str) -> list[tuple[str, str, str | None]]:
            found = conn.execute(select(deliveries.c.verdict, deliveries.c.verdict_reason, deliveries.c.mapping_version)
                                 .where(deliveries.c.connection_id == connection_id)
                                 .order_by(deliveries.c.received_at, deliveries.c.id)).all()
            return [(verdict, (reason or "").split(" as dlv")[0], version) for verdict, reason, version in found]
        moved, ingested = outcome(acme.id), outcome(other.id)
    assert moved == ingested
    assert [verdict for verdict, _, _ in moved] == ["applied", "applied", "duplicate", "invalid", "failed", "ignored",
                                                    "invalid", "duplicate"]


def test_a_batch_that_cannot_be_read_back_is_set_aside_and_the_rest_move(ctx: ServiceContext, tmp_path: Path) -> None:
    acme = add_stripe(ctx)
    spool = _spool(tmp_path / "r.spool", [_row(1, acme.id)])
    spool.conn.execute(INSERT, (3, b"\xc1 not a batch"))  # 0xc1: never used by msgpack
    spool.conn.executemany(INSERT, [(1, pack([_row(2, acme.id)]))])
    mover = Mover(ctx, NO_VAULTS)

    assert mover.move(spool) == 2
    assert set(_stored(ctx)) == {"dlv_mv0001", "dlv_mv0002"}
    assert waiting(tmp_path / "r.spool") == (0, 1)  # kept, counted as stuck
    ((key, reason),) = spool.conn.execute("SELECT id, reason FROM stuck").fetchall()
    assert key.startswith("batch-") and reason.startswith("unreadable batch of 3 deliveries")


def _raw_row(n: int, connection_id: str, received_at: datetime, headers: Any, body: bytes) -> list[Any]:
    """A delivery as the receiver spools it for a connection that does not encrypt (format 2)."""
    micros = (received_at - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
    return [f"dlv_raw{n}", connection_id, micros, headers, body, None, None, "verified", "held",
            "received: being applied", None, "whsec_ref", None, None, None]


def test_deliveries_spooled_raw_are_stored_as_ingest_stores_the_same_capture(ctx: ServiceContext,
                                                                             tmp_path: Path) -> None:
    """The receiver leaves the stored form (hash, stored headers, capture key) to the mover:
    it must be exactly the one ingest makes of the same capture, credential headers included,
    or a capture file of the same deliveries would be stored twice."""
    acme, other = add_stripe(ctx), add_stripe(ctx, "other")
    at = datetime(2026, 11, 29, 12, 0, 1, 123456, tzinfo=UTC)
    captures = [Capture(at, {"content-type": "application/json", "authorization": "Bearer sk_live_abc"},
                        event_body("evt_raw1", "pi_raw1")),
                Capture(at.replace(second=2), [["x-forwarded-for", "10.0.0.1"], ["x-forwarded-for", "10.0.0.2"]],
                        event_body("evt_raw2", "pi_raw2"))]
    rows = [_raw_row(n, acme.id, capture.received_at, capture.headers, capture.body)
            for n, capture in enumerate(captures)]
    assert Mover(ctx, NO_VAULTS).move(_spool(tmp_path / "r.spool", rows)) == 2
    ingest(ctx, "other", captures)

    columns = (deliveries.c.received_at, deliveries.c.headers, deliveries.c.payload_hash, deliveries.c.capture_key,
               deliveries.c.verdict)
    with reading(ctx.engine) as conn:
        def stored(connection_id: str) -> list[Any]:
            return [tuple(row) for row in conn.execute(select(*columns).where(deliveries.c.connection_id == connection_id)
                                                        .order_by(deliveries.c.received_at))]
        moved, ingested = stored(acme.id), stored(other.id)
    assert moved == ingested
    assert [row[0].replace(tzinfo=UTC) for row in moved] == [capture.received_at for capture in captures]
    assert "sk_live_abc" not in str(moved[0][1])  # the credential header stored as ingest stores it
    assert [row[4] for row in moved] == ["applied", "applied"]


def test_a_raw_row_whose_stored_form_cannot_be_made_is_set_aside_and_the_rest_move(ctx: ServiceContext,
                                                                                    tmp_path: Path) -> None:
    """A damaged row (headers that are neither an object nor pairs) fails in the mover, not on
    receipt: it must be set aside like any delivery the store refuses."""
    acme = add_stripe(ctx)
    at = datetime(2026, 11, 29, 12, 0, 1, tzinfo=UTC)
    rows = [_raw_row(1, acme.id, at, {"content-type": "application/json"}, event_body("evt_ok1", "pi_ok1")),
            _raw_row(2, acme.id, at, 12, event_body("evt_bad", "pi_bad")),
            _raw_row(3, acme.id, at, {"content-type": "application/json"}, event_body("evt_ok3", "pi_ok3"))]
    spool = _spool(tmp_path / "r.spool", rows)
    mover = Mover(ctx, NO_VAULTS)

    with pytest.raises(DamagedDelivery):  # the whole move refused; then one by one
        mover.move(spool)
    mover.move_one_by_one(spool, 3)
    assert set(_stored(ctx)) == {"dlv_raw1", "dlv_raw3"}
    assert waiting(tmp_path / "r.spool") == (0, 1) and delivery_ids(tmp_path / "r.spool") == {"dlv_raw2"}
    ((reason,),) = spool.conn.execute("SELECT reason FROM stuck").fetchall()
    assert reason.startswith("DamagedDelivery: its spooled receipt time, headers or body cannot be read back"), reason


@pytest.mark.parametrize("version", [1, 2])
def test_a_spool_of_either_readable_format_moves(ctx: ServiceContext, tmp_path: Path, version: int) -> None:
    """A spool a receiver of the previous format left (every row in stored form) moves as well."""
    acme = add_stripe(ctx)
    spool = _spool(tmp_path / "r.spool", [_row(1, acme.id)])
    spool.conn.execute(f"PRAGMA user_version={version}")
    spool.conn.close()
    reopened = SpoolReader(open_spool(tmp_path / "r.spool"))
    assert Mover(ctx, NO_VAULTS).move(reopened) == 1 and set(_stored(ctx)) == {"dlv_mv0001"}


def test_a_spool_of_an_unknown_format_is_refused_in_words(tmp_path: Path) -> None:
    open_spool(tmp_path / "r.spool").execute("PRAGMA user_version=9")
    with pytest.raises(SpoolFormatError, match="format 9; this workbench reads formats 1 and 2"):
        open_spool(tmp_path / "r.spool")


@contextmanager
def _following(mover: Mover, own: Path) -> Iterator[None]:
    """The applier's loop (`_follow`) on `own` in a thread, told to stop (and joined) at the end."""
    ours, theirs = multiprocessing.Pipe()
    following = threading.Thread(target=applier._follow, args=(mover, own, theirs))
    following.start()
    try:
        yield
    finally:
        ours.send_bytes(children.STOP)
        following.join(30)


def _wait_stored(ctx: ServiceContext, count: int, timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while len(_stored(ctx)) < count and time.monotonic() < deadline:
        time.sleep(0.05)


def test_a_running_applier_takes_over_a_spool_a_killed_receiver_left(ctx: ServiceContext, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Not only at start: a receiver killed while another runs beside it has its deliveries
    (answered 2xx) moved by the one running, within TAKE_OVER_S."""
    acme = add_stripe(ctx)
    monkeypatch.setattr(applier, "TAKE_OVER_S", 0.2)
    own, left = tmp_path / "receiver-own.spool", tmp_path / "receiver-left.spool"
    claim = SpoolClaim.new(tmp_path)  # a live receiver's spool (its lock held): never taken over
    _spool(claim.spool, [_row(3, acme.id)]).conn.close()
    with _following(Mover(ctx, NO_VAULTS), own):
        time.sleep(0.3)
        _spool(left, [_row(1, acme.id), _row(2, acme.id)]).conn.close()  # nobody holds its lock
        _wait_stored(ctx, 2)
    assert set(_stored(ctx)) == {"dlv_mv0001", "dlv_mv0002"}
    assert not left.exists() and claim.spool.exists()  # moved and removed; the live one untouched
    claim.release()


class _MovesInTwos(Mover):
    """A mover whose moves take at most two deliveries (a big takeover, in small), recording
    each move as (spool file, deliveries moved); `on_move` runs after each."""

    def __init__(self, ctx: ServiceContext) -> None:
        super().__init__(ctx, NO_VAULTS)
        self.moves: list[tuple[str, int]] = []
        self.on_move = lambda: None

    def move(self, spool: SpoolReader, limit: int = 2) -> int:
        moved = super().move(spool, 2)
        self.moves.append((Path(spool.conn.execute("PRAGMA database_list").fetchone()[2]).name, moved))
        self.on_move()
        return moved


def test_a_receivers_own_deliveries_move_between_the_moves_of_a_takeover(ctx: ServiceContext,
                                                                          tmp_path: Path) -> None:
    """A large spool left by a killed receiver is moved a move at a time, and what this
    receiver is sent meanwhile goes in between: it is not held up until the takeover ends."""
    acme = add_stripe(ctx)
    own, left = tmp_path / "receiver-own.spool", tmp_path / "receiver-left.spool"
    _spool(left, *[[_row(n, acme.id), _row(n + 1, acme.id)] for n in range(1, 9, 2)]).conn.close()  # 4 moves
    mover = _MovesInTwos(ctx)

    def arrives_during_the_takeover() -> None:
        if [name for name, count in mover.moves if count] == ["receiver-left.spool"]:  # after its first move
            _spool(own, [_row(20, acme.id)]).conn.close()

    mover.on_move = arrives_during_the_takeover
    with _following(mover, own):
        _wait_stored(ctx, 9)
    assert len(_stored(ctx)) == 9 and not left.exists()
    moved = [(name, count) for name, count in mover.moves if count]
    assert moved[:3] == [("receiver-left.spool", 2), ("receiver-own.spool", 1), ("receiver-left.spool", 2)]


_YEAR_1 = (datetime(1, 1, 1, tzinfo=UTC) - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
_YEAR_9999_END = (datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
                  - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
_NOW = (datetime(2026, 11, 30, tzinfo=UTC) - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


@settings(max_examples=400, deadline=None)
@given(micros=st.one_of(st.integers(_YEAR_1, _YEAR_9999_END), st.integers(_NOW - 10**13, _NOW + 10**13)),
       headers=st.dictionaries(st.sampled_from(["content-type", "stripe-signature", "authorization", "x-id"]),
                               st.text(max_size=20), max_size=4),
       body=st.binary(max_size=200))
def test_the_applier_makes_a_raw_rows_stored_form_exactly_as_ingest_would(
        micros: int, headers: dict[str, str], body: bytes) -> None:
    """Its shortcut (the receipt time kept in microseconds, made into the store's text without a
    datetime) gives what `stored_form` gives for the same capture, to the byte: the same time
    text and the same capture key."""
    sqlite = Codec("sqlite")
    at = received_time(micros)
    assert received_text(micros) == sqlite.datetime(at)
    assert stored_form_of(micros, received_text(micros), headers, body, b"k" * 32, sqlite.json) == \
        stored_form(at, headers, body, b"k" * 32, sqlite.datetime, sqlite.json)


def test_a_receipt_time_out_of_range_is_refused_as_before() -> None:
    with pytest.raises(OverflowError):
        received_text(_YEAR_9999_END + 1)
    with pytest.raises(OverflowError):
        received_text(_YEAR_1 - 1)


class _FailingStarts(applier.ApplierLink):
    """An applier that never starts: when the receiver tries to start it again, and how often."""

    def __init__(self, ctx: ServiceContext, spool: Path) -> None:
        super().__init__(ctx, NO_VAULTS, spool)
        self.tries: list[float] = []

    def start(self) -> None:
        self._started = time.monotonic()
        self.tries.append(self._started)
        raise RuntimeError("the receiver's applier did not start")


def test_an_applier_that_keeps_failing_to_start_is_tried_less_and_less_often(
        ctx: ServiceContext, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    import asyncio

    monkeypatch.setattr(applier, "WATCH_S", 0.01)
    monkeypatch.setattr(applier, "RESTART_MAX_S", 0.16)
    link = _FailingStarts(ctx, tmp_path / "r.spool")

    async def watch_for(seconds: float) -> None:
        task = asyncio.create_task(link.keep_running())
        await asyncio.sleep(seconds)
        task.cancel()

    asyncio.run(watch_for(1.2))
    gaps = [later - earlier for earlier, later in zip(link.tries, link.tries[1:])]
    assert 5 <= len(link.tries) <= 12
    assert gaps[0] < gaps[-1] / 2 and all(gap >= 0.16 for gap in gaps[-2:])  # the pause doubled up to its cap
    assert "the applier could not be started again" in caplog.text and "Traceback" not in caplog.text
