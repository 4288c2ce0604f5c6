"""The ingest pipeline, the same for every source (file, webhook, poll, replay).

Per batch, in one transaction: hash the raw bytes and MAC credentials in the headers, parse,
identify the event (provider ID or payload hash), drop duplicates, map, order against the
record's watermark, apply through the state machine, and write everything in bulk, the raw
deliveries first (their bodies sealed under the connection's data key when it encrypts its
payloads: see payload_crypto; everything above is computed from the plain bytes). A delivery
that does not parse or map is still stored as received. A batch
commits whole or not at all, so a process killed half-way leaves every delivery either fully
ingested or not at all, and a re-run completes the rest.

Every delivery goes through two stages, a chunk (CHUNK_SIZE deliveries) at a time.
`ingest_prepare.prepare` does everything that does not depend on the store (hash, stored
headers, parse, map, column values): it is pure, so it can run in a reader process on the second
core, up to two chunks ahead, when the caller asks for one (`reader_process=True`, as
`workbench ingest` does for a capture file; see ingest_reader). `_store` does what does depend
on the store: duplicates, beliefs, IDs and the writes, into the batch's transaction (again, from
the same prepared chunks, when a conflict makes the batch retry). Same rows and verdicts
whichever way it runs.

A batch closes after `batch_size` deliveries (DEFAULT_BATCH) or, reading a stream that may
block (read on a feeder thread, see ingest_feed), when the input pauses and at least every
COMMIT_EVERY_S: its transaction never waits for input. It commits on a helper thread while the
next chunk comes in. The cyclic GC is paused while a batch is stored, and only then (see
`collecting_between_batches`).
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import closing
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any, Literal

from sqlalchemy import Connection, bindparam, select
from sqlalchemy.exc import IntegrityError, OperationalError

from adapters import Adapter
from store.bulk import codec, in_lookup, row_insert
from store.database import writing
from store.models import Delivery
from workbench.domain.canonical import NotCovered, Verdict

from . import access, audit
from .beliefs import CHUNK, BeliefBook, ConcurrentChange
from .captures import Capture
from .connections import ConnectionInfo, get_connection
from .context import ServiceContext
from .header_mac import header_key
from .ingest_prepare import (
    COL_BODY,
    COL_CAPTURE_KEY,
    COL_DEDUPE,
    COL_DUPLICATE_OF,
    COL_EVENT_ID,
    COL_HASH,
    COL_ID,
    COL_KEY_VERSION,
    COL_MAPPING,
    COL_REASON,
    COL_RECORD,
    COL_REPLAY_OF,
    COL_SIGNATURE,
    COL_VERDICT,
    DELIVERY_COLUMNS,
    INVALID_CATEGORIES,
    NO_VERDICT,
    SIGNATURE_FAILED,
    Problem,
    SignatureCheckFn,
    between_batches,
    collecting_between_batches,
    finish_mapping,
    prepare,
)
from .ingest_reader import prepared_chunks
from .payload_crypto import NO_VAULTS, Sealer, Vaults, encrypts, sealer_for
from .signatures import checker_for

log = logging.getLogger(__name__)

deliveries = Delivery.__table__

DEFAULT_BATCH = 20000  # deliveries per transaction
CHUNK_SIZE = 5000  # deliveries prepared, sent and stored at a time (bounds memory)
MAX_BATCH_TRIES = 5


@dataclass
class IngestReport:
    counts: Counter[str] = field(default_factory=Counter)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def add(self, other: Counter[str]) -> None:
        self.counts.update(other)


def ingest(
    ctx: ServiceContext,
    connection_name: str,
    captures: Iterable[Capture],
    *,
    batch_size: int = DEFAULT_BATCH,
    progress: Callable[[IngestReport], None] | None = None,
    reader_process: bool = False,
    vaults: Vaults = NO_VAULTS,
    signatures: SignatureCheckFn | None | Literal["auto"] = "auto",
) -> IngestReport:
    """Ingest captures into a connection; returns counts per verdict. A batch (one
    transaction) commits after `batch_size` deliveries, or from a stream that may block, when
    the input pauses and at least every second; `progress` sees the report after each commit.
    `reader_process` prepares a capture file in a forked reader process (see ingest_reader:
    only where this process may fork); by default everything runs in this process. A
    connection that encrypts its payloads needs its environment's vault in `vaults`
    (PayloadLocked otherwise, before anything is stored). So does one with active webhook
    secrets, to check signatures with (SignaturesLocked); `signatures`: the check to use
    instead ("auto": the connection's, see services.signatures; None: none, all unchecked)."""
    access.require(ctx, "ingest")  # once per run, not per batch
    connection = get_connection(ctx, connection_name)
    adapter = ctx.adapters.get(connection.provider)
    sealer = sealer_for(vaults, connection.id, connection.environment) if encrypts(connection.settings) else None
    check = checker_for(ctx, connection, adapter, vaults, ctx.clock()) if signatures == "auto" else signatures
    mac_key = header_key(ctx.engine)
    report = IngestReport()
    committing: _Commit | None = None

    def settle() -> None:  # the commit under way done, and counted
        nonlocal committing
        if committing is not None:
            commit, committing = committing, None
            report.add(commit.wait())
            if progress:
                progress(report)

    chunks = prepared_chunks(captures, adapter, codec(ctx.engine.dialect), min(batch_size, CHUNK_SIZE),
                             header_key=mac_key, reader_process=reader_process, check=check)
    try:
        with closing(chunks):  # stops the reader process or the feeder thread if a batch fails
            chunk = next(chunks, None)
            while chunk is not None:
                settle()  # one write transaction at a time
                if chunk:
                    with collecting_between_batches():
                        committing, rest = _fill_batch(_Batch(ctx, connection, adapter, sealer), chunk, chunks,
                                                        batch_size)
                        # Taken in while the batch commits (a pause in the input shows as []).
                        chunk = rest if rest is not None else next(chunks, None)
                    between_batches()
                else:  # a commit point (the input paused, or a second passed): nothing waits uncommitted
                    chunk = next(chunks, None)
            settle()
    finally:
        if committing is not None:  # failing: still wait for the commit under way, and count it if it landed
            report.add(committing.wait(raising=False))
    return report


def _fill_batch(batch: _Batch, chunk: list[Any], chunks: Iterator[list[Any]],
                batch_size: int) -> tuple[_Commit, list[Any] | None]:
    """Store `chunk` and the chunks after it in `batch` until it is full or the source says to
    commit (an empty chunk: see ingest_reader.prepared_chunks) or ends; start its commit.
    Returns the commit and what is left over: the rest of a chunk that did not fit, [] when the
    source said to commit, None when the next chunk is yet to be taken (or the input ended)."""
    try:
        while True:
            room = batch_size - batch.size
            if len(chunk) > room:
                batch.add(chunk[:room])
                rest: list[Any] | None = chunk[room:]
                break
            batch.add(chunk)
            del chunk
            if batch.size >= batch_size:
                rest = None
                break
            following = next(chunks, None)
            if not following:
                rest = following
                break
            chunk = following
    except BaseException:
        batch.abandon()
        raise
    return batch.commit(), rest


class _Batch:
    """One write transaction (opened as store.database.writing opens it), filled chunk by chunk:
    a batch of tens of thousands commits at once (each commit rewrites every index page the
    batch touched, and random keys touch most), while only a chunk at a time is being worked
    on. Chunks are kept until the commit, to store them again after a conflict."""

    def __init__(self, ctx: ServiceContext, connection: ConnectionInfo, adapter: Adapter,
                 sealer: Sealer | None) -> None:
        self._ctx, self._connection, self._adapter, self._sealer = ctx, connection, adapter, sealer
        self._chunks: list[list[Any]] = []
        self._counts: Counter[str] = Counter()
        self.size = 0
        self._attempt = 1
        self._open()

    def _open(self) -> None:
        self._conn = self._ctx.engine.connect()
        try:
            self._conn.execution_options(write=True)
            self._transaction = self._conn.begin()
        except BaseException:
            self._conn.close()
            raise

    def add(self, chunk: list[Any]) -> None:
        self._chunks.append(chunk)
        self.size += len(chunk)
        try:
            self._counts.update(_store(self._conn, self._ctx, self._connection, self._adapter, chunk,
                                       sealer=self._sealer))
        except (IntegrityError, ConcurrentChange, OperationalError) as exc:
            self._redo(exc)
        except BaseException:
            self.abandon()
            raise

    def _redo(self, exc: Exception) -> None:
        # A unique-constraint or version-guard conflict means another writer got there first:
        # redo the whole batch, which now sees that writer's rows (as duplicates or newer beliefs).
        while True:
            self._conn.close()  # rolls the batch back
            if self._attempt >= MAX_BATCH_TRIES or (isinstance(exc, OperationalError) and "locked" not in str(exc)):
                raise exc
            self._attempt += 1
            log.info("ingest batch conflicted with another writer (%s); retrying", type(exc).__name__)
            self._open()
            counts: Counter[str] = Counter()
            try:
                for chunk in self._chunks:
                    counts.update(_store(self._conn, self._ctx, self._connection, self._adapter, chunk,
                                         sealer=self._sealer))
            except (IntegrityError, ConcurrentChange, OperationalError) as again:
                exc = again
                continue
            except BaseException:
                self.abandon()
                raise
            self._counts = counts
            return

    def commit(self) -> _Commit:
        self._chunks = []
        return _Commit(self._conn, self._transaction, self._counts)

    def abandon(self) -> None:
        self._chunks = []
        self._conn.close()  # rolls back whatever is uncommitted


class _Commit:
    """A stored batch's transaction, committing on a helper thread. A commit is the database
    writing (SQLite's WAL frames and checkpoints), with the GIL released, so the ingesting
    thread meanwhile takes in the next batch. The batch counts only once `wait()` returns."""

    def __init__(self, conn: Connection, transaction: Any, counts: Counter[str]) -> None:
        self._counts = counts
        self._error: BaseException | None = None
        self._committed = False
        self._thread = threading.Thread(target=self._run, args=(conn, transaction), name="ingest-commit",
                                        daemon=True)
        self._thread.start()

    def _run(self, conn: Connection, transaction: Any) -> None:
        try:
            transaction.commit()
            self._committed = True
        except BaseException as exc:  # raised by wait() in the ingesting thread
            self._error = exc
        finally:
            try:
                conn.close()
            except BaseException as exc:
                self._error = self._error or exc

    def wait(self, *, raising: bool = True) -> Counter[str]:
        """The batch's counts once its commit is done; without `raising`, an error is not
        raised and a batch that did not commit counts nothing."""
        self._thread.join()
        if self._error is not None and raising:
            raise self._error
        return self._counts if self._committed else Counter()


def process_batch(conn: Connection, ctx: ServiceContext, connection: ConnectionInfo, adapter: Adapter,
                  batch: list[Capture], *, replay_of: list[str | None] | None = None,
                  sealer: Sealer | None = None, check: SignatureCheckFn | None = None) -> Counter[str]:
    """Ingest one batch of captures in `conn`'s transaction; returns counts per verdict.
    `sealer`: the connection's, when it encrypts its payloads; `check`: signature verdicts."""
    return _store(conn, ctx, connection, adapter,
                  prepare(adapter, codec(conn.dialect), batch, header_key(ctx.engine), check),
                  replay_of=replay_of, sealer=sealer)


ALREADY_STORED = "already_stored"  # a count, not a verdict: the capture line was stored before
HELD = Verdict.HELD
HELD_REASON = "connection paused: applied on resume"


def _dedupe_statement(in_params: list[Any]) -> Any:
    return (select(deliveries.c.dedupe_key, deliveries.c.id, deliveries.c.record_id)
            .where(deliveries.c.connection_id == bindparam("connection_id"), deliveries.c.dedupe_key.in_(in_params)))


def _capture_statement(in_params: list[Any]) -> Any:
    return (select(deliveries.c.capture_key)
            .where(deliveries.c.connection_id == bindparam("connection_id"), deliveries.c.capture_key.in_(in_params)))


def _store(conn: Connection, ctx: ServiceContext, connection: ConnectionInfo, adapter: Adapter,
           prepared: list[Any], *, replay_of: list[str | None] | None = None,
           ids: list[str] | None = None, sealer: Sealer | None = None) -> Counter[str]:
    """Write one prepared batch in `conn`'s transaction. Leaves `prepared` as it was, so a
    retry can store it again. `ids`: the deliveries' own IDs (held deliveries being applied),
    else new ones. `sealer`: bodies are sealed with it as they are written (under their IDs,
    so only once the IDs are final)."""
    new_id, connection_id = ctx.ids.new, connection.id
    received_before = ids is not None
    rows = [[delivery_id, connection_id, *head, None, None, None, None, None, None, None, secret]
            for delivery_id, (head, _, _, secret) in zip(ids or [new_id("dlv") for _ in prepared], prepared)]
    already_stored = 0
    if replay_of is None:
        # Deliveries received earlier need no look: held ones were stored under these capture
        # keys (unique per connection) and have just been deleted to be stored again; spooled
        # ones come from the receiver, which made their keys.
        kept = range(len(rows)) if received_before else _drop_already_stored(conn, connection_id, rows)
        if len(kept) < len(rows):
            already_stored = len(rows) - len(kept)
            rows, prepared = [rows[i] for i in kept], [prepared[i] for i in kept]
        if connection.paused:
            return _hold(conn, ctx, connection, rows, prepared, already_stored, sealer)
        live = _drop_duplicates(conn, connection_id, rows)
    else:
        for row, original in zip(rows, replay_of):
            # A replayed copy points at its original, which keeps the event's dedupe key and
            # the capture's key.
            row[COL_REPLAY_OF] = original
            row[COL_DEDUPE] = row[COL_CAPTURE_KEY] = None
        live = list(range(len(rows)))

    book = BeliefBook(ctx, connection_id, connection.provider)
    mapped_items = []
    results = [result for _, result, _, _ in prepared]
    for i in live:
        result = results[i] = finish_mapping(adapter, results[i])  # mapped now if prepare left it (map_later)
        if type(result) is Problem:
            continue
        if isinstance(result, NotCovered):
            row = rows[i]
            row[COL_VERDICT], row[COL_REASON] = Verdict.IGNORED, result.reason
            row[COL_MAPPING] = adapter.mapping_version
            continue
        mapped_items.append((rows[i], result, prepared[i][2]))
    book.load(conn, {(mapped.kind, mapped.external_id) for _, mapped, _ in mapped_items})
    apply = book.apply
    for row, mapped, event_time in mapped_items:
        row[COL_MAPPING] = mapped.mapping_version
        outcome = apply(mapped, event_time, row[COL_EVENT_ID] or row[COL_HASH], delivery_id=row[COL_ID])
        row[COL_VERDICT], row[COL_REASON], row[COL_RECORD] = outcome.verdict, outcome.reason, outcome.record_id
    for row, result in zip(rows, results):
        if row[COL_VERDICT] is None:  # the parse or mapping problem of an undecided delivery
            problem = result if type(result) is Problem else NO_VERDICT
            row[COL_VERDICT] = (Verdict.REJECTED if problem.code == SIGNATURE_FAILED else
                                Verdict.INVALID if problem.category in INVALID_CATEGORIES else Verdict.FAILED)
            row[COL_REASON] = problem.message
            book.open_failure(problem.category, problem.code, problem.message, delivery_id=row[COL_ID])

    _settle_duplicates(rows)
    if sealer is not None:
        sealer.seal_rows(rows, COL_ID, COL_BODY, COL_KEY_VERSION)
    # Raw rows go in before anything derived from them.
    row_insert(conn, deliveries, DELIVERY_COLUMNS).execute(conn, list(map(tuple, rows)))
    book.flush(conn)
    counts = Counter(map(itemgetter(COL_VERDICT), rows))
    result_counts = Counter({str(verdict): n for verdict, n in counts.items()})
    if already_stored:
        result_counts[ALREADY_STORED] = already_stored
    return result_counts


def _drop_already_stored(conn: Connection, connection_id: str, rows: list[list[Any]]) -> list[int]:
    """The positions of rows whose capture line is not stored yet (nor earlier in the batch)."""
    keys = {row[COL_CAPTURE_KEY] for row in rows}
    stored = _stored_capture_keys(conn, connection_id, keys)
    if not stored and len(keys) == len(rows):
        return list(range(len(rows)))  # the usual case: every line new
    kept = []
    for i, row in enumerate(rows):
        key = row[COL_CAPTURE_KEY]
        if key not in stored:
            stored.add(key)
            kept.append(i)
    return kept


def _stored_capture_keys(conn: Connection, connection_id: str, keys: set[str]) -> set[str]:
    """Which of `keys` the connection has stored. Keys lead with the receipt time, so a chunk's
    keys span a short range of the index: one range scan finds them (and nothing, for lines
    newer than anything stored). Where that range holds far more than the chunk (another
    file's lines of the same times), the keys are looked up one IN list at a time instead."""
    if not keys:
        return set()
    limit = 2 * len(keys) + 100
    in_range = conn.execute(
        select(deliveries.c.capture_key)
        .where(deliveries.c.connection_id == connection_id, deliveries.c.capture_key >= min(keys),
               deliveries.c.capture_key <= max(keys))
        .limit(limit)).scalars().all()
    if len(in_range) < limit:
        return keys.intersection(in_range)
    return {key for key, in in_lookup(conn, "ingest.captures", _capture_statement, CHUNK).rows(
        conn, keys, connection_id=connection_id)}


def _hold(conn: Connection, ctx: ServiceContext, connection: ConnectionInfo, rows: list[list[Any]],
          prepared: list[Any], already_stored: int, sealer: Sealer | None) -> Counter[str]:
    """A paused connection: store the raw deliveries, decide nothing (no dedupe key, no state,
    no failure); resuming applies them (see held.py). A delivery whose signature failed is
    rejected at once (it would never be applied), with its failure."""
    book: BeliefBook | None = None
    for row, (_, result, _, _) in zip(rows, prepared):
        row[COL_DEDUPE] = None
        if row[COL_SIGNATURE] == "failed":
            if book is None:
                book = BeliefBook(ctx, connection.id, connection.provider)
            row[COL_VERDICT], row[COL_REASON] = Verdict.REJECTED, result.message
            book.open_failure(result.category, result.code, result.message, delivery_id=row[COL_ID])
        else:
            row[COL_VERDICT], row[COL_REASON] = HELD, HELD_REASON
    if sealer is not None:
        sealer.seal_rows(rows, COL_ID, COL_BODY, COL_KEY_VERSION)
    row_insert(conn, deliveries, DELIVERY_COLUMNS).execute(conn, list(map(tuple, rows)))
    if book is not None:
        book.flush(conn)
    counts: Counter[str] = Counter(str(row[COL_VERDICT]) for row in rows)
    if already_stored:
        counts[ALREADY_STORED] = already_stored
    return counts


def _drop_duplicates(conn: Connection, connection_id: str, rows: list[list[Any]]) -> list[int]:
    """Mark deliveries of events already stored (or earlier in the batch) as duplicates; the
    positions of the rest, in order. A duplicate carries its original's record (filled in by
    `_settle_duplicates` when the original is in this batch), so the record's timeline shows
    every redelivery."""
    keys = {row[COL_DEDUPE] for row in rows}
    keys.discard(None)  # rejected deliveries (failed signatures) claim no event
    originals: dict[str, tuple[str, str | None]] = {
        key: (delivery_id, record_id) for key, delivery_id, record_id in
        in_lookup(conn, "ingest.dedupe", _dedupe_statement, CHUNK).rows(conn, keys, connection_id=connection_id)}
    live = []
    for i, row in enumerate(rows):
        key = row[COL_DEDUPE]
        if key is None:
            continue  # decided with its problem, after mapping
        original = originals.get(key)
        if original is None:
            originals[key] = (row[COL_ID], None)
            live.append(i)
        else:
            row[COL_DEDUPE], row[COL_DUPLICATE_OF], row[COL_RECORD] = None, original[0], original[1]
            row[COL_VERDICT], row[COL_REASON] = Verdict.DUPLICATE, f"already received as {original[0]}"
    return live


def _settle_duplicates(rows: list[list[Any]]) -> None:
    in_batch = {row[COL_ID]: row for row in rows if row[COL_DUPLICATE_OF] is None}
    for row in rows:
        original = in_batch.get(row[COL_DUPLICATE_OF]) if row[COL_DUPLICATE_OF] else None
        if original is not None and row[COL_RECORD] is None:
            row[COL_RECORD] = original[COL_RECORD]


def record_ingest_run(ctx: ServiceContext, connection_name: str, report: IngestReport, *, source: str,
                      skipped_lines: int = 0, error: str | None = None) -> None:
    """An operator's ingest run, in the audit trail: what went in, from where, with what result
    (`error`: why it stopped, when it did; the counts are those of the batches committed)."""
    connection = get_connection(ctx, connection_name)
    outcome = "error" if error is not None else "partial" if skipped_lines else "ok"
    after: dict[str, Any] = {"source": source, "counts": dict(report.counts), "skipped_lines": skipped_lines,
                             "outcome": outcome}
    if error is not None:
        after["error"] = error
    with writing(ctx.engine) as conn:
        audit.append(conn, ctx, "ingest.run", "connection", connection.id, after=after)
