"""Where ingest's prepared chunks come from: a reader process, a feeder thread, or here.

`prepared_chunks` is stage 1 of ingest (see ingest_prepare) as the driver consumes it. Asked for
(`reader_process=True`), a capture file is read, parsed and mapped in a forked reader process on
the second core, up to two chunks ahead; chunks travel as marshal bytes through a widened pipe
(pickle for anything that is not a builtin). A stream that may block (standard input, a pipe)
is read on a feeder thread (see ingest_feed); anything else is prepared here, chunk by chunk.
"""

from __future__ import annotations

import gc
import logging
import marshal
import os
import pickle
import stat
import sys
import threading
import traceback
from collections.abc import Generator, Iterable, Iterator
from datetime import datetime
from typing import Any

from adapters import Adapter
from store.bulk import Codec
from workbench.domain.canonical import MappedEvent, NotCovered
from workbench.domain.statuses import Status
from workbench.domain.taxonomy import Category

from .captures import Capture, CaptureReader
from .ingest_feed import prepared_as_fed
from .ingest_prepare import Problem, SignatureCheckFn, between_batches, prepare, ramped_batches

log = logging.getLogger(__name__)


class ReaderProcessFailed(RuntimeError):
    """The reader process raised; `child_traceback` is its traceback, as text."""

    def __init__(self, message: str, child_traceback: str = "") -> None:
        super().__init__(message)
        self.child_traceback = child_traceback


def prepared_chunks(captures: Iterable[Capture], adapter: Adapter, conversions: Codec, size: int, *,
                    header_key: bytes, reader_process: bool = False,
                    check: SignatureCheckFn | None = None) -> Generator[list[Any], None, None]:
    """Prepared chunks of at most `size` deliveries, in order. An empty chunk is a commit point:
    from a stream, the next chunk waits for input or a second has passed since the last one;
    the caller commits what it holds before asking for more.

    With `reader_process`, a capture file is prepared in a forked reader process (only ask for
    it where forking is safe: no other thread of this process may hold a lock the child needs);
    where one cannot be used, preparing falls back to this process and says why at debug level."""
    if reader_process:
        reader, why_not = _reader_for_process(captures)
        if reader is not None:
            log.debug("ingest: preparing %s in a reader process", getattr(reader.stream, "name", "the file"))
            yield from _prepared_by_reader_process(reader, adapter, conversions, header_key, size, check)
            return
        log.debug("ingest: no reader process (%s); preparing in this process", why_not)
    if _may_block(captures):
        yield from prepared_as_fed(captures, adapter, conversions, header_key, size, check)
        return
    # Ramped as in the reader process, so both make the same chunks (and the same rows).
    for chunk in ramped_batches(iter(captures), size):
        yield prepare(adapter, conversions, chunk, header_key, check)


def _regular_file(captures: Iterable[Capture]) -> int | None:
    """The descriptor of the regular file `captures` reads, if it is a CaptureReader of one."""
    if not isinstance(captures, CaptureReader):
        return None
    try:
        descriptor = captures.stream.fileno()
        return descriptor if stat.S_ISREG(os.fstat(descriptor).st_mode) else None
    except (AttributeError, OSError, ValueError):  # no descriptor (an in-memory stream)
        return None


def _may_block(captures: Iterable[Capture]) -> bool:
    # A capture stream over a pipe, a terminal or a socket: its writer decides when more comes.
    if not isinstance(captures, CaptureReader) or _regular_file(captures) is not None:
        return False
    try:
        captures.stream.fileno()
    except (AttributeError, OSError, ValueError):
        return False  # in memory: never waits
    return True


def _reader_for_process(captures: Iterable[Capture]) -> tuple[CaptureReader | None, str]:
    """The capture file to prepare in a reader process, or None and why it cannot be."""
    if not isinstance(captures, CaptureReader):
        return None, "the input is not a capture file"
    # fork() is safe on Linux only (macOS frameworks may not survive it).
    if not sys.platform.startswith("linux"):
        return None, f"fork() is not safe on {sys.platform}"
    if (os.cpu_count() or 1) < 2:
        return None, "one CPU core: a second process would only take turns with this one"
    descriptor = _regular_file(captures)
    if descriptor is None:
        return None, "the input is not a regular file: it is read as it arrives"
    if descriptor == 0:
        return None, "the input is standard input, which multiprocessing closes in the child"
    return captures, ""


