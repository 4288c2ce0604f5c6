"""The ingest pipeline, the same for every source (file, webhook, poll, replay).

Per batch, in one transaction: capture raw bytes and headers first (nothing that follows can
stop them being stored), parse, identify the event (provider ID or payload hash), drop
duplicates, map, order against the record's watermark, apply through the state machine, and
write everything in bulk. A batch commits whole or not at all, so a process killed half-way
leaves every delivery either fully ingested or not at all, and a re-run completes the rest.

Every delivery goes through two stages, a chunk (CHUNK_SIZE deliveries) at a time. `_prepare`
does everything that does not depend on the store (hash, stored headers, parse, map, column
values): it is pure, so when ingest reads a capture file it runs in a reader process on the
second core, up to two chunks ahead. `_store` does what does depend on the store: duplicates,
beliefs, IDs and the writes, into the batch's transaction (again, from the same prepared
chunks, when a conflict makes the batch retry). A batch (DEFAULT_BATCH deliveries) commits on a
helper thread while the next chunk comes in. Same rows and verdicts whichever way it runs.
"""

from __future__ import annotations

import gc
import hashlib
import logging
import marshal
import os
import pickle
import sys
import threading
import traceback
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from itertools import islice
from operator import itemgetter
from typing import Any

from sqlalchemy import Connection, bindparam, select
from sqlalchemy.exc import IntegrityError, OperationalError

from store.bulk import Codec, codec, in_lookup, memoised, row_insert
from store.models import Delivery
from workbench.domain.canonical import BoundaryProblem, MappedEvent, NotCovered, Verdict
from workbench.domain.redaction import MASK, is_sensitive_key
from workbench.domain.statuses import Status
from workbench.domain.taxonomy import Category

from .beliefs import CHUNK, BeliefBook, ConcurrentChange
from .captures import Capture, CaptureReader
from .connections import ConnectionInfo, get_connection
from .context import ServiceContext

log = logging.getLogger(__name__)

deliveries = Delivery.__table__

DEFAULT_BATCH = 20000  # deliveries per transaction
CHUNK_SIZE = 5000  # deliveries prepared, sent and stored at a time (bounds memory)
MAX_BATCH_TRIES = 5
# Set WORKBENCH_INGEST_READER=0 to read and prepare capture files in the ingesting process.
READER_PROCESS_ENV = "WORKBENCH_INGEST_READER"


@dataclass
class IngestReport:
    counts: Counter[str] = field(default_factory=Counter)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def add(self, other: Counter[str]) -> None:
        self.counts.update(other)


def stored_headers(headers: dict[str, str]) -> dict[str, str]:
    """Headers as stored: credentials a sender put in headers never rest in plain text; a hash
    keeps them comparable. Everything else (signatures included) is kept as received."""
    if not any(map(is_sensitive_key, headers)):
        return headers
    return {
        k: f"{MASK} sha256:{hashlib.sha256(v.encode()).hexdigest()[:16]}" if is_sensitive_key(k) else v
        for k, v in headers.items()
    }


def ingest(
    ctx: ServiceContext,
    connection_name: str,
    captures: Iterable[Capture],
    *,
    batch_size: int = DEFAULT_BATCH,
    progress: Callable[[IngestReport], None] | None = None,
) -> IngestReport:
    """Ingest captures into a connection; returns counts per verdict. Each `batch_size`
    deliveries are one transaction; `progress` sees the report after each commit."""
    connection = get_connection(ctx, connection_name)
    adapter = ctx.adapters.get(connection.provider)
    report = IngestReport()
    committing: _Commit | None = None
    batch: _Batch | None = None

    def committed(commit: _Commit) -> None:
        report.add(commit.wait())
        if progress:
            progress(report)

    with _collecting_between_batches():
        chunks = _prepared_batches(captures, adapter, codec(ctx.engine.dialect), min(batch_size, CHUNK_SIZE))
        try:
            with closing(chunks):  # stops the reader process if a batch fails
                for chunk in chunks:  # taken in while the previous batch commits
                    while chunk:
                        if batch is None:
                            if committing is not None:
                                commit, committing = committing, None
                                committed(commit)
                            batch = _Batch(ctx, connection, adapter)
                        room = batch_size - batch.size
                        part, chunk = (chunk, []) if len(chunk) <= room else (chunk[:room], chunk[room:])
                        batch.add(part)
                        del part
                        if batch.size >= batch_size:
                            committing, batch = batch.commit(), None
                    _between_batches()
            if batch is not None:
                committing, batch = batch.commit(), None
            if committing is not None:
                commit, committing = committing, None
                committed(commit)
        finally:
            if batch is not None:
                batch.abandon()
            if committing is not None:  # failing: still wait for the commit under way
                committing.wait(raising=False)
    return report


