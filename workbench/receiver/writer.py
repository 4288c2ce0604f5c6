"""Group commit, on the event loop: requests waiting to be stored go to the spool writer
(spool_writer.py) as one batch, one transaction; each is answered only once its batch is
committed. While a batch is being committed the next one gathers, so a busy receiver commits
large batches and a quiet one commits each delivery at once. One commit per request would cap
near 4,000/s on SQLite; one per batch keeps 2xx meaning "on disk" at several times that.

Rows are the raw request (receipt time, headers with any credential masked, body) with its
verdict; the stored form (hash, stored headers, capture key), parsing and mapping happen later,
in the applier, except that a connection that encrypts has its body sealed here, after its
stored form is made. A delivery is spooled `held` (applied as it is moved into the store, once
its connection is active) or, when its signature failed or it could not be kept whole,
`rejected` with its reason (and, for a signature, the authentication failure the move opens
with it)."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from adapters.protocol import SignatureCheck
from store.bulk import Codec, codec
from workbench.domain.canonical import Verdict
from workbench.services.captures import Headers
from workbench.services.context import ServiceContext
from workbench.services.header_mac import header_key
from workbench.services.ingest import HELD_REASON
from workbench.services.ingest_prepare import credentials_masked, signature_problem, stored_form

from .directory import Entry
from .spool import pack, received_micros
from .spool_writer import SpoolLink

log = logging.getLogger(__name__)

# Batches sent and not yet answered. More than one: what arrives while a transaction commits is
# already in the spool writer's pipe when it ends, and the writer commits everything waiting
# there together, so it syncs back to back instead of waiting for this process between syncs.
IN_FLIGHT = 4
# A batch's size: the batches in flight fit the pipe (spool_writer.PIPE_BYTES) with room for
# their headers. Were it full, a send would wait for the writer's current transaction at most
# (the writer reads on while its small replies are read here).
MAX_BATCH = 500  # deliveries
MAX_BATCH_BYTES = 128 << 10  # bytes of body
PENDING_REASON = "received: being applied"
STOP_TIMEOUT_S = 30
_MICROSECOND = timedelta(microseconds=1)
_SPOOL_TIME = Codec("sqlite").datetime  # the spool is SQLite whatever the store
# Where the sealed body and its key version sit in a spool row (spool.COLUMNS).
_ID, _BODY, _KEY_VERSION = 0, 4, 10


class StoreUnavailable(Exception):
    """The spool writer could not store a batch (it says why in the log)."""


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
    """`submit` from request handlers; everything runs on the event loop's thread."""

    def __init__(self, ctx: ServiceContext, spool: Path, moved: int | None = None) -> None:
        self._ctx = ctx
        self._link = SpoolLink(spool, moved)
        self._key = header_key(ctx.engine)
        self._json = codec(ctx.engine.dialect).json
        self._last = datetime.min.replace(tzinfo=UTC)
        self._waiting: list[Pending] = []
        self._in_flight: deque[tuple[int, list[Pending]]] = deque()  # (seq, batch) sent, oldest first
        self._seq = 0
        self._flush_scheduled = False
        self._idle = asyncio.Event()
        self._restarting = False
        self.alive = False

    @property
    def spool(self) -> Path:
        return self._link.spool

    async def start(self) -> None:
        await asyncio.to_thread(self._link.start)
        asyncio.get_running_loop().add_reader(self._link.replies_fd, self._on_reply)
        self.alive = True

    def now(self) -> datetime:
        """Receipt time, strictly increasing in this process (capture keys lead with it)."""
        now = datetime.now(UTC)
        if now <= self._last:
            now = self._last + _MICROSECOND
        self._last = now
        return now

    def submit(self, pending: Pending) -> None:
        self._waiting.append(pending)
        self._idle.clear()
        if not self._flush_scheduled and len(self._in_flight) < IN_FLIGHT:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)  # after the requests already readable

    async def stop(self) -> None:
        """Store what is waiting, then stop the spool writer."""
        try:
            await asyncio.wait_for(self._drained(), STOP_TIMEOUT_S)
        except TimeoutError:
            log.warning("receiver: %d deliveries were not stored before the stop", len(self._waiting))
        if self.alive:
            asyncio.get_running_loop().remove_reader(self._link.replies_fd)
        self.alive = False
        await asyncio.to_thread(self._link.stop)

    async def _drained(self) -> None:
        while self._waiting or self._in_flight:
            self._idle.clear()
            await self._idle.wait()

    def _flush(self) -> None:
        self._flush_scheduled = False
        while len(self._in_flight) < IN_FLIGHT and self._waiting and not self._restarting:
            batch: list[Pending] = []
            size = 0
            for pending in self._waiting:
                if batch and (len(batch) >= MAX_BATCH or size + len(pending.body) > MAX_BATCH_BYTES):
                    break
                batch.append(pending)
                size += len(pending.body)
            del self._waiting[:len(batch)]
            self._seq += 1
            try:
                self._link.send(self._seq, len(batch), pack(self._rows(batch)))
                self._in_flight.append((self._seq, batch))
            except Exception as exc:
                log.error("receiver: could not hand %d deliveries to the spool writer: %s", len(batch),
                          type(exc).__name__)
                _resolve(batch, StoreUnavailable("the spool writer is not running"))
                self._restart()

    def _on_reply(self) -> None:
        try:
            last, error = self._link.reply()
        except (EOFError, OSError):
            log.error("receiver: the spool writer ended; starting another")
            while self._in_flight:  # never committed: 503, and the sender sends them again
                _resolve(self._in_flight.popleft()[1], StoreUnavailable("the spool writer ended"))
            self._restart()
            return
        outcome = None if error is None else StoreUnavailable(error)
        while self._in_flight and self._in_flight[0][0] <= last:  # one transaction, one reply
            _resolve(self._in_flight.popleft()[1], outcome)
        if self._waiting:
            self._flush()
        elif not self._in_flight:
            self._idle.set()

    def _restart(self) -> None:
        if self._restarting:
            return
        self._restarting, self.alive = True, False
        loop = asyncio.get_running_loop()
        loop.remove_reader(self._link.replies_fd)

        async def again() -> None:
            try:
                await asyncio.to_thread(self._link.stop, 5)
                await asyncio.to_thread(self._link.start)
            except Exception as exc:
                log.error("receiver: the spool writer could not be started again: %s", type(exc).__name__)
                _resolve(self._waiting, StoreUnavailable("no spool writer"))
                self._waiting.clear()
                self._idle.set()
                await asyncio.sleep(1)
                self._restarting = False
                self._restart()
                return
            loop.add_reader(self._link.replies_fd, self._on_reply)
            self._restarting, self.alive = False, True
            self._flush()

        loop.create_task(again())

    def _rows(self, batch: list[Pending]) -> list[list[Any]]:
        """The batch as spool rows (spool.COLUMNS): raw (credential headers masked), for the
        mover to put in stored form, except where the body is sealed here (its hash and capture
        key are of the plain body)."""
        key, new_id = self._key, self._ctx.ids.new
        rows: list[list[Any]] = []
        for pending in batch:
            entry, received_at = pending.entry, pending.received_at
            info = entry.info
            delivery_id = pending.delivery_id = new_id("dlv")
            check = pending.check
            problem: tuple[str | None, str | None, str | None] = (None, None, None)
            if pending.refusal is not None:
                verdict, reason = Verdict.REJECTED, pending.refusal
            elif check.verdict == "failed":
                found = signature_problem(check)
                verdict, reason = Verdict.REJECTED, found.message
                problem = (str(found.category), found.code, found.message)
            else:
                verdict, reason = Verdict.HELD, HELD_REASON if info.paused else PENDING_REASON
            if entry.sealer is None:  # credentials in headers masked now: never in plain text in the spool
                row = [delivery_id, info.id, received_micros(received_at),
                       credentials_masked(pending.headers, key), pending.body,
                       None, None, check.verdict, str(verdict), reason, None, check.secret, *problem]
            else:
                # The receipt time in SQLite's text form whatever the store (the mover converts it).
                received, headers_text, payload_hash, capture_key = stored_form(
                    received_at, pending.headers, pending.body, key, _SPOOL_TIME, self._json)
                row = [delivery_id, info.id, received, headers_text, pending.body,
                       payload_hash, capture_key, check.verdict, str(verdict), reason, None, check.secret, *problem]
                entry.sealer.seal_rows([row], _ID, _BODY, _KEY_VERSION)
            rows.append(row)
        return rows


def _resolve(batch: list[Pending], error: BaseException | None) -> None:
    for pending in batch:
        if pending.future.done():  # the client went away: its delivery is stored all the same
            continue
        if error is None:
            pending.future.set_result(pending.delivery_id)
        else:
            pending.future.set_exception(error)
