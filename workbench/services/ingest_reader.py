"""Preparing a capture file in a reader process on the second core.

The ingesting process stores (stage 2) while a forked reader reads, parses and maps (stage 1)
up to two chunks ahead; chunks travel as marshal bytes through a widened pipe.
"""

from __future__ import annotations

import gc
import marshal
import os
import pickle
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
from .ingest_prepare import Problem, batches, between_batches, prepare, ramped_batches

# Set WORKBENCH_INGEST_READER=0 to read and prepare capture files in the ingesting process.
READER_PROCESS_ENV = "WORKBENCH_INGEST_READER"


def prepared_batches(captures: Iterable[Capture], adapter: Adapter, conversions: Codec,
                      size: int) -> Generator[list[Any], None, None]:
    """Prepared batches, in order: from a reader process when `captures` is a capture file
    (and this process can fork safely), else prepared here."""
    reader = _forkable_reader(captures)
    if reader is not None:
        yield from _prepared_by_reader_process(reader, adapter, conversions, size)
        return
    for batch in batches(iter(captures), size):
        yield prepare(adapter, conversions, batch)


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


def _prepared_by_reader_process(reader: CaptureReader, adapter: Adapter, conversions: Codec,
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
                yield _unship(payload.tobytes())
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


def _reader_main(reader: CaptureReader, adapter: Adapter, conversions: Codec, size: int, sending: Any,
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
        for batch in ramped_batches(iter(reader), size):
            if failed.is_set():
                return
            prepared = prepare(adapter, conversions, batch)
            del batch
            message = _ship(prepared)
            del prepared
            outbox.put(message)
            del message
            between_batches()
        outbox.put(_DONE + pickle.dumps(reader.bad_lines[bad_before:]))
    except BaseException as exc:  # reported to the ingesting process
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
            shipped.append((head, result, event_time))
        return _BATCH + marshal.dumps(shipped)
    except (_Unshippable, ValueError):
        return _PICKLED_BATCH + pickle.dumps(prepared, protocol=pickle.HIGHEST_PROTOCOL)


def _unship(payload: bytes) -> list[Any]:
    times: dict[str, datetime] = {}
    statuses = _STATUSES
    prepared: list[Any] = []
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
            result = Problem(Category(result[1]), result[2], result[3])
        if event_time is not None:
            moment = times.get(event_time)
            if moment is None:
                moment = times[event_time] = datetime.fromisoformat(event_time)
            event_time = moment
        append((head, result, event_time))
    return prepared
