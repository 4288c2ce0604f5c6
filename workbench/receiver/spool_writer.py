"""The spool writer: the one process that writes a receiver's spool (spool.py).

It commits the batches the request path sends it (those waiting in the pipe together in one
transaction, one sync of the WAL) and answers each once committed. Nothing else runs here, so
a batch never waits behind other work. Why a process and not a thread of the receiver: there,
every call into the database driver gives up the GIL and then waits for the busy event loop
to hand it back, which made a commit of a few rows take milliseconds.

It also deletes what the applier has moved into the store: the applier writes the spool's
`seq` of the last batch it moved on a pipe of its own (spool.MOVED), and the writer deletes
through it in its next transaction (at once when no batch is waiting). So the spool has one
writer, and the applier never waits for its lock.

Messages from the receiver go over two pipes. In: frames of a batch (its sequence number, its count of
deliveries and the batch as the spool keeps it, spool.pack, stored as it came), each written
in one write (multiprocessing's send_bytes writes a message over 16 KiB in two, which can wake
the child twice); or STOP. Out: one reply per transaction, the last sequence number it
covered and, if it failed, why (every batch through that number shares the outcome). The child ignores SIGINT
and SIGTERM (sent to the whole process group, they are for the receiver): the receiver stops it
after its last batch. Killed, it loses nothing: an uncommitted batch was never answered. Only
the standard library, msgpack and spool.py are imported here (the child starts in a fraction
of the receiver's time).
"""

from __future__ import annotations

import fcntl
import logging
import multiprocessing
import os
import select
import sqlite3
import struct
import subprocess
from multiprocessing.connection import Connection as Pipe
from pathlib import Path

from . import children
from .spool import DELETE_THROUGH, INSERT, MOVED, SpoolClaim, open_spool

log = logging.getLogger(__name__)

MERGED_BATCHES = 8  # batches at most in one transaction
PIPE_BYTES = 1 << 20  # Linux's default limit for an unprivileged process
# Before each batch: its length in bytes, its sequence number (from 1) and count of deliveries.
_FRAME = struct.Struct("<IQI")
_STOP = _FRAME.pack(0, 0, 0)  # no batch has sequence number 0
_REPLY = struct.Struct("<Q")  # the last sequence number a transaction covered; then the error, if any


class SpoolLink:
    """The receiver's end: starts the child, sends batches, reads replies (`replies_fd` is for
    the event loop to watch)."""

    def __init__(self, spool: Path, moved: int | None = None) -> None:
        """`moved`: the reading end of the applier's pipe of moved batches (kept open by the
        receiver, so a writer started again reads on where the last one stopped)."""
        self.spool = spool
        self._moved = moved
        self._process: subprocess.Popen[bytes] | None = None
        self._requests: Pipe | None = None
        self._replies: Pipe | None = None

    def start(self) -> None:
        """Start the child and wait until it is ready (blocking: call it off the event loop)."""
        requests_in, requests_out = multiprocessing.Pipe(duplex=False)
        _widen(requests_out)
        replies_in, replies_out = multiprocessing.Pipe(duplex=False)
        process = children.launch(__name__, (str(self.spool),), [requests_in, replies_out],
                                  shared=() if self._moved is None else (self._moved,))
        if not children.ready(replies_in):
            process.kill()
            process.wait()
            raise RuntimeError("the receiver's spool writer did not start")
        self._process, self._requests, self._replies = process, requests_out, replies_in

    @property
    def replies_fd(self) -> int:
        assert self._replies is not None
        return self._replies.fileno()

    def send(self, seq: int, deliveries: int, batch: bytes) -> None:
        assert self._requests is not None
        _write_all(self._requests.fileno(), _FRAME.pack(len(batch), seq, deliveries) + batch)

    def reply(self) -> tuple[int, str | None]:
        """The next reply: every batch through the sequence number it gives was committed, or
        (with an error) was not (call when `replies_fd` is readable). EOFError: the child is gone."""
        assert self._replies is not None
        message = self._replies.recv_bytes()
        (last,) = _REPLY.unpack_from(message)
        return last, message[_REPLY.size:].decode() or None

    def stop(self, timeout_s: float = 30) -> None:
        """The child commits what it was sent, then ends (blocking: call it off the event loop)."""
        requests, self._requests = self._requests, None
        if requests is not None:
            try:
                _write_all(requests.fileno(), _STOP)
            except OSError:
                pass  # already gone
            requests.close()
        if not children.stop(self._process, timeout_s):
            log.warning("receiver: the spool writer did not end in %d s; it was stopped", timeout_s)
        if self._replies is not None:
            self._replies.close()
            self._replies = None


def _widen(pipe: Pipe) -> None:
    """Room in the pipe for the batches in flight: a send into a full pipe would block the event
    loop (every request waits) until the child reads."""
    try:
        fcntl.fcntl(pipe.fileno(), fcntl.F_SETPIPE_SZ, PIPE_BYTES)
    except (AttributeError, OSError):  # not Linux, or over /proc/sys/fs/pipe-max-size
        log.debug("receiver: the pipe to the spool writer keeps its default size")