@contextmanager
def _collecting_between_batches() -> Iterator[None]:
    """The cyclic GC, which ingest's allocations would otherwise start hundreds of times per
    batch (a fifth of ingest's time: each run traverses every live row, and full runs all the
    libraries' hundreds of thousands of objects too), runs once per batch instead, at
    `_between_batches()`, when hardly anything is alive. Ingest makes no reference cycles of
    its own, so this only changes when garbage is found, not whether."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _between_batches() -> None:
    gc.collect(1)  # the young generations: this batch's leftovers, if any made a cycle


def _batches(items: Iterator[Capture], size: int) -> Iterator[list[Capture]]:
    while batch := list(islice(items, size)):
        yield batch


def _ramped_batches(items: Iterator[Capture], size: int) -> Iterator[list[Capture]]:
    # A small first batch, so the ingesting process starts storing sooner.
    first = list(islice(items, max(1, size // 10)))
    if first:
        yield first
        yield from _batches(items, size)


class _Batch:
    """One write transaction (opened as store.database.writing opens it), filled chunk by chunk:
    a batch of tens of thousands commits at once (each commit rewrites every index page the
    batch touched, and random keys touch most), while only a chunk at a time is being worked
    on. Chunks are kept until the commit, to store them again after a conflict."""

    def __init__(self, ctx: ServiceContext, connection: ConnectionInfo, adapter: Any) -> None:
        self._ctx, self._connection, self._adapter = ctx, connection, adapter
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
            self._counts.update(_store(self._conn, self._ctx, self._connection, self._adapter, chunk))
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
                    counts.update(_store(self._conn, self._ctx, self._connection, self._adapter, chunk))
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
        self._thread = threading.Thread(target=self._run, args=(conn, transaction), name="ingest-commit",
                                        daemon=True)
        self._thread.start()

    def _run(self, conn: Connection, transaction: Any) -> None:
        try:
            transaction.commit()
        except BaseException as exc:  # noqa: BLE001 -- raised by wait() in the ingesting thread
            self._error = exc
        finally:
            try:
                conn.close()
            except BaseException as exc:  # noqa: BLE001
                self._error = self._error or exc

    def wait(self, *, raising: bool = True) -> Counter[str]:
        self._thread.join()
        if self._error is not None and raising:
            raise self._error
        return self._counts


def capture_row(ctx: ServiceContext, connection_id: str, capture: Capture) -> dict[str, Any]:
    """The raw row: bytes and headers exactly as received, before any interpretation."""
    return {
        "id": ctx.ids.new("dlv"), "connection_id": connection_id, "source": capture.source,
        "received_at": capture.received_at, "headers": stored_headers(capture.headers),
        "body": capture.body, "payload_hash": hashlib.sha256(capture.body).hexdigest(),
        "provider_event_id": None, "dedupe_key": None, "event_type": None, "occurred_at": None,
        "signature_verdict": "unchecked", "verdict": None, "verdict_reason": None, "record_id": None,
        "mapping_version": None, "duplicate_of": None, "replay_of": None,
    }


def process_batch(conn: Connection, ctx: ServiceContext, connection: ConnectionInfo, adapter: Any,
                  batch: list[Capture], *, replay_of: list[str | None] | None = None) -> Counter[str]:
    """Ingest one batch of captures in `conn`'s transaction; returns counts per verdict."""
    return _store(conn, ctx, connection, adapter, _prepare(adapter, codec(conn.dialect), batch),
                  replay_of=replay_of)


