"""Stage 1 of ingest: everything about a delivery that does not depend on the store.

Hashing, the headers as stored, parsing and mapping. Pure, so it can run in another process
(see ingest_reader) and be stored again unchanged when a batch must be retried. Also how
captures are cut into chunks, and the collector's pause while a batch is stored.
"""

from __future__ import annotations

import gc
import hashlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from itertools import islice
from typing import Any

from adapters import Adapter
from store.bulk import Codec, memoised
from workbench.domain.canonical import BoundaryProblem
from workbench.domain.redaction import MASK, is_sensitive_key
from workbench.domain.taxonomy import Category

from .captures import Capture


def stored_headers(headers: dict[str, str]) -> dict[str, str]:
    """Headers as stored: credentials a sender put in headers never rest in plain text; a hash
    keeps them comparable. Everything else (signatures included) is kept as received."""
    if not any(map(is_sensitive_key, headers)):
        return headers
    return {
        k: f"{MASK} sha256:{hashlib.sha256(v.encode()).hexdigest()[:16]}" if is_sensitive_key(k) else v
        for k, v in headers.items()
    }


# Pauses of the collector under way (ingests in several threads may overlap) and whether it
# ran before the first of them.
_pause_lock = threading.Lock()
_pauses = 0
_enabled_before = False


@contextmanager
def collecting_between_batches() -> Iterator[None]:
    """The cyclic GC paused for one batch, and set back as it was when the batch ends, however
    it ends (a collector that was off stays off). Ingest's allocations would otherwise start it
    hundreds of times per batch (a fifth of ingest's time: each run traverses every live row,
    and full runs all the libraries' hundreds of thousands of objects too); `between_batches()`
    collects once instead, when hardly anything is alive. Ingest makes no reference cycles of
    its own, so this only changes when garbage is found, not whether.

    The pause is process-wide: while a batch is stored, other threads (a receiver's event loop,
    the TUI) run without cyclic collection too. That is acceptable because it is bounded (one
    batch: `batch_size` deliveries, about a second at full speed; from a stream, at most about
    a second, see ingest_feed) and loses nothing: reference counting still frees everything
    acyclic at once, and cycles made meanwhile are collected after the pause."""
    global _pauses, _enabled_before
    with _pause_lock:
        if _pauses == 0:
            _enabled_before = gc.isenabled()
            gc.disable()
        _pauses += 1
    try:
        yield
    finally:
        with _pause_lock:
            _pauses -= 1
            if _pauses == 0 and _enabled_before:
                gc.enable()


def between_batches() -> None:
    gc.collect(1)  # the young generations: this batch's leftovers, if any made a cycle


def batches(items: Iterator[Capture], size: int) -> Iterator[list[Capture]]:
    while batch := list(islice(items, size)):
        yield batch


def ramped_batches(items: Iterator[Capture], size: int) -> Iterator[list[Capture]]:
    # A small first batch, so the ingesting process starts storing sooner.
    first = list(islice(items, max(1, size // 10)))
    if first:
        yield first
        yield from batches(items, size)


# A prepared delivery is a tuple (head, result, event time): `head` holds the deliveries
# columns from `source` to `occurred_at` (DELIVERY_COLUMNS[2:11]) in the driver's form;
# `result` is what mapping made of it (a MappedEvent, NotCovered or a Problem); the event
# time (occurrence, else receipt) orders it against its record's other events.
DELIVERY_COLUMNS = ("id", "connection_id", "source", "received_at", "headers", "body", "payload_hash",
                    "provider_event_id", "dedupe_key", "event_type", "occurred_at", "signature_verdict",
                    "verdict", "verdict_reason", "record_id", "mapping_version", "duplicate_of", "replay_of")
(COL_ID, COL_CONNECTION, COL_SOURCE, COL_RECEIVED, COL_HEADERS, COL_BODY, COL_HASH, COL_EVENT_ID, COL_DEDUPE, COL_TYPE,
 COL_OCCURRED, COL_SIGNATURE, COL_VERDICT, COL_REASON, COL_RECORD, COL_MAPPING, COL_DUPLICATE_OF,
 COL_REPLAY_OF) = range(len(DELIVERY_COLUMNS))


@dataclass(frozen=True, slots=True)
class Problem:
    """Why a delivery could not be parsed or mapped: the BoundaryProblem's content, without the
    exception, whose traceback would keep the whole batch alive until a full collection."""

    category: Category
    code: str
    message: str


NO_VERDICT = Problem(Category.UNKNOWN, "no_verdict", "no verdict reached")
INVALID_CATEGORIES = (Category.VALIDATION, Category.CONTRACT_MISMATCH)
def _has_sensitive_headers(headers: dict[str, str]) -> bool:
    return _any_sensitive(tuple(headers))


@lru_cache(maxsize=1024)
def _any_sensitive(names: tuple[str, ...]) -> bool:
    # Senders repeat the same header names: each set of names is checked once.
    return any(map(is_sensitive_key, names))


def prepare(adapter: Adapter, conversions: Codec, batch: list[Capture]) -> list[Any]:
    """Capture, parse and map each delivery: everything that does not depend on the store.
    Mapping runs before the duplicate check (it is pure: a duplicate's result is dropped
    later), so each parsed payload is freed at once."""
    to_datetime, to_json = conversions.datetime, conversions.json
    occurred_datetime = memoised(to_datetime)  # neighbouring events share their second
    sha256, sensitive = hashlib.sha256, _has_sensitive_headers
    parse, map_event = adapter.parse, adapter.map
    prepared: list[Any] = []
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
                     None, None), Problem(problem.category, problem.code, problem.message), None))
            continue
        except Exception as exc:  # an adapter bug must never cost us the raw delivery
            append(((capture.source, received, headers_text, body, payload_hash, None, "sha256:" + payload_hash,
                     None, None), Problem(Category.UNKNOWN, f"parse_crash:{type(exc).__name__}",
                                           f"parser crashed: {exc!r}"), None))
            continue
        event_id, occurred_at = parsed.provider_event_id, parsed.occurred_at
        try:
            result: Any = map_event(parsed)
        except BoundaryProblem as problem:
            result = Problem(problem.category, problem.code, problem.message)
        except Exception as exc:  # a mapping bug: keep the delivery, open a mapping failure
            result = Problem(Category.MAPPING_FAILURE, f"mapping_crash:{type(exc).__name__}",
                              f"mapping crashed: {exc!r}")
        append(((capture.source, received, headers_text, body, payload_hash, event_id,
                 event_id or "sha256:" + payload_hash, parsed.event_type, occurred_datetime(occurred_at)),
                result, occurred_at or capture.received_at))
    return prepared