def _prepared_by_reader_process(reader: CaptureReader, adapter: Adapter, conversions: Codec, header_key: bytes,
                                size: int, check: SignatureCheckFn | None) -> Iterator[list[Any]]:
    """Chunks prepared in a forked reader process; its error, if it fails, raised here as
    ReaderProcessFailed (after the chunks it sent before). The caller must not run other
    threads that may hold a lock at the moment of the fork (the child would wait for it
    forever): workbench ingest forks before its first batch, with no other thread yet."""
    import multiprocessing

    context = multiprocessing.get_context("fork")
    receiving, sending = context.Pipe(duplex=False)
    _widen_pipe(sending)
    process = context.Process(target=_reader_main,
                              args=(reader, adapter, conversions, header_key, size, check, sending, receiving),
                              name="ingest-reader", daemon=True)
    process.start()
    sending.close()
    try:
        while True:
            try:
                message = receiving.recv_bytes()
            except EOFError:
                raise ReaderProcessFailed(f"the ingest reader process ended unexpectedly "
                                          f"(exit code {process.exitcode})") from None
            kind = message[:1]
            if kind == _DONE:
                reader.bad_lines.extend(pickle.loads(memoryview(message)[1:]))
                return
            if kind == _ERROR:
                name, text, child_traceback = pickle.loads(memoryview(message)[1:])
                raise ReaderProcessFailed(f"the ingest reader process failed: {name}: {text}", child_traceback)
            yield _unship(message)
            del message
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


def _reader_main(reader: CaptureReader, adapter: Adapter, conversions: Codec, header_key: bytes, size: int,
                 check: SignatureCheckFn | None, sending: Any, receiving: Any) -> None:
    """In the reader process: read, prepare and send batches until the file ends. A sender
    thread writes each batch to the pipe while the next is prepared, so this runs up to two
    batches ahead of the ingesting process (and memory stays bounded by that). If the
    ingesting process dies, its end of the pipe closes and the next send ends this one."""
    import queue

    receiving.close()  # the copy forked with us: only the ingesting process may hold it open
    # Everything inherited belongs to the ingesting process, its database connections above
    # all: no collection here may finalize any of it (a finalized connection would talk to the
    # database over the parent's socket). Only this process's own garbage is collected: once
    # per chunk, at between_batches() (this process does nothing else: the pause lasts its life).
    gc.freeze()
    gc.disable()

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
        for batch in ramped_batches(iter(reader), size):
            if failed.is_set():
                return
            prepared = prepare(adapter, conversions, batch, header_key, check)
            del batch
            message = _ship(prepared)
            del prepared
            outbox.put(message)
            del message
            between_batches()
        outbox.put(_DONE + pickle.dumps(reader.bad_lines[bad_before:]))
    except BaseException as exc:  # reported to the ingesting process, as text (always picklable)
        outbox.put(_ERROR + pickle.dumps((type(exc).__name__, str(exc), "".join(traceback.format_exception(exc)))))
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
    """A prepared batch as bytes: a kind byte, then the batch. marshal (builtin types only) is
    several times cheaper than pickle both ways, so results and times travel as plain tuples
    and strings; a batch holding anything else (a PostgreSQL naive datetime, an adapter's own
    types) goes pickled."""
    times: dict[Any, str] = {}
    try:
        shipped = []
        for head, result, event_time, secret in prepared:
            kind = type(result)
            if kind is MappedEvent:
                status = result.status
                if status is not None and type(status) is not Status:
                    raise _Unshippable
                result = ("M", result.kind, result.external_id, result.provider_status,
                          None if status is None else str(status), result.fields, result.mapping_version)
            elif kind is NotCovered:
                result = ("N", result.reason)
            elif kind is Problem:
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
            shipped.append((head, result, event_time, secret))
        return _BATCH + marshal.dumps(shipped)
    except (_Unshippable, ValueError):
        return _PICKLED_BATCH + pickle.dumps(prepared, protocol=pickle.HIGHEST_PROTOCOL)


def _unship(message: bytes) -> list[Any]:
    """A prepared batch from `_ship`'s bytes."""
    payload = memoryview(message)[1:]
    if message[:1] == _PICKLED_BATCH:
        pickled: list[Any] = pickle.loads(payload)
        return pickled
    times: dict[str, datetime] = {}
    statuses = _STATUSES
    prepared: list[Any] = []
    append = prepared.append
    for head, result, event_time, secret in marshal.loads(payload):
        tag = result[0]
        if tag == "M":
            status = result[4]
            result = MappedEvent(result[1], result[2], result[3],
                                 None if status is None else statuses.get(status) or Status(status),
                                 result[5], result[6])
        elif tag == "N":
            result = NotCovered(result[1])
        else:
            result = Problem(Category(result[1]), result[2], result[3])
        if event_time is not None:
            moment = times.get(event_time)
            if moment is None:
                moment = times[event_time] = datetime.fromisoformat(event_time)
            event_time = moment
        append((head, result, event_time, secret))
    return prepared
