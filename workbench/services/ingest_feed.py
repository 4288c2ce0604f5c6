"""Captures that arrive over time (standard input, a pipe, a socket), read on a thread.

Reading such a stream blocks until its writer sends more; ingest must never do that with a
batch's transaction open (on SQLite it holds the write lock). A feeder thread reads captures
into a bounded buffer; the ingesting thread takes whatever has arrived, and before it waits
for more it commits what it holds. While input keeps coming it commits at least every
COMMIT_EVERY_S, so readers see a stream's deliveries within about a second whatever its pace.
"""

from __future__ import annotations

import threading
from collections.abc import Generator, Iterable
from time import monotonic
from typing import Any

from adapters import Adapter
from store.bulk import Codec

from .captures import Capture
from .ingest_prepare import SignatureCheckFn, prepare

COMMIT_EVERY_S = 1.0


class CaptureFeed:
    """Captures read from `captures` on a thread, at most `limit` of them waiting."""

    def __init__(self, captures: Iterable[Capture], limit: int) -> None:
        self._captures = captures
        self._limit = limit
        self._arrived: list[Capture] = []
        self._changed = threading.Condition()
        self._ended = False
        self._closed = False
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._feed, name="ingest-feed", daemon=True)
        self._thread.start()

    def _feed(self) -> None:
        changed = self._changed
        try:
            for capture in self._captures:
                with changed:
                    while len(self._arrived) >= self._limit and not self._closed:
                        changed.wait()
                    if self._closed:
                        return
                    self._arrived.append(capture)
                    if len(self._arrived) == 1:
                        changed.notify_all()  # the taker may be waiting for the first
        except BaseException as exc:  # raised by take() in the ingesting thread
            self._error = exc
        finally:
            with changed:
                self._ended = True
                changed.notify_all()

    def take(self, size: int, *, wait: bool) -> list[Capture] | None:
        """Up to `size` captures that have arrived; if none has, [] (or, with `wait`, the
        first to arrive); None once the input has ended and everything was taken."""
        with self._changed:
            if wait:
                while not self._arrived and not self._ended:
                    self._changed.wait()
            arrived = self._arrived
            if not arrived:
                if self._ended:
                    if self._error is not None:
                        raise self._error
                    return None
                return []
            if len(arrived) <= size:
                self._arrived = []
            else:
                arrived, self._arrived = arrived[:size], arrived[size:]
            self._changed.notify_all()  # room for the feeder
            return arrived

    def close(self) -> None:
        """Stop feeding (the thread ends after the read under way, if one blocks)."""
        with self._changed:
            self._closed = True
            self._changed.notify_all()


def prepared_as_fed(captures: Iterable[Capture], adapter: Adapter, conversions: Codec, header_key: bytes,
                    size: int, check: SignatureCheckFn | None = None) -> Generator[list[Any], None, None]:
    """Prepared chunks of what has arrived; an empty chunk (a commit point) before waiting for
    more input, and after COMMIT_EVERY_S of chunks without one."""
    feed = CaptureFeed(captures, 2 * size)
    since_commit: float | None = None  # when the first chunk since the last commit point went
    try:
        while True:
            if since_commit is not None and monotonic() - since_commit >= COMMIT_EVERY_S:
                since_commit = None
                yield []  # input keeps coming, slower than it is stored: commit now and then
            chunk = feed.take(size, wait=False)
            if chunk == []:
                if since_commit is not None:
                    since_commit = None
                    yield []  # nothing has arrived: the caller commits what it holds
                chunk = feed.take(size, wait=True)
            if chunk is None:
                return
            if since_commit is None:
                since_commit = monotonic()
            yield prepare(adapter, conversions, chunk, header_key, check)
            del chunk
    finally:
        feed.close()
