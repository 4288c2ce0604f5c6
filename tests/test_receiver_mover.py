"""The receiver's mover: spooled deliveries into the store, applied on the way; found again
after a crash between the store's commit and the spool's delete, they are not stored twice;
one the store refuses is set aside in the spool (stuck) and the rest move on."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import select
from sqlalchemy.exc import NoResultFound

from store.database import reading
from store.models import Delivery, Failure
from tests.receiver_harness import event_body
from tests.support import add_stripe
from workbench.receiver.mover import Mover, SpoolReader
from workbench.receiver.spool import INSERT, delivery_ids, open_spool, pack, waiting
from workbench.services import connections
from workbench.services.context import ServiceContext
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


def test_a_paused_connection_gets_them_held_and_a_refused_row_is_set_aside(ctx: ServiceContext, tmp_path: Path) -> None:
    acme = add_stripe(ctx)
    connections.set_paused(ctx, "acme", True)
    spool = _spool(tmp_path / "r.spool", [_row(1, acme.id), _row(2, "con_nobody"), _row(3, acme.id)])
    mover = Mover(ctx, NO_VAULTS)

    with pytest.raises(NoResultFound):  # a delivery of no connection: the whole move refused
        mover.move(spool)
    mover.move_one_by_one(spool, 3)
    stored = _stored(ctx)
    assert {key: (row.verdict, row.verdict_reason) for key, row in stored.items()} == {
        "dlv_mv0001": ("held", "connection paused: applied on resume"),
        "dlv_mv0003": ("held", "connection paused: applied on resume")}
    assert waiting(tmp_path / "r.spool") == (0, 1)  # kept, never moved by itself, counted
    assert delivery_ids(tmp_path / "r.spool") == {"dlv_mv0002"}
    assert mover.move(spool) == 0