# ----------------------------------------------------------------------------- stage 1: prepare

# A prepared delivery is a tuple (head, result, event time): `head` holds the deliveries
# columns from `source` to `occurred_at` (DELIVERY_COLUMNS[2:11]) in the driver's form;
# `result` is what mapping made of it (a MappedEvent, NotCovered or a _Problem); the event
# time (occurrence, else receipt) orders it against its record's other events.
DELIVERY_COLUMNS = ("id", "connection_id", "source", "received_at", "headers", "body", "payload_hash",
                    "provider_event_id", "dedupe_key", "event_type", "occurred_at", "signature_verdict",
                    "verdict", "verdict_reason", "record_id", "mapping_version", "duplicate_of", "replay_of")
(_ID, _CONNECTION, _SOURCE, _RECEIVED, _HEADERS, _BODY, _HASH, _EVENT_ID, _DEDUPE, _TYPE, _OCCURRED,
 _SIGNATURE, _VERDICT, _REASON, _RECORD, _MAPPING, _DUPLICATE_OF, _REPLAY_OF) = range(len(DELIVERY_COLUMNS))


@dataclass(frozen=True, slots=True)
class _Problem:
    """Why a delivery could not be parsed or mapped: the BoundaryProblem's content, without the
    exception, whose traceback would keep the whole batch alive until a full collection."""

    category: Category
    code: str
    message: str


_NO_VERDICT = _Problem(Category.UNKNOWN, "no_verdict", "no verdict reached")
_INVALID_CATEGORIES = (Category.VALIDATION, Category.CONTRACT_MISMATCH)
_sensitive_header_sets: dict[tuple[str, ...], bool] = {}


def _has_sensitive_headers(headers: dict[str, str]) -> bool:
    # Senders repeat the same header names: check each set of names once (bounded memo).
    names = tuple(headers)
    found = _sensitive_header_sets.get(names)
    if found is None:
        if len(_sensitive_header_sets) >= 1024:
            _sensitive_header_sets.clear()
        found = _sensitive_header_sets[names] = any(map(is_sensitive_key, names))
    return found


def _prepare(adapter: Any, conversions: Codec, batch: list[Capture]) -> list[Any]:
    """Capture, parse and map each delivery: everything that does not depend on the store.
    Mapping runs before the duplicate check (it is pure: a duplicate's result is dropped
    later), so each parsed payload is freed at once."""
    to_datetime, to_json = conversions.datetime, conversions.json
    occurred_datetime = memoised(to_datetime)  # neighbouring events share their second
    sha256, sensitive = hashlib.sha256, _has_sensitive_headers
    parse, map_event = adapter.parse, adapter.map
    prepared = []
    append = prepared.append
    for capture in batch:
        body = capture.body
        payload_hash = sha256(body).hexdigest()
        headers = capture.headers
        received = to_datetime(capture.received_at)
        headers_text = to_json(stored_headers(headers) if sensitive(headers) else headers)
        try:
            parsed = parse(body)
        except BoundaryProblem as problem:
            append(((capture.source, received, headers_text, body, payload_hash, None, "sha256:" + payload_hash,
                     None, None), _Problem(problem.category, problem.code, problem.message), None))
            continue
        except Exception as exc:  # an adapter bug must never cost us the raw delivery
            append(((capture.source, received, headers_text, body, payload_hash, None, "sha256:" + payload_hash,
                     None, None), _Problem(Category.UNKNOWN, f"parse_crash:{type(exc).__name__}",
                                           f"parser crashed: {exc!r}"), None))
            continue
        event_id, occurred_at = parsed.provider_event_id, parsed.occurred_at
        try:
            result: Any = map_event(parsed)
        except BoundaryProblem as problem:
            result = _Problem(problem.category, problem.code, problem.message)
        except Exception as exc:  # a mapping bug: keep the delivery, open a mapping failure
            result = _Problem(Category.MAPPING_FAILURE, f"mapping_crash:{type(exc).__name__}",
                              f"mapping crashed: {exc!r}")
        append(((capture.source, received, headers_text, body, payload_hash, event_id,
                 event_id or "sha256:" + payload_hash, parsed.event_type, occurred_datetime(occurred_at)),
                result, occurred_at or capture.received_at))
    return prepared


