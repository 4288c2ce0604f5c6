"""Held deliveries: stored raw while their connection was paused, applied when it resumes.

Resuming runs them through the same pipeline, in the order they arrived (their IDs are minted
in arrival order), each keeping its ID: the connection ends exactly as if it had never been
paused, with the same verdicts (duplicates, stale events, rejections) and the same records.
Encrypted bodies are opened to be applied, and sealed again as the connection now asks.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Any

from sqlalchemy import Connection, delete, select

from adapters.protocol import SignatureCheck
from store.bulk import codec
from store.models import Connection as ConnectionRow, Delivery

from .captures import Capture
from .connections import ConnectionInfo
from .context import ServiceContext
from .header_mac import header_key
from .ingest import HELD, _store
from .ingest_prepare import prepare
from .payload_crypto import NO_VAULTS, BodyReader, Vaults, encrypts, sealer_for

deliveries = Delivery.__table__
connections = ConnectionRow.__table__

PAGE = 1000  # held deliveries applied at a time (bounds memory and the IN list below)


def apply_held(conn: Connection, ctx: ServiceContext, connection: ConnectionInfo,
               vaults: Vaults = NO_VAULTS, only: Sequence[str] | None = None,
               mac_key: bytes | None = None) -> Counter[str]:
    """Apply a connection's held deliveries in `conn`'s transaction; counts per verdict.
    Encrypted ones need the connection's vault in `vaults` (PayloadLocked otherwise).
    `only`: just these deliveries (those still held), found by primary key: the webhook
    receiver's follower knows what it stored and must not scan for it. `mac_key`: the store's
    header MAC key when the caller holds it already (reading it costs a file read and a key
    derivation: a large part of a small step's cost)."""
    assert not connection.paused, "held deliveries are applied on an active connection"
    adapter = ctx.adapters.get(connection.provider)
    conversions = codec(conn.dialect)
    mac_key = header_key(ctx.engine) if mac_key is None else mac_key
    reader = BodyReader(vaults)
    counts: Counter[str] = Counter()
    held_rows = (select(deliveries.c.id, deliveries.c.connection_id, deliveries.c.source, deliveries.c.received_at,
                        deliveries.c.headers, deliveries.c.body, deliveries.c.body_key_version,
                        deliveries.c.body_purged_at, deliveries.c.signature_verdict, deliveries.c.signature_secret,
                        connections.c.environment)
                 .join(connections, connections.c.id == deliveries.c.connection_id)
                 .where(deliveries.c.verdict == str(HELD))
                 .order_by(deliveries.c.id))
    query = held_rows.where(deliveries.c.connection_id == connection.id)
    sealer = None

    def pages() -> Iterator[Sequence[Any]]:
        if only is None:
            while rows := conn.execute(query.limit(PAGE)).all():
                yield rows  # applied before the next page is asked for: no longer held
            return
        wanted = sorted(only)
        for start in range(0, len(wanted), PAGE):
            # By primary key alone: with the connection in the WHERE too, SQLite's planner takes the
            # (connection, ...) index and reads every delivery the connection ever had, per page.
            found = conn.execute(held_rows.where(deliveries.c.id.in_(wanted[start:start + PAGE]))).all()
            if rows := [row for row in found if row.connection_id == connection.id]:
                yield rows

    for rows in pages():
        if sealer is None and encrypts(connection.settings):
            sealer = sealer_for(vaults, connection.id, connection.environment)
        ids = [row.id for row in rows]
        captures = [Capture(row.received_at, row.headers, reader.plain(row), row.source) for row in rows]
        # Each keeps the signature verdict (and secret name) it was stored with, in the captures'
        # order (checked on receipt; failed ones were rejected then, not held).
        stored_checks = iter([SignatureCheck(row.signature_verdict, row.signature_secret) for row in rows])

        def stored_check(_capture: Capture, checks: Iterator[SignatureCheck] = stored_checks) -> SignatureCheck:
            return next(checks)
        # Stored again under the same IDs, now with their verdicts (and no longer held, so the
        # next page starts after them).
        conn.execute(delete(deliveries).where(deliveries.c.id.in_(ids)))
        counts.update(_store(conn, ctx, connection, adapter, prepare(adapter, conversions, captures, mac_key,
                                                                  stored_check),
                             ids=ids, sealer=sealer))
    return counts