def _child(spool: str, requests: Pipe, replies: Pipe, moved: Pipe | None = None) -> None:
    children.ignore_stop_signals()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    claim = SpoolClaim.share(Path(spool))  # in use while this lives, even after a killed receiver
    if claim is None:
        return  # being taken over: not ours any more (the receiver reports it did not start)
    conn = open_spool(Path(spool), sync_full=True)
    incoming = _Incoming(requests, None if moved is None else moved.fileno())
    replies.send_bytes(children.READY)
    deleted = 0
    try:
        while True:
            batches, ending = _waiting_batches(incoming) if incoming.wait() else ([], False)
            incoming.take_marks()
            through = incoming.moved_through if incoming.moved_through > deleted else None
            if (batches or through) and _commit(conn, batches, replies, delete_through=through) and through:
                deleted = through
            if ending:
                return
    finally:
        conn.close()
        claim.release()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _read_exactly(fd: int, size: int) -> bytearray | None:
    """`size` bytes from the pipe, or None at its end (a frame cut short by a killed receiver
    was never answered: dropped)."""
    buffer = bytearray(size)
    view = memoryview(buffer)
    got = 0
    while got < size:
        count = os.readv(fd, [view[got:]])
        if count == 0:
            return None
        got += count
    return buffer


class _Batch:
    __slots__ = ("seq", "deliveries", "batch")

    def __init__(self, seq: int, deliveries: int, batch: bytearray) -> None:
        self.seq, self.deliveries, self.batch = seq, deliveries, batch


class _Incoming:
    """The reading end of the requests pipe, with a poll object made once to ask whether more
    is waiting (multiprocessing's Connection.poll builds a selector at every call: 4.7 us
    against 0.6, twice a transaction); and the reading end of the applier's pipe of moved
    batches, if any: `moved_through` is the last `seq` it gave."""

    def __init__(self, requests: Pipe, moved: int | None = None) -> None:
        self.fd = requests.fileno()
        self._poll = select.poll()
        self._poll.register(self.fd, select.POLLIN)
        self._either = select.poll()  # a batch or a mark
        self._either.register(self.fd, select.POLLIN)
        self._moved = moved
        self._marks = select.poll()
        if moved is not None:
            self._either.register(moved, select.POLLIN)
            self._marks.register(moved, select.POLLIN)
        self._partial = b""
        self.moved_through = 0

    def more(self) -> bool:
        """Something to read now (or the receiver's end closed)."""
        return bool(self._poll.poll(0))

    def wait(self) -> bool:
        """Wait for a batch or a mark; whether a batch is there (or the receiver's end closed)."""
        return any(fd == self.fd for fd, _ in self._either.poll())

    def take_marks(self) -> None:
        """Read the marks waiting in the applier's pipe, if any (without waiting)."""
        if self._moved is None or not self._marks.poll(0):
            return
        data = self._partial + os.read(self._moved, 1 << 16)
        if len(data) == len(self._partial):  # every writing end closed: no more marks
            self._either.unregister(self._moved)
            self._marks.unregister(self._moved)
            self._moved = None
            return
        whole = len(data) - len(data) % MOVED.size
        self._partial = data[whole:]
        if whole:
            self.moved_through = max(self.moved_through, MOVED.unpack_from(data, whole - MOVED.size)[0])


def _waiting_batches(incoming: _Incoming) -> tuple[list[_Batch], bool]:
    """The next batch and every other already in the pipe, and whether the receiver is gone or
    asked to stop after them."""
    batches: list[_Batch] = []
    fd = incoming.fd
    while True:
        head = _read_exactly(fd, _FRAME.size)
        if head is None or head == _STOP:
            return batches, True  # the receiver is gone, or asked to stop
        size, seq, deliveries = _FRAME.unpack(head)
        batch = _read_exactly(fd, size)
        if batch is None:
            return batches, True
        batches.append(_Batch(seq, deliveries, batch))
        if len(batches) >= MERGED_BATCHES or not incoming.more():
            return batches, False


def _commit(conn: sqlite3.Connection, batches: list[_Batch], replies: Pipe, *,
            delete_through: int | None = None) -> bool:
    """The batches in one transaction (one sync of the WAL for all of them), answered at once;
    with them (or alone), the moved batches through `delete_through` deleted. Whether it
    committed."""
    error = ""
    try:
        conn.execute("BEGIN IMMEDIATE")
        if delete_through is not None:  # first: the batches below reuse the pages it frees
            conn.execute(DELETE_THROUGH, (delete_through,))
        if batches:
            conn.executemany(INSERT, [(batch.deliveries, batch.batch) for batch in batches])
        conn.execute("COMMIT")
    except Exception as exc:  # answered 503: nothing was stored, the sender retries
        error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
        log.error("receiver: could not %s: %s", f"spool {len(batches)} batches" if batches else
                  f"delete the batches moved through {delete_through}", error)
        if conn.in_transaction:
            conn.execute("ROLLBACK")
    if batches:
        replies.send_bytes(_REPLY.pack(batches[-1].seq) + error.encode())
    return not error


if __name__ == "__main__":  # started by SpoolLink.start (children.launch)
    (path,), (requests_end, replies_end, *moved_end) = children.received()
    _child(path, requests_end, replies_end, *moved_end)
