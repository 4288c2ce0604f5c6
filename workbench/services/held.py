"""Held deliveries: stored raw while their connection was paused, applied when it resumes.

Resuming runs them through the same pipeline, in the order they arrived (their IDs are minted
in arrival order), each keeping its ID: the connection ends exactly as if it had never been
paused, with the same verdicts (duplicates, stale events, rejections) and the same records.
Encrypted bodies are opened to be applied, and sealed again as the connection now asks.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
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
from .ingest_prepare import Head, prepare
from .payload_crypto import NO_VAULTS, BodyReader, Sealer, Vaults, encrypts, sealer_for

deliveries = Delivery.__table__
connections = ConnectionRow.__table__

PAGE = 1000  # held deliveries applied at a time (bounds memory and the IN list below)


def apply_held(conn: Connection, ctx: ServiceContext, connection: ConnectionInfo,
               vaults: Vaults = NO_VAULTS, mac_key: bytes | None = None) -> Counter[str]:
    """Apply a connection's held deliveries in `conn`'s transaction; counts per verdict.
    Encrypted ones need the connection's vault in `vaults` (PayloadLocked otherwise).
    `mac_key`: the store's header MAC key when the caller holds it already (reading it costs a
    file read and a key derivation)."""
    assert not connection.paused, "held deliveries are applied on an active connection"
    mac_key = header_key(ctx.engine) if mac_key is None else mac_key
    reader = BodyReader(vaults)
    counts: Counter[str] = Counter()
    query = (select(deliveries.c.id, deliveries.c.connection_id, deliveries.c.source, deliveries.c.received_at,
                    deliveries.c.headers, deliveries.c.body, deliveries.c.body_key_version,
                    deliveries.c.body_purged_at, deliveries.c.signature_verdict, deliveries.c.signature_secret,
                    connections.c.environment)
             .join(connections, connections.c.id == deliveries.c.connection_id)
             .where(deliveries.c.verdict == str(HELD), deliveries.c.connection_id == connection.id)
             .order_by(deliveries.c.id))
    sealer = None

    while rows := conn.execute(query.limit(PAGE)).all():  # applied before the next page: no longer held
        if sealer is None and encrypts(connection.settings):
            sealer = sealer_for(vaults, connection.id, connection.environment)
        # Stored again under the same IDs, now with their verdicts (and no longer held, so the
        # next page starts after them).
        conn.execute(delete(deliveries).where(deliveries.c.id.in_([row.id for row in rows])))
        counts.update(apply_rows(conn, ctx, connection, rows, reader=reader, mac_key=mac_key, sealer=sealer))
    return counts


def apply_rows(conn: Connection, ctx: ServiceContext, connection: ConnectionInfo, rows: Sequence[Any], *,
               reader: BodyReader, mac_key: bytes, sealer: Sealer | None,
               heads: Sequence[Head] | None = None) -> Counter[str]:
    """Store deliveries received earlier (not in the store's deliveries now) with their
    verdicts, under their own IDs, in `conn`'s transaction. `rows`: id, received_at, headers,
    body, body_key_version, body_purged_at, signature_verdict, signature_secret, source and the
    connection's environment, in arrival order. Each keeps the signature verdict (and secret
    name) it was received with: checked on receipt, and failed ones were rejected then.
    `heads`: the rows' stored forms, made on receipt (ingest_prepare.Head); the rows' bodies
    must then be plain, and they stand for their captures."""
    adapter = ctx.adapters.get(connection.provider)
    captures: Sequence[Any] = rows if heads is not None else [
        Capture(row.received_at, row.headers, reader.plain(row), row.source) for row in rows]
    stored_checks = iter([SignatureCheck(row.signature_verdict, row.signature_secret) for row in rows])

    def stored_check(_capture: Capture) -> SignatureCheck:
        return next(stored_checks)

    return _store(conn, ctx, connection, adapter,
                  prepare(adapter, codec(conn.dialect), captures, mac_key, stored_check, heads, map_later=True),
                  ids=[row.id for row in rows], sealer=sealer)