# ----------------------------------------------------------------------------- stage 2: store


def _dedupe_statement(in_params: list[Any]) -> Any:
    return (select(deliveries.c.dedupe_key, deliveries.c.id)
            .where(deliveries.c.connection_id == bindparam("connection_id"), deliveries.c.dedupe_key.in_(in_params)))


def _store(conn: Connection, ctx: ServiceContext, connection: ConnectionInfo, adapter: Any,
           prepared: list[Any], *, replay_of: list[str | None] | None = None) -> Counter[str]:
    """Write one prepared batch in `conn`'s transaction. Leaves `prepared` as it was, so a
    retry can store it again."""
    new_id, connection_id = ctx.ids.new, connection.id
    rows = [[new_id("dlv"), connection_id, *head, "unchecked", None, None, None, None, None, None]
            for head, _, _ in prepared]
    if replay_of is None:
        live = _drop_duplicates(conn, connection_id, rows)
    else:
        for row, original in zip(rows, replay_of):
            # A replayed copy points at its original, which keeps the event's dedupe key.
            row[_REPLAY_OF] = original
            row[_DEDUPE] = None
        live = range(len(rows))

    book = BeliefBook(ctx, connection_id, connection.provider)
    mapped_items = []
    for i in live:
        result = prepared[i][1]
        if type(result) is _Problem:
            continue
        if isinstance(result, NotCovered):
            row = rows[i]
            row[_VERDICT], row[_REASON] = Verdict.IGNORED, result.reason
            row[_MAPPING] = getattr(adapter, "mapping_version", None)
            continue
        mapped_items.append((rows[i], result, prepared[i][2]))
    book.load(conn, {(mapped.kind, mapped.external_id) for _, mapped, _ in mapped_items})
    apply = book.apply
    for row, mapped, event_time in mapped_items:
        row[_MAPPING] = mapped.mapping_version
        outcome = apply(mapped, event_time, row[_EVENT_ID] or row[_HASH], delivery_id=row[_ID])
        row[_VERDICT], row[_REASON], row[_RECORD] = outcome.verdict, outcome.reason, outcome.record_id
    for row, (_, result, _) in zip(rows, prepared):
        if row[_VERDICT] is None:  # the parse or mapping problem of an undecided delivery
            problem = result if type(result) is _Problem else _NO_VERDICT
            row[_VERDICT] = Verdict.INVALID if problem.category in _INVALID_CATEGORIES else Verdict.FAILED
            row[_REASON] = problem.message
            book.open_failure(problem.category, problem.code, problem.message, delivery_id=row[_ID])

    # Raw rows go in before anything derived from them.
    row_insert(conn, deliveries, DELIVERY_COLUMNS).execute(conn, list(map(tuple, rows)))
    book.flush(conn)
    counts = Counter(map(itemgetter(_VERDICT), rows))
    return Counter({str(verdict): n for verdict, n in counts.items()})


