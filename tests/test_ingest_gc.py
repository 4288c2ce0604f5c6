"""Ingest inside a long-lived process: the collector is paused only while a batch is stored, and
is left exactly as it was found, however ingest ends."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import event, func, select

from store.database import reading
from store.models import Delivery
from tests.support import add_stripe, capture, pi_event
from workbench.services.ingest import ingest

CREATED = 1_793_534_400


@pytest.fixture(autouse=True)
def collector() -> Iterator[None]:
    """Whatever a test does to the collector, the next test finds it as this one did."""
    enabled, threshold = gc.isenabled(), gc.get_threshold()
    yield
    gc.set_threshold(*threshold)
    (gc.enable if enabled else gc.disable)()


def _state() -> tuple[bool, tuple[int, ...]]:
    return gc.isenabled(), gc.get_threshold()


def _captures(n: int) -> list[Any]:
    return [capture(pi_event(f"evt_{i}", f"pi_{i}", "processing", CREATED + i)) for i in range(n)]


class DeliveryInserts:
    """Watches the store's INSERTs of deliveries: whether the collector ran meanwhile, and
    optionally fails the first after `fail_after` rows, as a store failing mid-batch would."""

    def __init__(self, engine: Any, fail_after: int | None = None) -> None:
        self.collector_enabled: list[bool] = []
        self.rows = 0
        self._fail_after = fail_after
        self._engine = engine
        event.listen(engine, "before_cursor_execute", self._seen)

    def _seen(self, conn: Any, cursor: Any, statement: str, parameters: Any, context: Any,
              executemany: bool) -> None:
        if statement.lstrip().upper().startswith("INSERT INTO DELIVERIES"):
            self.collector_enabled.append(gc.isenabled())
            if self._fail_after is not None and self.rows >= self._fail_after:
                raise OSError("the disk is full")
            self.rows += len(parameters) if executemany else 1

    def remove(self) -> None:
        event.remove(self._engine, "before_cursor_execute", self._seen)


def _stored(engine: Any) -> int:
    with reading(engine) as conn:
        return conn.execute(select(func.count()).select_from(Delivery.__table__)).scalar_one()


def test_the_collector_is_paused_per_batch_and_restored_after_success(ctx, engine):
    add_stripe(ctx)
    gc.set_threshold(1234, 7, 9)  # a host process's own tuning survives too
    before = _state()
    inserts = DeliveryInserts(engine)
    between: list[bool] = []
    try:
        report = ingest(ctx, "acme", _captures(9), batch_size=3, progress=lambda _r: between.append(gc.isenabled()))
    finally:
        inserts.remove()
    assert report.counts == {"applied": 9}
    assert len(inserts.collector_enabled) >= 3 and not any(inserts.collector_enabled)  # paused while storing
    assert between == [True, True, True]  # and running between batches
    assert _state() == before


def test_a_collector_that_was_off_stays_off(ctx):
    add_stripe(ctx)
    gc.disable()
    before = _state()
    ingest(ctx, "acme", _captures(5), batch_size=2)
    assert _state() == before == (False, before[1])


def test_the_collector_is_restored_after_the_store_fails_mid_batch(ctx, engine):
    add_stripe(ctx)
    before = _state()
    inserts = DeliveryInserts(engine, fail_after=3)  # in the second batch
    try:
        with pytest.raises(Exception, match="the disk is full"):
            ingest(ctx, "acme", _captures(6), batch_size=3)
    finally:
        inserts.remove()
    assert _state() == before
    assert _stored(engine) == 3  # the first batch; nothing of the failed one


def test_the_collector_is_restored_when_the_progress_callback_gives_up(ctx, engine):
    add_stripe(ctx)
    before = _state()

    class Abandoned(Exception):
        pass

    def progress(_report: Any) -> None:
        raise Abandoned

    with pytest.raises(Abandoned):
        ingest(ctx, "acme", _captures(6), batch_size=2, progress=progress)
    assert _state() == before
    assert _stored(engine) in (2, 4)  # the batch reported, and the one committing meanwhile
