"""Deliveries the store refused, set aside in the receivers' spools (the `stuck` table, see
mover.py): listed, moved into the store when an operator asks (`workbench listen stuck`), or,
for what no fix will move (a batch that cannot be read back, a connection the store lost for
good), discarded by an admin who names them, with a reason: the audit entry, written first,
keeps what each was (ID, spool, reason, size, SHA-256), not its bytes.

Nothing retries them by itself: a delivery the store refused alone is likely refused again
until someone fixes the cause (a connection missing from a restored store, a locked vault, a
full disk). Spools are per machine (spool.spool_dir): this sees the stuck deliveries of the
receivers on this machine, running ones and those a stopped receiver left behind for them.

Listing opens each spool read-only, so a running receiver's writer never waits for it. A retry
moves one delivery per store transaction through the mover's own path (Mover.store_one:
skipped when the store has it by ID, so a retry run twice, or killed half-way, stores nothing
twice) and deletes it from the spool only once that committed. A running receiver's spool is
written beside it (a row deleted, or its reason replaced: tiny transactions), never locked or
removed; one nobody holds is held exclusively while it is retried (no receiver takes it over
meanwhile) and removed once both its tables are empty, as a stopping receiver removes its own.
"""

from __future__ import annotations

import hashlib
import socket
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from store.database import reading, sync_every_commit, writing
from store.models import Connection as ConnectionRow
from workbench.domain.redaction import redact_text
from workbench.services import access, audit
from workbench.services.context import ServiceContext
from workbench.services.errors import InvalidArgument
from workbench.services.payload_crypto import Vaults

from .spool import COLUMNS, READABLE, SpoolClaim, SpoolFormatError, holds_nothing, received_time, spool_dir, spools_in, unpack

if TYPE_CHECKING:
    from .mover import Mover

connections = ConnectionRow.__table__
BATCH_PREFIX = "batch-"  # the key of a whole batch the mover could not read (SpoolReader.batches)
_REASON_CHARS = 500  # as the mover keeps them


@dataclass
class Stuck:
    """One row of a spool's stuck table."""

    key: str  # the delivery's ID; `batch-<seq>`: a whole batch that could not be read
    spool: Path
    reason: str
    row: list[Any] | None  # the delivery in spool.COLUMNS order; None: unreadable, never retried
    connection: str | None = None  # its name in the store, else its ID (list_stuck fills it in)
    kept: bytes = b""  # the row's bytes as the spool keeps them (what a discard accounts for)

    @property
    def retryable(self) -> bool:
        return self.row is not None

    @property
    def connection_id(self) -> str | None:
        return None if self.row is None else str(self.row[1])

    @property
    def received_at(self) -> str | None:
        """When the receiver answered it, in ISO form."""
        if self.row is None:
            return None
        try:
            return received_time(self.row[2]).isoformat()
        except (ValueError, OverflowError):
            return str(self.row[2])

    def as_dict(self) -> dict[str, Any]:
        return {"delivery": self.key, "connection": self.connection, "received_at": self.received_at,
                "reason": self.reason, "spool": self.spool.name, "retryable": self.retryable}


@dataclass(frozen=True)
class SpoolProblem:
    """A spool that could not be read (or written): its stuck deliveries are not in the answer."""

    spool: Path
    message: str


@dataclass
class Found:
    directory: Path
    stuck: list[Stuck] = field(default_factory=list)
    problems: list[SpoolProblem] = field(default_factory=list)


def directory_of(ctx: ServiceContext) -> Path:
    return spool_dir(ctx.engine.url.render_as_string(hide_password=False))


def list_stuck(ctx: ServiceContext) -> Found:
    """Every stuck delivery in this store's spools on this machine, oldest first (unreadable ones
    last), each with its connection's name where the store knows it."""
    access.require(ctx, "read")
    return _found(ctx)


def _found(ctx: ServiceContext) -> Found:
    found = find(directory_of(ctx))
    ids = {item.connection_id for item in found.stuck if item.connection_id is not None}
    names: dict[str, str] = {}
    if ids:
        with reading(ctx.engine) as conn:
            names = {connection_id: name for connection_id, name in conn.execute(
                select(connections.c.id, connections.c.name).where(connections.c.id.in_(sorted(ids))))}
    for item in found.stuck:
        if item.connection_id is not None:
            item.connection = names.get(item.connection_id, item.connection_id)
    return found


def find(directory: Path) -> Found:
    """The stuck rows of every spool in `directory`; a spool that cannot be read is reported, and
    the others are still read."""
    found = Found(directory)
    for path in spools_in(directory):  # whether its receiver runs or not
        try:
            found.stuck.extend(_read(path))
        except (sqlite3.Error, SpoolFormatError, OSError) as exc:
            found.problems.append(SpoolProblem(path, f"spool {path.name} could not be read ({exc})"))
    found.stuck.sort(key=lambda item: (not item.retryable, item.received_at or "", item.key))
    return found


