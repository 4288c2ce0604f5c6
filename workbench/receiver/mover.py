"""The mover: deliveries from a receiver's spool into the store, applied on the way.

The oldest spooled deliveries, up to MOVE_ROWS at a time, in one store transaction: a delivery
whose connection is active goes through the ingest pipeline under the ID it was answered with
(services/held.apply_rows: dedupe, mapping, state, its verdict), one rejected on receipt (a
failed signature, a body over the limit, a locked vault) is stored as it is (a failed
signature opens its authentication failure), and one whose connection is paused is stored held
(resuming applies it). Only then are the rows deleted from the spool (by its writer, while
the receiver runs: SpoolReader): a mover killed between the two finds them again and skips
what the store already has (by delivery ID). Each
connection's row is locked first (as resuming does), so several receivers sharing a PostgreSQL
store apply each connection's deliveries one at a time, and a pause made meanwhile holds.

A delivery that cannot be moved (the store refuses it) must not stop the rest behind it: after
a failed attempt the same deliveries are tried again one by one, and one that still fails
alone is set aside in the spool's `stuck` table with the reason: kept, logged, never moved
again by itself.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from collections import Counter
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select

from store.bulk import Codec, Converter, codec, row_insert
from store.database import writing
from store.models import Connection as ConnectionRow, Delivery
from workbench.domain.taxonomy import Category
from workbench.services.beliefs import BeliefBook
from workbench.services.connections import ConnectionInfo, _info as connection_info
from workbench.services.context import ServiceContext
from workbench.services.header_mac import header_key
from workbench.services.held import apply_rows
from workbench.services.ingest import HELD, HELD_REASON
from workbench.services.ingest_prepare import DELIVERY_COLUMNS, stored_form_of
from workbench.services.ingest_run import one_line
from workbench.services.payload_crypto import BodyReader, Vaults, encrypts, sealer_for

from .spool import DELETE_THROUGH, MOVED, pack, received_text, unpack

log = logging.getLogger(__name__)

deliveries = Delivery.__table__
connections = ConnectionRow.__table__
# Deliveries per store transaction (whole batches: a few more). A move's commit syncs its whole
# WAL at once (about 4 KB a delivery) and the spool's syncs on the same disk wait behind it:
# with 3,000 a move, the spool commits over 20 ms followed big moves' commits (the receiver's
# p99); with 1,000, moves cost more each and the applying fell behind in one run. Measured
# between the two: docs/benchmarks.md, Round 14.
MOVE_ROWS = 2000
_HELD = str(HELD)
_SPOOL_TIME = Codec("sqlite").datetime  # the receipt time as a spool in stored form keeps it


class UnknownConnection(LookupError):
    """A spooled delivery for a connection the store does not have."""


class DamagedDelivery(ValueError):
    """A spooled delivery whose stored form cannot be made (its row was damaged on disk)."""


class SpoolReader:
    """A spool as one mover reads it. Batches already there when it was opened may have been
    moved by a mover killed before they were deleted: the store is asked which it has. Later
    ones were spooled since and nothing else moves this spool (spool.SpoolClaim).

    `hand_off`: the write end of a pipe to the spool's live writer (a running receiver's own
    spool). Moved batches are then deleted by the writer, in its next transaction, instead of
    here: under load the writer commits back to back, and a delete here waited for the spool's
    write lock in SQLite's busy handler, whose sleeps (up to 100 ms each) found it free only
    now and then: moves stalled for up to a second (docs/benchmarks.md, Round 19)."""

    def __init__(self, conn: sqlite3.Connection, hand_off: int | None = None) -> None:
        self.conn = conn
        self.recheck_through: int = conn.execute("SELECT coalesce(max(seq), 0) FROM spool").fetchone()[0]
        self.moved_through = 0  # every batch through this one is in the store (maybe not yet deleted)
        self._hand_off = hand_off

    def batches(self, deliveries: int) -> list[tuple[int, list[Spooled]]]:
        """The oldest batches, up to `deliveries` deliveries (at least one batch). A batch that
        cannot be read back (a damaged file) is set aside whole, so it never holds up the rest."""
        taken: list[tuple[int, list[Spooled]]] = []
        unreadable: list[tuple[int, bytes, str]] = []
        count = 0
        cursor = self.conn.execute("SELECT seq, deliveries, batch FROM spool WHERE seq > ? ORDER BY seq",
                                   (self.moved_through,))
        try:
            for seq, size, batch in cursor:
                try:
                    taken.append((seq, [Spooled(seq, row) for row in unpack(batch)]))
                except Exception as exc:
                    unreadable.append((seq, batch, f"unreadable batch of {size} deliveries: {one_line(exc)}"))
                    continue
                count += size
                if count >= deliveries:
                    break
        finally:
            cursor.close()  # not read to the end: let go of the read snapshot now
        for seq, batch, reason in unreadable:
            log.error("receiver: spool batch %d could not be read (%s); set aside in the spool's stuck table", seq, reason)
            with self.conn:  # both or neither
                self.conn.execute("BEGIN IMMEDIATE")
                self._stuck(f"batch-{seq}", batch, reason)
                self.conn.execute("DELETE FROM spool WHERE seq = ?", (seq,))
        return taken

    def delete_through(self, seq: int) -> None:
        """Batches through `seq` are in the store: handed to the writer to delete, or deleted
        here (no writer, or its pipe is full: it is not reading)."""
        self.moved_through = max(self.moved_through, seq)
        if self._hand_off is not None:
            try:
                os.write(self._hand_off, MOVED.pack(seq))
                return
            except OSError:  # BlockingIOError: full; BrokenPipeError: no reader
                pass
        self.conn.execute(DELETE_THROUGH, (seq,))

    def remind(self) -> None:
        """Hand the last mark over again if batches it covers are still here: a spool writer
        started again after it read the mark, but before it committed the delete, would
        otherwise leave them until the next move (counted as waiting, in /healthz, meanwhile)."""
        if self._hand_off is not None and self.moved_through and self.conn.execute(
                "SELECT 1 FROM spool WHERE seq <= ? LIMIT 1", (self.moved_through,)).fetchone():
            self.delete_through(self.moved_through)

    def stop_handing_off(self) -> None:
        """The writer has stopped: delete what it may not have, and from now on here."""
        self._hand_off = None
        if self.moved_through:
            self.conn.execute(DELETE_THROUGH, (self.moved_through,))

    def set_aside(self, row: Spooled, reason: str) -> None:
        self._stuck(row.id, pack([row.values]), reason)

    def _stuck(self, key: str, kept: bytes, reason: str) -> None:
        self.conn.execute("INSERT OR REPLACE INTO stuck (id, delivery, reason) VALUES (?, ?, ?)", (key, kept, reason[:500]))


class Spooled:
    """One spooled delivery, shaped as held.apply_rows (given its stored form) and BodyReader
    read a delivery."""

    __slots__ = ("values", "seq", "id", "connection_id", "received_text", "headers_text", "body", "payload_hash",
                 "capture_key", "signature_verdict", "verdict", "verdict_reason", "body_key_version",
                 "signature_secret", "problem", "environment")
    source = "webhook"
    body_purged_at = None

    def __init__(self, seq: int, values: list[Any]) -> None:
        self.seq, self.values = seq, values  # spool.COLUMNS
        (self.id, self.connection_id, self.received_text, self.headers_text, self.body, self.payload_hash,
         self.capture_key, self.signature_verdict, self.verdict, self.verdict_reason, self.body_key_version,
         self.signature_secret, category, code, message) = values
        self.problem = None if category is None else (category, code, message)
        self.environment = ""

    @property
    def received_at(self) -> datetime:
        return datetime.fromisoformat(self.received_text + "+00:00")

    def form(self, mac_key: bytes, to_json: Converter) -> None:
        """Make the stored form of a delivery spooled raw (spool.COLUMNS); `values` stay raw.
        DamagedDelivery if it cannot be made (a damaged spool)."""
        if self.payload_hash is not None:
            return
        try:
            micros = self.values[2]
            self.received_text, self.headers_text, self.payload_hash, self.capture_key = stored_form_of(
                micros, received_text(micros), self.values[3], self.body, mac_key, to_json)
        except Exception as exc:
            raise DamagedDelivery(f"its spooled receipt time, headers or body cannot be read back ({one_line(exc)})") \
                from None


class Mover:
    def __init__(self, ctx: ServiceContext, vaults: Vaults) -> None:
        self._ctx, self._vaults = ctx, vaults
        self._mac_key = header_key(ctx.engine)  # a file read and a key derivation: once
        self._reader = BodyReader(vaults)
        self._sqlite = ctx.engine.dialect.name == "sqlite"
        self._codec = codec(ctx.engine.dialect)
        self.verdicts: Counter[str] = Counter()  # of what this mover applied

    def move(self, spool: SpoolReader, limit: int = MOVE_ROWS) -> int:
        """Move the oldest spooled batches, about `limit` deliveries; how many deliveries left the
        spool. Raises when the store could not take them (nothing was moved)."""
        batches = spool.batches(limit)
        if not batches:
            return 0
        rows = [row for _, batch in batches for row in batch]
        self._store(rows, recheck=batches[0][0] <= spool.recheck_through)
        spool.delete_through(batches[-1][0])
        return len(rows)

    def move_one_by_one(self, spool: SpoolReader, deliveries: int) -> None:
        """After a failed move: the next batches' deliveries one at a time, so one the store
        refuses is set aside (stuck) and the rest go on."""
        for seq, rows in spool.batches(deliveries):
            for row in rows:
                try:
                    self.store_one(row)
                except Exception as exc:
                    reason = one_line(exc)
                    log.error("receiver: delivery %s could not be moved into the store (%s); it stays in the spool",
                              row.id, reason)
                    spool.set_aside(row, reason)
            spool.delete_through(seq)

    def store_one(self, row: Spooled) -> None:
        """One delivery in a transaction of its own, skipped if the store has it (by ID): how a
        refused move is tried delivery by delivery, and how a stuck one is retried (stuck.py)."""
        self._store([row], recheck=True)

    def _store(self, rows: list[Spooled], *, recheck: bool) -> None:
        for row in rows:
            row.form(self._mac_key, self._codec.json)
        with writing(self._ctx.engine) as conn:
            present: set[str] = set()
            if recheck:
                present.update(conn.execute(select(deliveries.c.id).where(deliveries.c.id.in_([row.id for row in rows])))
                               .scalars())
            groups: dict[str, list[Spooled]] = {}
            for row in rows:
                if row.id not in present:  # moved before the mover was killed: the store has it
                    groups.setdefault(row.connection_id, []).append(row)
            for connection_id, group in groups.items():
                self._store_group(conn, connection_id, group)

    def _store_group(self, conn: Connection, connection_id: str, group: list[Spooled]) -> None:
        found = conn.execute(select(connections).where(connections.c.id == connection_id).with_for_update()).one_or_none()
        if found is None:  # said in words: this is the reason an operator reads (`workbench listen stuck`)
            raise UnknownConnection(f"connection {connection_id} is not in the store")
        info = connection_info(found)
        as_they_are = [row for row in group if row.verdict != _HELD or info.paused]
        to_apply = [row for row in group if row.verdict == _HELD and not info.paused]
        if as_they_are:
            self._store_as_they_are(conn, info, as_they_are)
        if to_apply:
            sealer = sealer_for(self._vaults, info.id, info.environment) if encrypts(info.settings) else None
            for row in to_apply:
                if row.body_key_version is not None:  # sealed on receipt: opened to be applied (and sealed again)
                    row.environment = info.environment
                    row.body, row.body_key_version = self._reader.plain(row), None
            to_datetime = self._codec.datetime
            heads = [(row.received_text if self._sqlite else to_datetime(row.received_at), row.headers_text,
                      row.payload_hash, row.capture_key) for row in to_apply]
            self.verdicts.update(apply_rows(conn, self._ctx, info, to_apply, reader=self._reader,
                                            mac_key=self._mac_key, sealer=sealer, heads=heads))

    def _store_as_they_are(self, conn: Connection, info: ConnectionInfo, rows: list[Spooled]) -> None:
        """Rejected on receipt, or held while the connection is paused: stored raw, decided later
        (held) or never (rejected); a failed signature opens its failure."""
        to_datetime = self._codec.datetime
        values = []
        book: BeliefBook | None = None
        for row in rows:
            received = row.received_text if self._sqlite else to_datetime(row.received_at)
            reason = HELD_REASON if row.verdict == _HELD else row.verdict_reason
            values.append((row.id, row.connection_id, "webhook", received, row.headers_text, row.body, row.payload_hash,
                           None, None, None, None, row.capture_key, row.signature_verdict, row.verdict, reason,
                           None, None, None, None, row.body_key_version, row.signature_secret))
            if row.problem is not None:
                category, code, message = row.problem
                book = book or BeliefBook(self._ctx, info.id, info.provider)
                book.open_failure(Category(category), str(code), str(message), delivery_id=row.id)
        row_insert(conn, deliveries, DELIVERY_COLUMNS).execute_as_one(conn, values)
        self.verdicts.update(row.verdict for row in rows)
        if book is not None:
            book.flush(conn)
