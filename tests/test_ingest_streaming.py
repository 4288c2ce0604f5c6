"""Streaming ingest: a batch never waits for input with its transaction open, and commits at least
every COMMIT_EVERY_S, so other writers and readers get on while a slow stream runs."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from adapters import AdapterRegistry
from adapters.stripe import StripeAdapter
from store.database import reading
from store.models import Delivery, Failure
from tests.support import T0, add_stripe, capture, capture_line, make_context, pi_event
from workbench.domain.canonical import ParsedEvent
from workbench.services import connections, ingest_feed, triage
from workbench.services.captures import CaptureReader
from workbench.services.ingest import ingest

WORKBENCH = Path(sys.executable).with_name("workbench")
CREATED = int(T0.timestamp())
PROMPTLY = 5.0  # seconds: well under the 30 s busy timeout a held write lock would cost


def _line(i: int) -> bytes:
    return capture_line(pi_event(f"evt_{i}", f"pi_{i}", "processing", CREATED + i)) + b"\n"


def _stored(engine: Any, connection_id: str) -> int:
    deliveries = Delivery.__table__
    with reading(engine) as conn:
        return conn.execute(select(func.count()).select_from(deliveries)
                            .where(deliveries.c.connection_id == connection_id)).scalar_one()


def _open_failure(ctx: Any) -> str:
    """A failure on another connection, for a triage action to act on."""
    add_stripe(ctx, "other")
    ingest(ctx, "other", [capture(b"not json")])
    with reading(ctx.engine) as conn:
        return conn.execute(select(Failure.__table__.c.id)).scalar_one()


def test_a_triage_action_goes_through_while_workbench_ingest_reads_a_slow_stdin(ctx, engine, db_url):
    acme = add_stripe(ctx)
    failure_id = _open_failure(ctx)
    env = {**os.environ, "WORKBENCH_DB": db_url}
    process = subprocess.Popen([str(WORKBENCH), "ingest", "acme", "-"], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    assert process.stdin is not None
    written = 0

    def trickle() -> None:  # a line every 0.2 s
        nonlocal written
        process.stdin.write(_line(written))
        process.stdin.flush()
        written += 1
        time.sleep(0.2)

    try:
        deadline = time.monotonic() + 60
        while _stored(engine, acme.id) == 0:  # the stream is still open...
            assert process.poll() is None, process.stderr.read().decode()
            assert time.monotonic() < deadline, "no delivery became visible while the stream ran"
            trickle()
        seen_while_streaming = _stored(engine, acme.id)  # ...and a reader sees its first deliveries
        for _ in range(3):
            trickle()
        started = time.monotonic()
        triage.add_note(ctx, failure_id, "looked at while acme streams")
        connections.set_paused(ctx, "other", True, "while acme streams")
        took = time.monotonic() - started
        for _ in range(3):
            trickle()
        out, err = process.communicate(timeout=60)  # closes stdin: the stream ends
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, err.decode()
    assert 0 < seen_while_streaming < written
    assert took < PROMPTLY, f"the triage action waited {took:.1f}s for the ingest's write lock"
    assert out.decode().splitlines() == [f"applied\t{written}", f"total\t{written}"]
    assert _stored(engine, acme.id) == written
    assert connections.get_connection(ctx, "other").paused


def test_in_process_a_pipe_is_committed_before_ingest_waits_for_more(ctx, engine):
    acme = add_stripe(ctx)
    add_stripe(ctx, "other")
    read_end, write_end = os.pipe()
    totals: list[int] = []
    writer_done = threading.Event()
    waits: list[float] = []

    def write() -> None:
        with os.fdopen(write_end, "wb", buffering=0) as out:
            for i in range(6):
                out.write(_line(i))
                time.sleep(0.3)
                if i == 2:  # another writer, while ingest waits for line 3
                    started = time.monotonic()
                    connections.set_paused(ctx, "other", i == 2, "mid-stream")
                    waits.append(time.monotonic() - started)
        writer_done.set()

    writer = threading.Thread(target=write)
    writer.start()
    try:
        with os.fdopen(read_end, "rb") as stream:
            report = ingest(ctx, "acme", CaptureReader(stream),
                            progress=lambda r: totals.append(r.total) if not writer_done.is_set() else None)
    finally:
        writer.join()
    assert report.counts == {"applied": 6}
    assert totals and totals[0] < 6  # committed, and reported, while the stream was still open
    assert waits and waits[0] < PROMPTLY
    assert _stored(engine, acme.id) == 6


class SlowStripe(StripeAdapter):
    """Parses at about 30 deliveries a second: slower than the stream below comes in."""

    def parse(self, body: bytes) -> ParsedEvent:
        time.sleep(0.03)
        return super().parse(body)


def test_a_stream_faster_than_ingest_still_commits_every_commit_interval(engine, monkeypatch):
    ctx = dataclasses.replace(make_context(engine), adapters=AdapterRegistry({"stripe": SlowStripe()}))
    add_stripe(ctx)
    monkeypatch.setattr(ingest_feed, "COMMIT_EVERY_S", 0.1)
    read_end, write_end = os.pipe()

    def write() -> None:  # 60 lines at 100 a second: the input never pauses while ingest works
        with os.fdopen(write_end, "wb", buffering=0) as out:
            for i in range(60):
                out.write(_line(i))
                time.sleep(0.01)

    writer = threading.Thread(target=write)
    writer.start()
    totals: list[int] = []
    try:
        with os.fdopen(read_end, "rb") as stream:
            report = ingest(ctx, "acme", CaptureReader(stream), progress=lambda r: totals.append(r.total))
    finally:
        writer.join()
    assert report.counts == {"applied": 60}
    # About 1.8 s of parsing, with input always waiting: without the interval, one commit at the
    # end; with it, one after each chunk that ends 0.1 s after the last commit (chunks take what
    # has arrived, so they grow while ingest lags behind).
    assert len(totals) >= 3 and totals[-1] == 60, totals


# -- the feed itself ---------------------------------------------------------------------------

def test_the_feed_holds_at_most_its_limit_and_hands_over_what_has_arrived():
    read: list[int] = []

    def source() -> Any:
        for i in range(50):
            read.append(i)
            yield capture(pi_event(f"evt_{i}", f"pi_{i}", "processing", CREATED + i))

    feed = ingest_feed.CaptureFeed(source(), limit=10)
    try:
        deadline = time.monotonic() + 10
        while len(read) < 11 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.1)
        assert len(read) == 11  # ten waiting, and the eleventh read, held until there is room
        first = feed.take(4, wait=False)
        assert first is not None and len(first) == 4
        taken = 4
        while (chunk := feed.take(100, wait=True)) is not None:
            taken += len(chunk)
        assert taken == 50
    finally:
        feed.close()


def test_a_failing_stream_raises_in_the_ingesting_thread_after_what_it_read():
    def source() -> Any:
        yield capture(pi_event("evt_1", "pi_1", "processing", CREATED))
        raise OSError("the connection was reset")

    feed = ingest_feed.CaptureFeed(source(), limit=10)
    got = []
    try:
        with pytest.raises(OSError, match="the connection was reset"):
            while (chunk := feed.take(10, wait=True)) is not None:
                got.extend(chunk)
    finally:
        feed.close()
    assert len(got) == 1
