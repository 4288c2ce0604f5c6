"""The receiver's store process: the one process of a receiver that writes to the store.

It commits the batches of deliveries the request path sends it (those waiting in the pipe
together in one transaction, one sync of the WAL), answering each batch once it is committed;
between batches it applies held deliveries a step at a time (follower.py). Why a process of
its own: in the receiver's process every call into the database driver gives up the GIL and
then waits for the busy event loop to hand it back, which made a commit of a few rows take
milliseconds; and applying deliveries is Python work that would take the request path's core.
Here neither waits on the other, and the request path keeps a core to itself. One writer also
means the batches and the applying never wait on each other for SQLite's write lock.

Messages are pickled tuples over two pipes (requests in, replies out): a batch
`(seq, rows, problems, held)`, answered `(seq, error)` (error None once committed), and STOP.
The child ignores SIGINT (a ctrl+c reaches the whole process group): the receiver stops it
after its last batch, and a child whose receiver died (the pipe closes) applies what it was
told, then ends. Killed, it loses nothing: an uncommitted batch was never answered, and held
deliveries are found again by the next one's sweep."""

from __future__ import annotations

import fcntl
import logging
import multiprocessing
import pickle
import signal
from collections.abc import Sequence
from multiprocessing.connection import Connection as Pipe
from typing import Any

from sqlalchemy import Connection

from store.bulk import row_insert
from store.models import Delivery
from workbench.domain.taxonomy import Category
from workbench.services.beliefs import BeliefBook
from workbench.services.context import ServiceContext, open_context
from workbench.services.ingest_prepare import DELIVERY_COLUMNS
from workbench.services.ingest_run import one_line
from workbench.services.payload_crypto import Vaults

from .follower import Follower

log = logging.getLogger(__name__)

deliveries = Delivery.__table__
STOP = b"stop"
READY = b"ready"
IDLE_WAIT_S = 0.25  # how long the child waits for a batch when nothing is due
QUIET_S = 0.002  # no batch for this long: the receiver is not busy, apply a step
# Applied within a second (issue 10): from this wait on, a step between every two batches.
BEHIND_S = 0.5
START_TIMEOUT_S = 60
MERGED_BATCHES = 8  # batches at most in one transaction
PIPE_BYTES = 1 << 20  # Linux's default limit for an unprivileged process
_spawn = multiprocessing.get_context("spawn")  # not fork (the receiver has threads); the default stays as it is

# A signature that failed opens a failure in the batch's transaction:
# (connection ID, provider, delivery ID, category, code, message).
Problem = tuple[str, str, str, Category, str, str]


class StoreLink:
    """The receiver's end: starts the child, sends batches, reads replies (`replies_fd` is
    for the event loop to watch)."""

    def __init__(self, ctx: ServiceContext, vaults: Vaults) -> None:
        self._url = ctx.engine.url.render_as_string(hide_password=False)
        self._actor, self._vaults = ctx.actor, vaults
        self._process: Any = None
        self._requests: Pipe | None = None
        self._replies: Pipe | None = None

    def start(self) -> None:
        """Start the child and wait until it is ready (blocking: call it off the event loop)."""
        requests_in, requests_out = _spawn.Pipe(duplex=False)
        _widen(requests_out)
        replies_in, replies_out = _spawn.Pipe(duplex=False)
        process = _spawn.Process(target=_child, name="receiver-store", daemon=True,
                                 args=(self._url, self._actor, self._vaults, requests_in, replies_out))
        process.start()
        requests_in.close()
        replies_out.close()
        if not replies_in.poll(START_TIMEOUT_S) or replies_in.recv_bytes() != READY:
            process.kill()
            raise RuntimeError("the receiver's store process did not start")
        self._process, self._requests, self._replies = process, requests_out, replies_in

    @property
    def replies_fd(self) -> int:
        assert self._replies is not None
        return self._replies.fileno()

    def alive(self) -> bool:
        return self._process is not None and self._process.is_alive()

    def send(self, seq: int, rows: Sequence[tuple[Any, ...]], problems: Sequence[Problem],
             held: dict[str, list[str]]) -> None:
        assert self._requests is not None
        self._requests.send_bytes(pickle.dumps((seq, rows, problems, held), protocol=pickle.HIGHEST_PROTOCOL))

    def reply(self) -> tuple[int, str | None]:
        """The next reply (call when `replies_fd` is readable). EOFError: the child is gone."""
        assert self._replies is not None
        seq, error = pickle.loads(self._replies.recv_bytes())
        return seq, error

    def stop(self, timeout_s: float = 60) -> None:
        """The child applies what it was told, then ends (blocking: call it off the event loop)."""
        requests, self._requests = self._requests, None
        if requests is not None:
            try:
                requests.send_bytes(STOP)
            except OSError:
                pass  # already gone
            requests.close()
        if self._process is not None:
            self._process.join(timeout=timeout_s)
            if self._process.is_alive():
                log.warning("receiver: the store process did not end in %d s; stopping it", timeout_s)
                self._process.kill()
                self._process.join()
        if self._replies is not None:
            self._replies.close()
            self._replies = None