def _read(path: Path) -> list[Stuck]:
    # Read-only, one short read: a running receiver's spool writer and mover never wait for it.
    conn = sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True, timeout=5)
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version == 0:
            return []  # being made this moment: no tables yet (spool.open_spool)
        if version not in READABLE:
            raise SpoolFormatError(f"a spool of format {version}; this workbench reads formats "
                                   f"{' and '.join(map(str, READABLE))}: retry it with the version that wrote it")
        rows = conn.execute("SELECT id, delivery, reason FROM stuck ORDER BY id").fetchall()
    finally:
        conn.close()
    return [_entry(path, str(key), kept, str(reason)) for key, kept, reason in rows]


def _entry(path: Path, key: str, kept: Any, reason: str) -> Stuck:
    # A damaged or hand-edited file is read as untrusted: anything that is not exactly the one
    # delivery the mover set aside under this key is listed as unreadable and never retried.
    row = None if key.startswith(BATCH_PREFIX) else _one_delivery(key, kept)
    return Stuck(key, path, redact_text(reason), row, kept=kept if isinstance(kept, bytes) else str(kept).encode())


def _one_delivery(key: str, kept: Any) -> list[Any] | None:
    try:
        rows = unpack(kept)
    except Exception:  # msgpack raises several kinds for damaged bytes; a non-bytes value too
        return None
    if not (isinstance(rows, list) and len(rows) == 1 and isinstance(rows[0], list) and len(rows[0]) == len(COLUMNS)):
        return None
    row = rows[0]
    return row if row[0] == key and isinstance(row[1], str) and type(row[2]) in (int, str) else None


class Outcome(StrEnum):
    MOVED = "moved"
    STUCK = "still stuck"
    NOT_RETRIED = "not retried"  # unreadable


@dataclass(frozen=True)
class Retried:
    delivery: Stuck
    outcome: Outcome
    reason: str | None = None  # why it is still stuck (its new reason), or why it was not retried


@dataclass
class RetryReport:
    asked: list[str]  # the IDs named; empty: every retryable one
    moved: int = 0
    still_stuck: int = 0
    not_retried: int = 0
    problems: list[SpoolProblem] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        """Everything asked for is in the store now (asked for all: every retryable one)."""
        return self.still_stuck == 0 and not (self.asked and self.not_retried)


def retry(ctx: ServiceContext, vaults: Vaults, ids: Sequence[str] = (),
          each: Callable[[Retried], None] = lambda retried: None) -> RetryReport:
    """Move stuck deliveries into the store: those named by `ids`, else every retryable one.
    An ID no spool here holds is an InvalidArgument before anything is done. `each` is told of
    every delivery as it is done. One audit entry says what the run did."""
    access.require(ctx, "ingest")  # the same writes as the receiver's own moves
    found = _found(ctx)
    report = RetryReport(list(dict.fromkeys(ids)), problems=found.problems)
    chosen = _chosen(found, report.asked)

    def done(retried: Retried) -> None:
        if retried.outcome is Outcome.MOVED:
            report.moved += 1
        elif retried.outcome is Outcome.STUCK:
            report.still_stuck += 1
        else:
            report.not_retried += 1
        each(retried)

    retryable = [item for item in chosen if item.retryable]
    if retryable:
        from .mover import Mover  # the ingest pipeline's imports only when something is to move

        sync_every_commit(ctx.engine)  # as the applier: a delivery leaves the spool only once on disk
        mover = Mover(ctx, vaults)
        for path, items in _by_spool(retryable).items():
            _retry_spool(mover, path, items, done)
    for item in chosen:  # its bytes are all there is: kept for a person to look at, never stored
        if not item.retryable:
            done(Retried(item, Outcome.NOT_RETRIED, f"unreadable (it stays in {item.spool.name})"))
    with writing(ctx.engine) as conn:
        audit.append(conn, ctx, "receiver.retry_stuck", "store", None,
                     after={"asked": report.asked or "all", "moved": report.moved, "still_stuck": report.still_stuck,
                            "not_retried": report.not_retried, "machine": socket.gethostname()})
    return report


def _chosen(found: Found, asked: list[str], done: str = "retried") -> list[Stuck]:
    if not asked:
        return found.stuck
    by_key = {item.key: item for item in found.stuck}
    unknown = [key for key in asked if key not in by_key]
    if unknown:
        shown = ", ".join(unknown[:5]) + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
        unread = (f" (left out, as they could not be read: {', '.join(problem.spool.name for problem in found.problems)})"
                  if found.problems else "")
        raise InvalidArgument(f"no stuck delivery {shown} in this machine's spools at {found.directory}{unread}; "
                              f"`workbench listen stuck` lists them; nothing was {done}")
    return [by_key[key] for key in asked]


