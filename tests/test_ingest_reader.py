"""The forked ingest reader: the same rows and verdicts with it as without, its wire format, its
failures, and that it is used only when asked for."""

from __future__ import annotations

import dataclasses
import io
import logging
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import select

from adapters import AdapterRegistry
from adapters.stripe import StripeAdapter
from adapters.stripe.simulator import SimulatorSettings, write_jsonl
from store.bulk import Codec
from store.database import open_store, reading
from store.models import Base, Delivery
from tests.conftest import fresh_database
from tests.support import T0, add_stripe, capture, make_context, pi_event
from workbench.cli.settings import reader_process_wanted
from workbench.domain.canonical import MappedEvent, NotCovered, ParsedEvent
from workbench.domain.statuses import Status
from workbench.services.captures import CaptureReader
from workbench.services.ingest import ingest
from workbench.services.ingest_prepare import Problem, prepare
from workbench.services.ingest_reader import _BATCH, _PICKLED_BATCH, ReaderProcessFailed, _ship, _unship

READER_LOG = "workbench.services.ingest_reader"


@pytest.fixture
def second_url(db_url: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Another empty database on the same backend as `db_url`."""
    with fresh_database(request, "sqlite" if db_url.startswith("sqlite") else "postgres", tmp_path / "second.db") as url:
        yield url


def _capture_file(path: Path, intents: int = 500) -> int:
    total = write_jsonl(str(path), SimulatorSettings(intents=intents, seed=5, garbage_rate=0.02, drift_rate=0.02))
    with path.open("ab") as out:  # a bad line, and a credential in a header (stored masked)
        out.write(b"{not json\n")
        out.write(orjson.dumps({"received_at": T0.isoformat(), "headers": {"Authorization": "Bearer sk_test_1"},
                                "body": orjson.dumps(pi_event("evt_hdr", "pi_hdr", "processing", 1)).decode()})
                  + b"\n")
    return total + 1


def _every_row(engine: Any) -> dict[str, list[tuple[Any, ...]]]:
    with reading(engine) as conn:
        return {table.name: sorted((tuple(row) for row in conn.execute(select(table))), key=repr)
                for table in Base.metadata.sorted_tables}


def _ingest_file(url: str, path: Path, *, reader_process: bool, batch_size: int) -> tuple[Any, Any, list[Any]]:
    engine = open_store(url, auto_upgrade=True)
    ctx = make_context(engine, deterministic=True)
    add_stripe(ctx)
    with path.open("rb") as f:
        reader = CaptureReader(f)
        report = ingest(ctx, "acme", reader, batch_size=batch_size, reader_process=reader_process)
    return engine, report, reader.bad_lines


def test_reader_process_on_and_off_store_the_same_rows_and_verdicts(db_url, second_url, tmp_path, caplog):
    path = tmp_path / "captures.jsonl"
    total = _capture_file(path)
    caplog.set_level(logging.DEBUG, logger=READER_LOG)
    with_reader, report_on, bad_on = _ingest_file(db_url, path, reader_process=True, batch_size=300)
    assert any("in a reader process" in r.getMessage() for r in caplog.records)
    caplog.clear()
    without, report_off, bad_off = _ingest_file(second_url, path, reader_process=False, batch_size=300)
    assert not any("reader process" in r.getMessage() for r in caplog.records)
    try:
        assert report_on.total == total and report_on.counts == report_off.counts
        assert {"applied", "duplicate", "invalid", "failed", "ignored"} <= set(report_on.counts)
        assert [(b.line_no, b.reason) for b in bad_on] == [(b.line_no, b.reason) for b in bad_off] != []
        rows_on, rows_off = _every_row(with_reader), _every_row(without)
        assert len(rows_on["deliveries"]) == total
        assert rows_on == rows_off  # every table, every column: IDs and clock readings included
    finally:
        with_reader.dispose()
        without.dispose()


# -- the wire format ---------------------------------------------------------------------------

def _prepared(conversions: Codec) -> list[Any]:
    bodies = [orjson.dumps(pi_event("evt_1", "pi_1", "processing", 1_793_534_400)),
              orjson.dumps(pi_event("evt_2", "pi_1", "succeeded", 1_793_534_401)),
              orjson.dumps(pi_event("evt_3", "pi_2", "requires_review", 1_793_534_402)),  # status unknown
              orjson.dumps({"id": "evt_4", "type": "charge.succeeded", "created": 1_793_534_403}),  # not covered
              b"not json"]
    return prepare(StripeAdapter(), conversions, [capture(body, headers={"Authorization": "Bearer x"})
                                                  for body in bodies], b"k" * 32)


def test_wire_format_round_trips_builtins_through_marshal():
    prepared = _prepared(Codec("sqlite"))
    kinds = {type(result) for _, result, _, _ in prepared}
    assert kinds == {MappedEvent, NotCovered, Problem}
    assert any(type(r) is MappedEvent and r.status is None for _, r, _, _ in prepared)
    message = _ship(prepared)
    assert message[:1] == _BATCH
    assert _unship(message) == prepared


class Custom:
    """An adapter's own result type."""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Custom)


def test_wire_format_falls_back_to_pickle_for_anything_else():
    # PostgreSQL's columns take naive datetimes, which marshal cannot carry.
    prepared = _prepared(Codec("postgresql"))
    assert isinstance(prepared[0][0][1], datetime) and prepared[0][0][1].tzinfo is None
    message = _ship(prepared)
    assert message[:1] == _PICKLED_BATCH
    assert _unship(message) == prepared

    odd = [(("file",), Custom(), None, None),
           (("file",), MappedEvent("payment", "pi", "x", Status.COMPLETED, {}, "v"), T0, "whsec_ref")]
    message = _ship(odd)
    assert message[:1] == _PICKLED_BATCH
    assert _unship(message) == odd


# -- failures in the reader process ------------------------------------------------------------

class Boom(BaseException):
    """Not an Exception: prepare() does not turn it into a delivery's problem."""


class BrokenAdapter(StripeAdapter):
    def parse(self, body: bytes) -> ParsedEvent:
        if b'"evt_boom"' in body:
            raise Boom("the parser blew up on evt_boom")
        return super().parse(body)


@pytest.mark.parametrize("reader_process", [True, False], ids=["reader", "in-process"])
def test_a_failure_while_preparing_stops_ingest_with_only_whole_batches_stored(engine, tmp_path, reader_process):
    lines = [orjson.dumps({"received_at": T0.isoformat(), "headers": {},
                           "body": orjson.dumps(pi_event(f"evt_{i}", f"pi_{i}", "processing", 1_793_534_400 + i))
                           .decode()}) for i in range(1000)]
    lines[549] = lines[549].replace(b"evt_549", b"evt_boom")
    path = tmp_path / "captures.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    ctx = dataclasses.replace(make_context(engine), adapters=AdapterRegistry({"stripe": BrokenAdapter()}))
    add_stripe(ctx)
    committed: list[int] = []
    with path.open("rb") as f:
        if reader_process:
            with pytest.raises(ReaderProcessFailed, match="reader process failed: Boom: the parser blew up on evt_boom"):
                ingest(ctx, "acme", CaptureReader(f), batch_size=100, reader_process=True,
                       progress=lambda report: committed.append(report.total))
        else:
            with pytest.raises(Boom):
                ingest(ctx, "acme", CaptureReader(f), batch_size=100, progress=lambda r: committed.append(r.total))
    deliveries = Delivery.__table__
    with reading(engine) as conn:
        stored = sorted(int(event_id.removeprefix("evt_")) for event_id in
                        conn.execute(select(deliveries.c.provider_event_id)).scalars())
    # Deliveries 1-500 make five whole batches; the sixth (501-600) held the failing one and
    # was rolled back.
    assert stored == list(range(500))
    assert committed[:4] == [100, 200, 300, 400]


# -- used only when asked for, and only where it can be -----------------------------------------

def test_reader_process_falls_back_where_it_cannot_be_used_and_says_why(ctx, caplog, tmp_path):
    add_stripe(ctx)
    caplog.set_level(logging.DEBUG, logger=READER_LOG)
    stream = io.BytesIO(orjson.dumps({"received_at": T0.isoformat(), "headers": {},
                                      "body": orjson.dumps(pi_event("evt_1", "pi_1", "processing", 1)).decode()})
                        + b"\n")
    report = ingest(ctx, "acme", CaptureReader(stream), reader_process=True)
    assert report.counts == {"applied": 1}
    assert any("no reader process (the input is not a regular file" in r.getMessage() for r in caplog.records)
    caplog.clear()
    report = ingest(ctx, "acme", [capture(pi_event("evt_2", "pi_1", "succeeded", 2))], reader_process=True)
    assert report.counts == {"applied": 1}
    assert any("no reader process (the input is not a capture file)" in r.getMessage() for r in caplog.records)


def test_library_callers_prepare_in_process_unless_they_ask(ctx, caplog, tmp_path):
    add_stripe(ctx)
    path = tmp_path / "captures.jsonl"
    _capture_file(path, intents=20)
    caplog.set_level(logging.DEBUG, logger=READER_LOG)
    with path.open("rb") as f:
        ingest(ctx, "acme", CaptureReader(f))
    assert not any("reader process" in r.getMessage() for r in caplog.records)


def test_the_operator_switch_is_read_by_the_cli_settings():
    assert reader_process_wanted({}) is True
    assert reader_process_wanted({"WORKBENCH_INGEST_READER": "1"}) is True
    assert reader_process_wanted({"WORKBENCH_INGEST_READER": "0"}) is False
    assert reader_process_wanted({"WORKBENCH_INGEST_READER": " 0 "}) is False