def _drop_duplicates(conn: Connection, connection_id: str, rows: list[list[Any]]) -> list[int]:
    """Mark deliveries of events already stored (or earlier in the batch) as duplicates; the
    positions of the rest, in order."""
    keys = {row[_DEDUPE] for row in rows}
    originals: dict[str, str] = dict(
        in_lookup(conn, "ingest.dedupe", _dedupe_statement, CHUNK).rows(conn, keys, connection_id=connection_id))
    live = []
    for i, row in enumerate(rows):
        key = row[_DEDUPE]
        original = originals.get(key)
        if original is None:
            originals[key] = row[_ID]
            live.append(i)
        else:
            row[_DEDUPE], row[_DUPLICATE_OF] = None, original
            row[_VERDICT], row[_REASON] = Verdict.DUPLICATE, f"already received as {original}"
    return live


# ----------------------------------------------------------------------------- reader process


def _prepared_batches(captures: Iterable[Capture], adapter: Any, conversions: Codec,
                      size: int) -> Iterator[list[Any]]:
    """Prepared batches, in order: from a reader process when `captures` is a capture file
    (and this process can fork safely), else prepared here."""
    reader = _forkable_reader(captures)
    if reader is not None:
        yield from _prepared_by_reader_process(reader, adapter, conversions, size)
        return
    for batch in _batches(iter(captures), size):
        yield _prepare(adapter, conversions, batch)


def _forkable_reader(captures: Iterable[Capture]) -> CaptureReader | None:
    if not isinstance(captures, CaptureReader) or os.environ.get(READER_PROCESS_ENV, "1") == "0":
        return None
    # fork() is safe on Linux only (macOS frameworks may not survive it), and pays only with a
    # second core.
    if not sys.platform.startswith("linux") or (os.cpu_count() or 1) < 2:
        return None
    # Forking a process that runs other threads can leave the child holding a lock no thread
    # will ever release: only fork from a single-threaded process.
    if threading.active_count() > 1:
        return None
    try:
        descriptor = captures.stream.fileno()  # a real file: the child reads on from it
    except (AttributeError, OSError, ValueError):
        return None
    if descriptor == 0:  # multiprocessing closes standard input in the child
        return None
    return captures


def _prepared_by_reader_process(reader: CaptureReader, adapter: Any, conversions: Codec,
                                size: int) -> Iterator[list[Any]]:
    import multiprocessing

    context = multiprocessing.get_context("fork")
    receiving, sending = context.Pipe(duplex=False)
    _widen_pipe(sending)
    process = context.Process(target=_reader_main,
                              args=(reader, adapter, conversions, size, sending, receiving),
                              name="ingest-reader", daemon=True)
    process.start()
    sending.close()
    try:
        while True:
            try:
                message = receiving.recv_bytes()
            except EOFError:
                raise RuntimeError("the ingest reader process ended unexpectedly") from None
            kind, payload = message[:1], memoryview(message)[1:]
            if kind == _BATCH:
                yield _unship(payload)
            elif kind == _PICKLED_BATCH:
                yield pickle.loads(payload)
            elif kind == _DONE:
                reader.bad_lines.extend(pickle.loads(payload))
                return
            else:
                raise pickle.loads(payload)
    finally:
        receiving.close()  # a reader still sending gets a broken pipe and stops
        process.join(timeout=5)
        if process.is_alive():
            process.terminate()
            process.join()


def _widen_pipe(end: Any) -> None:
    # A batch is megabytes; through a default 64 KiB pipe it would take a hundred context
    # switches. Linux lets a pipe hold up to /proc/sys/fs/pipe-max-size (1 MiB by default).
    try:
        import fcntl

        fcntl.fcntl(end.fileno(), getattr(fcntl, "F_SETPIPE_SZ", 1031), 1 << 20)
    except (ImportError, OSError):
        pass


