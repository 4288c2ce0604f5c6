"""The receiver's spool: a small SQLite file of its own where each delivery is made durable
before it is answered, moved into the store (and applied) off the request path.

Why a file of its own: SQLite lets one writer at a time into a database file. With the
deliveries written straight into the store, every request waited for whatever else held the
store's write lock (applying, the engine, an operator's command), and applying had to be cut
into small steps to let requests through. The spool has one writer (spool_writer.py), one
table without secondary indexes and small pages, so a commit is little more than the WAL's
sync; the mover (mover.py) reads it and writes the store in large transactions, and tells the
writer what it moved, which the writer deletes (MOVED).

Each receiver owns one spool (`receiver-<token>.spool`) and holds a lock on its `.lock` file
while it runs (SpoolClaim). A spool whose lock nobody holds belongs to a receiver that was
killed: the next receiver to start on the store moves what it holds, then removes it. Only
the standard library here: the spool writer's process imports nothing else.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import secrets
import sqlite3
import struct
import time
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import msgpack

SPOOL_DIR_ENV = "WORKBENCH_SPOOL_DIR"
SUFFIX = ".spool"
# PRAGMA user_version: what a spool's rows hold. Format 2 added rows spooled raw (see COLUMNS);
# format 1's rows are all in stored form, so a mover reads both alike and refuses any other.
FORMAT = 2
READABLE = (1, 2)
# One delivery, as the receiver builds it (a list in this order, in a batch packed with msgpack);
# `problem_*`: the failure a failed signature opens (category, code, message), NULL otherwise.
# A row is spooled raw (`payload_hash` and `capture_key` None, `received_at` in microseconds
# since the epoch, `headers` as received but with credentials masked) unless its body was
# sealed on receipt; the mover makes the stored form (ingest_prepare.stored_form), off the
# request path. A sealed row is spooled in stored form (`received_at` as SQLite text, `headers`
# as stored), the hash and capture key being of the plain body.
COLUMNS = ("id", "connection_id", "received_at", "headers", "body", "payload_hash", "capture_key",
           "signature_verdict", "verdict", "verdict_reason", "body_key_version", "signature_secret",
           "problem_category", "problem_code", "problem_message")
# A batch per row, stored as the receiver sent it: the spool writer's work per delivery is
# nil, and a batch is committed or not as a whole. `seq` is never used twice (AUTOINCREMENT),
# even once the table has been emptied: the mover reads on from the last it moved, and the
# writer deletes through a `seq` the mover gives it (MOVED). `stuck`: deliveries the store
# refused, set aside by the mover one by one (see mover.py).
_SCHEMA = ("CREATE TABLE IF NOT EXISTS spool (seq INTEGER PRIMARY KEY AUTOINCREMENT, deliveries INTEGER NOT NULL, "
           "batch BLOB NOT NULL)",
           "CREATE TABLE IF NOT EXISTS stuck (id TEXT PRIMARY KEY, delivery BLOB NOT NULL, reason TEXT NOT NULL)")
INSERT = "INSERT INTO spool (deliveries, batch) VALUES (?, ?)"
DELETE_THROUGH = "DELETE FROM spool WHERE seq <= ?"
# What the applier tells a live receiver's spool writer after a move: every batch through this
# `seq` is in the store, delete it (spool_writer.py). One write each, well under PIPE_BUF, so a
# reader always finds whole marks in the pipe.
MOVED = struct.Struct("<Q")


class SpoolFormatError(Exception):
    """A spool written by another version of the workbench."""


def pack(rows: list[list[Any]]) -> bytes:
    return msgpack.packb(rows, use_bin_type=True)


def unpack(batch: bytes) -> list[list[Any]]:
    rows: list[list[Any]] = msgpack.unpackb(batch, raw=False, use_list=True)
    return rows


def received_micros(at: datetime) -> int:
    """A receipt time as a raw row keeps it (UTC `at`)."""
    return (at - _EPOCH) // _MICROSECOND


def received_time(value: int | str) -> datetime:
    """A spooled `received_at` (either form) as a UTC datetime."""
    if type(value) is int:
        return _EPOCH + timedelta(microseconds=value)
    return datetime.fromisoformat(str(value)).replace(tzinfo=UTC)


def received_text(value: int) -> str:
    """A raw row's receipt time (microseconds since 1970) as the store keeps it on SQLite
    (`YYYY-MM-DD HH:MM:SS.ffffff`, UTC): exactly store.bulk's text of `received_time(value)`,
    made without a datetime (the applier makes one per delivery; neighbours share their second).
    OverflowError outside the years 1 to 9999, as received_time."""
    if not _YEAR_1 <= value < _YEAR_10000:
        raise OverflowError(f"receipt time {value} is out of range")
    seconds, micros = divmod(value, 1_000_000)
    return f"{_second_text(seconds)}.{micros:06d}"


@lru_cache(maxsize=64)
def _second_text(seconds: int) -> str:
    year, month, day, hour, minute, second = time.gmtime(seconds)[:6]
    return f"{year:04d}-{month:02d}-{day:02d} {hour:02d}:{minute:02d}:{second:02d}"


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_YEAR_1 = (datetime(1, 1, 1, tzinfo=UTC) - _EPOCH) // _MICROSECOND
_YEAR_10000 = (datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC) - _EPOCH) // _MICROSECOND + 1


def spool_dir(store_url: str) -> Path:
    """Where a store's receivers keep their spools: WORKBENCH_SPOOL_DIR, else beside an
    embedded store's file, else (a server's store) under the user's state directory, one
    folder per store."""
    override = os.environ.get(SPOOL_DIR_ENV)
    if override:
        return Path(override)
    parts = urlsplit(store_url)
    if parts.scheme.startswith("sqlite") and parts.path not in ("", "/", "/:memory:"):
        database = Path(unquote(parts.path[1:]))
        return database.parent / f"{database.name}.receiver"
    from platformdirs import user_state_dir  # not in the spool writer's process

    store = hashlib.sha256(f"{parts.hostname}:{parts.port}{parts.path}".encode()).hexdigest()[:16]
    return Path(user_state_dir("integration-workbench", appauthor=False)) / "receiver-spool" / store


def lock_path(spool: Path) -> Path:
    return spool.with_name(spool.name + ".lock")


class SpoolClaim:
    """A hold on a spool: its lock file locked (flock) for as long as the claim is kept. A
    receiver and its two child processes each hold it shared, so a spool is in use while any of
    them lives (the children finish their work after a killed receiver); taking over an
    abandoned one needs it exclusively."""

    def __init__(self, spool: Path, fd: int) -> None:
        self.spool, self._fd = spool, fd

    @classmethod
    def new(cls, directory: Path) -> SpoolClaim:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        spool = directory / f"receiver-{secrets.token_hex(6)}{SUFFIX}"
        claim = cls._lock(spool, fcntl.LOCK_SH)
        assert claim is not None  # a fresh name: nobody takes it over
        return claim

    @classmethod
    def share(cls, spool: Path) -> SpoolClaim | None:
        """Held alongside its receiver (the receiver's children); None if it is being taken over."""
        return cls._lock(spool, fcntl.LOCK_SH)

    @classmethod
    def take(cls, spool: Path) -> SpoolClaim | None:
        """Held alone, to take it over; None while its receiver or a child of it lives (or
        another receiver is taking it over)."""
        return cls._lock(spool, fcntl.LOCK_EX)

    @classmethod
    def _lock(cls, spool: Path, mode: int) -> SpoolClaim | None:
        fd = os.open(lock_path(spool), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        return cls(spool, fd)

    def release(self, *, remove: bool = False) -> None:
        """Let go; `remove`: the spool is empty and nobody else uses it: its files go (the lock
        file last, still held)."""
        if remove:
            for path in (self.spool, Path(f"{self.spool}-wal"), Path(f"{self.spool}-shm"), lock_path(self.spool)):
                path.unlink(missing_ok=True)
        os.close(self._fd)


def spools_in(directory: Path) -> list[Path]:
    """Every spool in `directory`: any may have been left by a killed receiver (whether it was
    is for SpoolClaim.take to say)."""
    if not directory.is_dir():
        return []
    return sorted(path for path in directory.glob(f"*{SUFFIX}") if path.is_file())


def open_spool(path: Path, *, sync_full: bool = False) -> sqlite3.Connection:
    """A connection to the spool, made if new (mode 0600: it holds what the store would).
    `sync_full`: the writer's, whose commit answers requests (the WAL synced at every commit);
    the mover's own deletes (when no writer takes them) need no sync (a moved row found again
    is skipped)."""
    if not path.exists():
        os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    if conn.execute("PRAGMA page_size").fetchone()[0] != 4096 and _empty(conn):
        conn.execute("PRAGMA page_size=4096")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={'FULL' if sync_full else 'NORMAL'}")
    # The mover checkpoints between its moves (applier.py), so the writer's commits never pay
    # for one; this is the writer's own backstop should the mover stop.
    conn.execute(f"PRAGMA wal_autocheckpoint={(64 << 20) // 4096}")
    conn.execute(f"PRAGMA journal_size_limit={16 << 20}")
    # Some builds (Debian's) zero every freed page by default: each batch the mover deletes
    # then went through the WAL twice more, page by page (measured: a quarter of the mover's
    # time, and syncs the spool writer waited behind). FAST zeroes deleted content only where
    # that costs no extra write; freed pages are reused by the next batches, and every moved
    # delivery is in the store anyway.
    conn.execute("PRAGMA secure_delete=FAST")
    conn.execute("BEGIN IMMEDIATE")  # two processes may open a new spool at once
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version == 0:
        for statement in _SCHEMA:
            conn.execute(statement)
        conn.execute(f"PRAGMA user_version={FORMAT}")
    conn.execute("COMMIT")
    if version not in (0, *READABLE):
        conn.close()
        raise SpoolFormatError(f"{path} is a spool of format {version}; this workbench reads formats "
                               f"{' and '.join(map(str, READABLE))}: move it with the version that wrote it")
    return conn


def _empty(conn: sqlite3.Connection) -> bool:
    return conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0


def holds_nothing(conn: sqlite3.Connection) -> bool:
    """Neither spooled nor stuck deliveries: the spool may be removed."""
    return conn.execute("SELECT (SELECT count(*) FROM spool) + (SELECT count(*) FROM stuck)").fetchone()[0] == 0


def waiting(path: Path) -> tuple[int, int]:
    """Deliveries in the spool not yet moved into the store, and those set aside as stuck
    (see mover.py); (0, 0) for no spool."""
    spooled, stuck, _ = _backlog(path, oldest=False)
    return spooled, stuck


def _backlog(path: Path, *, oldest: bool) -> tuple[int, int, datetime | None]:
    """`waiting`, and (with `oldest`) when the first delivery still spooled was received, in
    one read-only connection."""
    if not path.exists():
        return 0, 0, None
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        spooled = conn.execute("SELECT coalesce(sum(deliveries), 0) FROM spool").fetchone()[0]
        stuck = conn.execute("SELECT count(*) FROM stuck").fetchone()[0]
        first = conn.execute("SELECT batch FROM spool ORDER BY seq LIMIT 1").fetchone() if oldest and spooled else None
    except sqlite3.OperationalError:  # made but no tables yet
        return 0, 0, None
    finally:
        conn.close()
    try:
        return spooled, stuck, None if first is None else received_time(unpack(first[0])[0][2])
    except Exception:  # a damaged first batch (the mover sets it aside): no time to give
        return spooled, stuck, None


def delivery_ids(path: Path) -> set[str]:
    """The IDs of every delivery in a spool, stuck ones included."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        ids = {row[0] for (batch,) in conn.execute("SELECT batch FROM spool") for row in unpack(batch)}
        return ids | {delivery_id for (delivery_id,) in conn.execute("SELECT id FROM stuck")}
    finally:
        conn.close()


def waiting_in(directory: Path) -> tuple[int, int, datetime | None]:
    """`waiting` summed over every spool in `directory` (the receiver's own, those of other
    receivers on the store here, and those of killed ones being taken over), and when the
    oldest delivery spooled there was received (None: none is): how far behind the applying is."""
    spooled = stuck = 0
    oldest: datetime | None = None
    for path in spools_in(directory):
        count, set_aside, at = _backlog(path, oldest=True)
        spooled, stuck = spooled + count, stuck + set_aside
        if at is not None and (oldest is None or at < oldest):
            oldest = at
    return spooled, stuck, oldest