def _widen(pipe: Pipe) -> None:
    """Room in the pipe for the batches in flight: a send into a full pipe would block the event
    loop (every request waits) until the store process reads, which may be a step later."""
    try:
        fcntl.fcntl(pipe.fileno(), fcntl.F_SETPIPE_SZ, PIPE_BYTES)
    except (AttributeError, OSError):  # not Linux, or over /proc/sys/fs/pipe-max-size
        log.debug("receiver: the pipe to the store process keeps its default size")


class _BatchStore:
    """Writes batches in one transaction each, on a connection kept between them."""

    def __init__(self, ctx: ServiceContext) -> None:
        self._ctx = ctx
        self._sqlite = ctx.engine.dialect.name == "sqlite"
        self._conn: Connection | None = None

    def write(self, rows: Sequence[tuple[Any, ...]], problems: Sequence[Problem]) -> None:
        conn = self._connection()
        try:
            with conn.begin():
                row_insert(conn, deliveries, DELIVERY_COLUMNS).execute_as_one(conn, rows)
                books: dict[str, BeliefBook] = {}
                for connection_id, provider, delivery_id, category, code, message in problems:
                    book = books.get(connection_id)
                    if book is None:
                        book = books[connection_id] = BeliefBook(self._ctx, connection_id, provider)
                    book.open_failure(category, code, message, delivery_id=delivery_id)
                for book in books.values():
                    book.flush(conn)
        except BaseException:
            self._conn = None
            conn.close()
            raise

    def _connection(self) -> Connection:
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


def _child(url: str, actor: str, vaults: Vaults, requests: Pipe, replies: Pipe) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # in this child only: it exists to store
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    ctx = open_context(url, actor=actor)
    store, follower = _BatchStore(ctx), Follower(ctx, vaults)
    try:
        follower.sweep()
    except Exception as exc:
        log.warning("receiver: could not look for held deliveries (%s)", one_line(exc))
    replies.send_bytes(READY)
    try:
        _serve_batches(store, follower, requests, replies)
    finally:
        while follower.ready():  # what it was told, before it ends
            follower.step()
        store.close()
        ctx.engine.dispose()


def _serve_batches(store: _BatchStore, follower: Follower, requests: Pipe, replies: Pipe) -> None:
    """Batches first, and a step of applying when no batch has come for QUIET_S (the receiver
    is not busy). Once a delivery has waited BEHIND_S to be applied, steps and batches take
    turns until it is caught up: under a load the steps alone cannot keep up with, batches
    then wait for steps (the receiver answers more slowly) rather than the applying falling
    ever further behind."""
    while True:
        if follower.ready() and follower.waited() >= BEHIND_S:
            follower.step()
        wait = QUIET_S if follower.ready() else IDLE_WAIT_S
        if not requests.poll(wait):
            if follower.ready():
                follower.step()
            continue
        messages, ending = _waiting_batches(requests)
        if messages:
            _store_batches(store, follower, [pickle.loads(message) for message in messages], replies)
        if ending:
            return


def _waiting_batches(requests: Pipe) -> tuple[list[bytes], bool]:
    """Every batch already in the pipe (several have come while a step ran), and whether the
    receiver is gone or asked to stop after them."""
    messages: list[bytes] = []
    while True:
        try:
            message = requests.recv_bytes()
        except EOFError:
            return messages, True  # the receiver is gone
        if message == STOP:
            return messages, True
        messages.append(message)
        if len(messages) >= MERGED_BATCHES or not requests.poll(0):
            return messages, False


def _store_batches(store: _BatchStore, follower: Follower, batches: list[Any], replies: Pipe) -> None:
    """The batches in one transaction (one sync of the WAL for all of them), each answered."""
    rows = [row for _, batch_rows, _, _ in batches for row in batch_rows]
    problems = [problem for _, _, batch_problems, _ in batches for problem in batch_problems]
    try:
        store.write(rows, problems)
        error = None
    except Exception as exc:  # answered 503: nothing was stored, the sender retries
        error = one_line(exc)
        log.error("receiver: could not store %d deliveries: %s", len(rows), error)
    for seq, _, _, held in batches:
        replies.send_bytes(pickle.dumps((seq, error)))
        if error is None:
            follower.add(held)
