"""Group commit: one writer thread takes every request waiting to be stored, writes them in one
transaction, and only then answers each (its future resolved on the event loop). One commit
per request would cap near 4,000/s on SQLite (the per-transaction hand-off); one per batch of
whatever arrived meanwhile keeps 2xx meaning "on disk" at several times that.

Rows are built straight from the raw request (hash, stored headers, capture key); parsing and
mapping happen later, in the follower. A delivery is stored `held` (applied by the follower
once its connection is active) or, when its signature failed or it could not be kept whole,
`rejected` with its reason (and, for a signature, an authentication failure)."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection

from adapters.protocol import SignatureCheck
from store.bulk import codec, row_insert
from store.models import Delivery
from workbench.domain.canonical import Verdict
from workbench.services.beliefs import BeliefBook
from workbench.services.captures import Headers
from workbench.services.context import ServiceContext
from workbench.services.header_mac import header_key
from workbench.services.ingest import HELD_REASON
from workbench.services.ingest_prepare import (
    COL_BODY,
    COL_ID,
    COL_KEY_VERSION,
    DELIVERY_COLUMNS,
    _any_sensitive as any_sensitive,
    signature_problem,
    stored_headers,
)
from workbench.services.ingest_run import one_line

from .directory import Entry

log = logging.getLogger(__name__)

deliveries = Delivery.__table__
MAX_BATCH = 5000
PENDING_REASON = "received: being applied"
_EPOCH = datetime(1, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


@dataclass(slots=True)
class Pending:
    """One request waiting to be stored. `refusal`: why it is stored rejected without a
    signature verdict (a body over the limit, a vault the receiver could not unlock)."""

    entry: Entry
    received_at: datetime
    headers: Headers
    body: bytes
    check: SignatureCheck
    refusal: str | None
    future: asyncio.Future[str]
    delivery_id: str = field(default="")


class GroupWriter:
    def __init__(self, ctx: ServiceContext, loop: asyncio.AbstractEventLoop,
                 stored: Callable[[dict[str, list[str]]], None] = lambda ids: None,
                 turns: threading.Lock | None = None) -> None:
        self._ctx, self._loop, self._stored = ctx, loop, stored
        self._turns = turns or threading.Lock()  # shared with the follower (see server.py)
        self._queue: queue.SimpleQueue[Pending | None] = queue.SimpleQueue()
        self._key = header_key(ctx.engine)
        self._codec = codec(ctx.engine.dialect)
        self._sqlite = ctx.engine.dialect.name == "sqlite"
        self._conn: Connection | None = None
        self._last = datetime.min.replace(tzinfo=UTC)
        self._clock_lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="receiver-writer", daemon=True)
        self.alive = True

    def start(self) -> None:
        self._thread.start()

    def now(self) -> datetime:
        """Receipt time, strictly increasing in this process (capture keys lead with it)."""
        with self._clock_lock:
            now = datetime.now(UTC)
            if now <= self._last:
                now = self._last + _MICROSECOND
            self._last = now
            return now

    def submit(self, pending: Pending) -> None:
        self._queue.put(pending)

    def stop(self) -> None:
        """Store what is queued, then end (requests already answered stay answered)."""
        self._queue.put(None)
        self._thread.join(timeout=30)

    def _run(self) -> None:
        get = self._queue.get
        stopping = False
        while not stopping:
            first = get()
            if first is None:
                break
            batch = [first]
            while len(batch) < MAX_BATCH:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                    break
                batch.append(item)
            try:
                held = self._write(batch)
                error: BaseException | None = None
            except BaseException as exc:  # answered 503: nothing was stored, the sender retries
                log.error("receiver: could not store %d deliveries: %s", len(batch), one_line(exc))
                log.debug("receiver: the store failed", exc_info=True)
                error, held = exc, {}
            self._loop.call_soon_threadsafe(_resolve, batch, error)
            if held:
                self._stored(held)
        self.close()

    def _write(self, batch: list[Pending]) -> dict[str, list[str]]:
        """Store `batch` in one transaction; the held deliveries' IDs by connection ID."""
        to_datetime, to_json = self._codec.datetime, self._codec.json
        key, new_id = self._key, self._ctx.ids.new
        sha256, blake2b = hashlib.sha256, hashlib.blake2b
        rows: list[list[Any]] = []
        books: dict[str, BeliefBook] = {}
        held: dict[str, list[str]] = {}
        for pending in batch:
            entry, body, headers = pending.entry, pending.body, pending.headers
            info = entry.info
            delivery_id = pending.delivery_id = new_id("dlv")
            payload_hash = sha256(body).hexdigest()
            sensitive = type(headers) is not dict or any_sensitive(tuple(headers))
            headers_text = to_json(stored_headers(headers, key) if sensitive else headers)
            capture_key = f"{(pending.received_at - _EPOCH) // _MICROSECOND:015x}" + blake2b(
                f"{payload_hash} {headers_text}".encode("utf-8", "surrogatepass"), digest_size=9).hexdigest()[:17]
            check = pending.check
            if pending.refusal is not None:
                verdict, reason = Verdict.REJECTED, pending.refusal
            elif check.verdict == "failed":
                problem = signature_problem(check)
                verdict, reason = Verdict.REJECTED, problem.message
                book = books.get(info.id)
                if book is None:
                    book = books[info.id] = BeliefBook(self._ctx, info.id, info.provider)
                book.open_failure(problem.category, problem.code, problem.message, delivery_id=delivery_id)
            else:
                verdict, reason = Verdict.HELD, HELD_REASON if info.paused else PENDING_REASON
                held.setdefault(info.id, []).append(delivery_id)
            row = [delivery_id, info.id, "webhook", to_datetime(pending.received_at), headers_text, body, payload_hash,
                   None, None, None, None, capture_key, check.verdict, verdict, reason,
                   None, None, None, None, None, check.secret]
            if entry.sealer is not None:
                entry.sealer.seal_rows([row], COL_ID, COL_BODY, COL_KEY_VERSION)
            rows.append(row)
        conn = self._connection()
        try:
            with self._turns, conn.begin():
                row_insert(conn, deliveries, DELIVERY_COLUMNS).execute(conn, [tuple(row) for row in rows])
                for book in books.values():
                    book.flush(conn)
        except BaseException:
            self._conn = None
            conn.close()
            raise
        return held

    def _connection(self) -> Connection:
        """The writer's own connection, kept between batches (made again after a failure)."""
        if self._conn is None:
            conn = self._ctx.engine.connect()
            if self._sqlite:  # "on disk" means synced: FULL syncs the WAL at every commit
                # On the driver's connection: SQLAlchemy would open a transaction first, and
                # SQLite refuses to change the safety level inside one.
                driver: Any = conn.connection.driver_connection
                driver.execute("PRAGMA synchronous=FULL")
            conn.execution_options(write=True)
            self._conn = conn
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _resolve(batch: list[Pending], error: BaseException | None) -> None:
    for pending in batch:
        if pending.future.done():  # the client went away: its delivery is stored all the same
            continue
        if error is None:
            pending.future.set_result(pending.delivery_id)
        else:
            pending.future.set_exception(error)