def _retry_spool(mover: Mover, path: Path, items: list[Stuck], done: Callable[[Retried], None]) -> None:
    pending = list(items)
    try:
        with _changing(path) as conn:
            while pending:
                done(_retry_one(mover, conn, pending[0]))
                pending.pop(0)
    except (sqlite3.Error, OSError) as exc:  # the spool, not the store: what is left of it stays stuck as it was
        for item in pending:
            done(Retried(item, Outcome.STUCK, f"spool {path.name} could not be written ({exc}); retry again"))


@contextmanager
def _changing(path: Path) -> Iterator[sqlite3.Connection]:
    """A spool's connection, to change its stuck rows. Held alone when no receiver holds it:
    none takes it over meanwhile, and it goes once empty (or gone since), its lock file last.
    A running receiver's (or one being taken over) is written beside it, in tiny
    transactions, and kept."""
    claim = SpoolClaim.take(path)
    empty = False
    try:
        # mode=rw: a spool removed since it was listed is not made again, empty
        conn = sqlite3.connect(f"{path.absolute().as_uri()}?mode=rw", uri=True, isolation_level=None, timeout=30)
        try:
            yield conn
            empty = claim is not None and holds_nothing(conn)
        finally:
            conn.close()
    finally:
        if claim is not None:
            claim.release(remove=empty or not path.exists())


def _retry_one(mover: Mover, conn: sqlite3.Connection, item: Stuck) -> Retried:
    from workbench.services.ingest_run import one_line

    from .mover import Spooled

    assert item.row is not None  # only retryable ones come here
    try:
        mover.store_one(Spooled(0, list(item.row)))
    except Exception as exc:  # refused again: kept, with why this time
        reason = one_line(exc)[:_REASON_CHARS]
        conn.execute("UPDATE stuck SET reason = ? WHERE id = ?", (reason, item.key))
        return Retried(item, Outcome.STUCK, reason)
    conn.execute("DELETE FROM stuck WHERE id = ?", (item.key,))  # only now: the store's commit is done
    return Retried(item, Outcome.MOVED)


@dataclass(frozen=True)
class Discarded:
    delivery: Stuck
    size: int  # bytes of what was kept (the spooled row, or the unreadable batch)
    sha256: str
    error: str | None = None  # why it could not be discarded (it stays stuck)


def discard(ctx: ServiceContext, ids: Sequence[str], reason: str,
            each: Callable[[Discarded], None] = lambda discarded: None) -> list[Discarded]:
    """Remove the named stuck deliveries from their spools for good: what neither a retry nor
    a fix will move. An ID no spool here holds is an InvalidArgument before anything is done.
    One audit entry, written before anything is removed (a kill in between leaves the entry and
    the delivery, never a removal nobody can account for), names each with its spool, reason,
    size and SHA-256. A spool nobody holds is removed once nothing is left in it."""
    access.require(ctx, "discard")
    asked = list(dict.fromkeys(ids))
    if not asked:
        raise InvalidArgument("name the stuck deliveries to discard (`workbench listen stuck` lists them); "
                              "nothing was discarded")
    if not reason.strip():
        raise InvalidArgument("say why they are discarded (--reason): it is kept in the audit trail; nothing was discarded")
    found = _found(ctx)
    chosen = _chosen(found, asked, "discarded")
    with writing(ctx.engine) as conn:
        audit.append(conn, ctx, "receiver.discard_stuck", "store", None, reason=reason, after={
            "machine": socket.gethostname(),
            "discarded": [{"delivery": item.key, "spool": item.spool.name, "connection": item.connection,
                           "received_at": item.received_at, "reason": item.reason, "bytes": len(item.kept),
                           "sha256": _sha256(item)} for item in chosen]})
    results: list[Discarded] = []
    for path, items in _by_spool(chosen).items():
        for result in _discard_in(path, items):
            results.append(result)
            each(result)
    return results


def _by_spool(items: list[Stuck]) -> dict[Path, list[Stuck]]:
    grouped: dict[Path, list[Stuck]] = {}
    for item in items:
        grouped.setdefault(item.spool, []).append(item)
    return grouped


def _sha256(item: Stuck) -> str:
    return hashlib.sha256(item.kept).hexdigest()


def _discard_in(path: Path, items: list[Stuck]) -> list[Discarded]:
    results: list[Discarded] = []
    try:
        with _changing(path) as conn:
            for item in items:
                gone = conn.execute("DELETE FROM stuck WHERE id = ?", (item.key,)).rowcount == 1
                results.append(Discarded(item, len(item.kept), _sha256(item), None if gone else
                                         f"no longer stuck in {path.name} (moved or discarded meanwhile)"))
    except (sqlite3.Error, OSError) as exc:  # what is left stays stuck, as it was
        done = {result.delivery.key for result in results}
        results += [Discarded(item, len(item.kept), _sha256(item), f"spool {path.name} could not be written ({exc}); "
                              "it stays stuck") for item in items if item.key not in done]
    return results