def _reader_main(reader: CaptureReader, adapter: Any, conversions: Codec, size: int, sending: Any,
                 receiving: Any) -> None:
    """In the reader process: read, prepare and send batches until the file ends. A sender
    thread writes each batch to the pipe while the next is prepared, so this runs up to two
    batches ahead of the ingesting process (and memory stays bounded by that). If the
    ingesting process dies, its end of the pipe closes and the next send ends this one."""
    import queue

    receiving.close()  # the copy forked with us: only the ingesting process may hold it open
    # Everything inherited belongs to the ingesting process, its database connections above
    # all: no collection here may finalize any of it (a finalized connection would talk to the
    # database over the parent's socket). Only this process's own garbage is collected.
    gc.freeze()

    outbox: queue.Queue[bytes | None] = queue.Queue(maxsize=1)
    failed = threading.Event()

    def send() -> None:
        try:
            while (message := outbox.get()) is not None:
                sending.send_bytes(message)
                del message
        except OSError:  # a broken pipe: the ingesting process stopped reading
            failed.set()
            while outbox.get() is not None:  # let the preparing thread finish its put()
                pass

    sender = threading.Thread(target=send, name="ingest-reader-send", daemon=True)
    sender.start()
    bad_before = len(reader.bad_lines)
    try:
        for batch in _ramped_batches(iter(reader), size):
            if failed.is_set():
                return
            prepared = _prepare(adapter, conversions, batch)
            del batch
            message = _ship(prepared)
            del prepared
            outbox.put(message)
            del message
            _between_batches()
        outbox.put(_DONE + pickle.dumps(reader.bad_lines[bad_before:]))
    except BaseException as exc:  # noqa: BLE001 -- reported to the ingesting process
        try:
            error = pickle.dumps(exc)
            pickle.loads(error)
        except Exception:
            error = pickle.dumps(RuntimeError(
                f"ingest reader process failed:\n{''.join(traceback.format_exception(exc))}"))
        outbox.put(_ERROR + error)
    finally:
        outbox.put(None)
        sender.join()
        sending.close()


# Messages from the reader process: a kind byte, then the payload.
_BATCH, _PICKLED_BATCH, _DONE, _ERROR = b"B", b"P", b"D", b"E"
_STATUSES = {str(status): status for status in Status}


class _Unshippable(Exception):
    pass


def _ship(prepared: list[Any]) -> bytes:
    """A prepared batch as bytes. marshal (builtin types only) is several times cheaper than
    pickle both ways, so results and times travel as plain tuples and strings; a batch holding
    anything else (a PostgreSQL naive datetime, an adapter's own types) goes pickled."""
    times: dict[Any, str] = {}
    try:
        shipped = []
        for head, result, event_time in prepared:
            kind = type(result)
            if kind is MappedEvent:
                status = result.status
                if status is not None and type(status) is not Status:
                    raise _Unshippable
                result = ("M", result.kind, result.external_id, result.provider_status,
                          None if status is None else str(status), result.fields, result.mapping_version)
            elif kind is NotCovered:
                result = ("N", result.reason)
            elif kind is _Problem:
                result = ("P", str(result.category), result.code, result.message)
            else:
                raise _Unshippable
            if event_time is not None:
                text = times.get(event_time)
                if text is None:
                    if type(event_time) is not datetime or event_time.tzinfo is None:
                        raise _Unshippable
                    text = times[event_time] = event_time.isoformat()
                event_time = text
            shipped.append((head, result, event_time))
        return _BATCH + marshal.dumps(shipped)
    except (_Unshippable, ValueError):
        return _PICKLED_BATCH + pickle.dumps(prepared, protocol=pickle.HIGHEST_PROTOCOL)


def _unship(payload: bytes) -> list[Any]:
    times: dict[str, datetime] = {}
    statuses = _STATUSES
    prepared = []
    append = prepared.append
    for head, result, event_time in marshal.loads(payload):
        tag = result[0]
        if tag == "M":
            status = result[4]
            result = MappedEvent(result[1], result[2], result[3],
                                 None if status is None else statuses.get(status) or Status(status),
                                 result[5], result[6])
        elif tag == "N":
            result = NotCovered(result[1])
        else:
            result = _Problem(Category(result[1]), result[2], result[3])
        if event_time is not None:
            moment = times.get(event_time)
            if moment is None:
                moment = times[event_time] = datetime.fromisoformat(event_time)
            event_time = moment
        append((head, result, event_time))
    return prepared
