"""Stage 1 of ingest: everything about a delivery that does not depend on the store.

Hashing, the headers as stored, parsing and mapping. Pure, so it can run in another process
(see ingest_reader) and be stored again unchanged when a batch must be retried. Also how
captures are cut into chunks, and the collector's pause while a batch is stored.
"""

from __future__ import annotations

import gc
import hashlib
import hmac
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from itertools import islice, repeat
from typing import Any

from adapters import Adapter
from adapters.protocol import SignatureCheck
from store.bulk import Codec, Converter, memoised
from workbench.domain.canonical import BoundaryProblem, MappedEvent
from workbench.domain.redaction import MASK, is_sensitive_key
from workbench.domain.taxonomy import Category

from .captures import Capture, Headers


def stored_headers(headers: Headers, key: bytes) -> Headers:
    """Headers as stored: credentials a sender put in headers never rest in plain text; a keyed
    MAC (HMAC-SHA256 under `key`, see header_mac) keeps them comparable without letting the
    store confirm a guessed token. Everything else (signatures included) is kept as received,
    repeated headers too (as `[name, value]` pairs, in order). Storing stored headers again
    changes nothing, so a stored delivery re-run through ingest (retry, resume) keeps its
    headers (and so do those stored under the old unkeyed hash)."""
    if isinstance(headers, dict):
        if not any(map(is_sensitive_key, headers)):
            return headers
        return {k: _masked(v, key) if is_sensitive_key(k) else v for k, v in headers.items()}
    return [[k, _masked(v, key) if is_sensitive_key(k) else v] for k, v in headers]


MAC_PREFIX = f"{MASK} hmac-sha256:"
_STORED_FORMS = (MAC_PREFIX, f"{MASK} sha256:")  # the second: stored before the keyed MAC


def _masked(value: str, key: bytes) -> str:
    if value.startswith(_STORED_FORMS):
        return value  # already the stored form
    mac = hmac.new(key, value.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()[:32]
    return f"{MAC_PREFIX}{mac}"


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


# A capture's stored form, made where it was received (the webhook receiver): its receipt time
# in the driver's form, its headers as stored (JSON text), its body's SHA-256 and its capture
# key, exactly as prepare would make them from the capture.
Head = tuple[Any, str, str, str]

# A prepared delivery is a tuple (head, result, event time, secret): `head` holds the deliveries
# columns from `source` to `signature_verdict` (DELIVERY_COLUMNS[2:13]) in the driver's form;
# `result` is what mapping made of it (a MappedEvent, NotCovered or a Problem); the event
# time (occurrence, else receipt) orders it against its record's other events; `secret` is the
# name of the secret that verified it or was tried (`signature_secret`, the last column).
DELIVERY_COLUMNS = ("id", "connection_id", "source", "received_at", "headers", "body", "payload_hash",
                    "provider_event_id", "dedupe_key", "event_type", "occurred_at", "capture_key",
                    "signature_verdict", "verdict", "verdict_reason", "record_id", "mapping_version",
                    "duplicate_of", "replay_of", "body_key_version", "signature_secret")
(COL_ID, COL_CONNECTION, COL_SOURCE, COL_RECEIVED, COL_HEADERS, COL_BODY, COL_HASH, COL_EVENT_ID, COL_DEDUPE, COL_TYPE,
 COL_OCCURRED, COL_CAPTURE_KEY, COL_SIGNATURE, COL_VERDICT, COL_REASON, COL_RECORD, COL_MAPPING, COL_DUPLICATE_OF,
 COL_REPLAY_OF, COL_KEY_VERSION, COL_SIGNATURE_SECRET) = range(len(DELIVERY_COLUMNS))

# Provider identifiers longer than their columns hold, or holding NUL (which PostgreSQL text
# refuses), are kept only in the raw body: the delivery is flagged instead of failing its batch,
# the same on every backend.
IDENTIFIER_LIMIT = 255  # deliveries' provider_event_id, dedupe_key, event_type; external_id; last_event_key

# A capture line's key: its receipt time (microseconds since 0001-01-01 UTC, 15 hex digits) and
# a hash of its body and stored headers (17 hex digits). The same line always gets the same key,
# so a re-run of a capture file recognises what it already stored; led by the time, keys of a
# file's lines sort as they arrive, so the unique index grows at its end like a time-ordered ID.
_EPOCH = datetime(1, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_UNIX_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_UNIX_EPOCH_MICROS = (_UNIX_EPOCH - _EPOCH) // _MICROSECOND


@dataclass(frozen=True, slots=True)
class Problem:
    """Why a delivery could not be parsed or mapped: the BoundaryProblem's content, without the
    exception, whose traceback would keep the whole batch alive until a full collection."""

    category: Category
    code: str
    message: str


NO_VERDICT = Problem(Category.UNKNOWN, "no_verdict", "no verdict reached")
# A delivery whose signature failed: stored, verdict `rejected`, never parsed, deduplicated or
# applied (a forged copy must not claim a genuine event's dedupe key).
SIGNATURE_FAILED = "signature_failed"
SIGNATURE_CATEGORY = Category.AUTHENTICATION
SignatureCheckFn = Callable[[Capture], SignatureCheck]


def signature_problem(result: SignatureCheck) -> Problem:
    """The failure of a signature check, in one line: which secret was tried and why, no value."""
    tried = f" (secret {result.secret})" if result.secret else ""
    return Problem(SIGNATURE_CATEGORY, SIGNATURE_FAILED, f"signature check failed{tried}: {result.reason or 'no reason'}")
INVALID_CATEGORIES = (Category.VALIDATION, Category.CONTRACT_MISMATCH)


def _has_sensitive_headers(headers: Headers) -> bool:
    if type(headers) is not dict:
        return True  # header pairs (repeats: rare) always take the general path
    return _any_sensitive(tuple(headers))


@lru_cache(maxsize=1024)
def _any_sensitive(names: tuple[str, ...]) -> bool:
    # Senders repeat the same header names: each set of names is checked once.
    return any(map(is_sensitive_key, names))


def credentials_masked(headers: Headers, header_key: bytes) -> Headers:
    """`headers` as stored_headers keeps them, through a check cached per set of names: the
    receiver's spool gets them so (no credential at rest in plain text, even there), and doing
    it again when the stored form is made changes nothing."""
    return stored_headers(headers, header_key) if _has_sensitive_headers(headers) else headers


def stored_form(received_at: datetime, headers: Headers, body: bytes, header_key: bytes,
                to_datetime: Converter, to_json: Converter) -> Head:
    """A capture's Head: what is stored of it before parsing (its receipt time in the form
    `to_datetime` makes, its headers as stored, its body's hash, its capture key). One
    function for `prepare` and the webhook receiver: the receiver's heads are used as they
    are when its deliveries are applied, so the two must never differ."""
    return stored_form_of((received_at - _UNIX_EPOCH) // _MICROSECOND, to_datetime(received_at), headers, body,
                          header_key, to_json)


def stored_form_of(unix_micros: int, received: Any, headers: Headers, body: bytes, header_key: bytes,
                   to_json: Converter) -> Head:
    """`stored_form` of a receipt time given as microseconds since 1970 (UTC) and already in
    the form stored (`received`): how the webhook receiver's raw rows keep it, so the applier
    makes their stored form without a datetime in between."""
    payload_hash = hashlib.sha256(body).hexdigest()
    headers_text = to_json(credentials_masked(headers, header_key))
    capture_key = f"{unix_micros + _UNIX_EPOCH_MICROS:015x}" + hashlib.blake2b(
        f"{payload_hash} {headers_text}".encode("utf-8", "surrogatepass"), digest_size=9).hexdigest()[:17]
    return received, headers_text, payload_hash, capture_key


@dataclass(frozen=True, slots=True)
class Unmapped:
    """A parsed payload whose mapping waits for the duplicate check (see `prepare`)."""

    parsed: Any


def prepare(adapter: Adapter, conversions: Codec, batch: Sequence[Capture], header_key: bytes,
            check: SignatureCheckFn | None = None, heads: Sequence[Head] | None = None, *,
            map_later: bool = False) -> list[Any]:
    """Capture, parse and map each delivery: everything that does not depend on the store
    (`header_key`: what credential headers are stored under, see header_mac; `check`: the
    connection's signature check, None when it has nothing to check with; `heads`: each
    capture's stored form where it was made already, see Head).
    Mapping runs before the duplicate check (it is pure: a duplicate's result is dropped
    later), so each parsed payload is freed at once; with `map_later` (the prepared batch
    stays in this process, in memory) a result is left Unmapped, for `finish_mapping` to finish once
    the delivery is known not to be a duplicate: most of a redelivered batch is never mapped."""
    to_datetime, to_json = conversions.datetime, conversions.json
    occurred_datetime = memoised(to_datetime)  # neighbouring events share their second
    parse, map_event = adapter.parse, adapter.map
    limit, nul = IDENTIFIER_LIMIT, "\x00"
    prepared: list[Any] = []
    append = prepared.append
    for capture, head in zip(batch, heads or repeat(None)):
        body = capture.body
        received, headers_text, payload_hash, capture_key = head or stored_form(
            capture.received_at, capture.headers, body, header_key, to_datetime, to_json)
        signature, secret = "unchecked", None
        if check is not None:
            checked = check(capture)
            signature, secret = checked.verdict, checked.secret
            if signature == "failed":
                append(((capture.source, received, headers_text, body, payload_hash, None, None, None, None,
                         capture_key, signature), signature_problem(checked), None, secret))
                continue
        try:
            parsed = parse(body)
        except BoundaryProblem as problem:
            append(((capture.source, received, headers_text, body, payload_hash, None, "sha256:" + payload_hash,
                     None, None, capture_key, signature), Problem(problem.category, problem.code, problem.message), None,
                    secret))
            continue
        except Exception as exc:  # an adapter bug must never cost us the raw delivery
            append(((capture.source, received, headers_text, body, payload_hash, None, "sha256:" + payload_hash,
                     None, None, capture_key, signature), Problem(Category.UNKNOWN, f"parse_crash:{type(exc).__name__}",
                                                                  f"parser crashed: {exc!r}"), None, secret))
            continue
        event_id, event_type, occurred_at = parsed.provider_event_id, parsed.event_type, parsed.occurred_at
        result: Any = Unmapped(parsed) if map_later else _map(map_event, parsed)
        if ((event_id is not None and (len(event_id) > limit or nul in event_id))
                or (event_type is not None and (len(event_type) > limit or nul in event_type))
                or (type(result) is MappedEvent and (len(result.external_id) > limit or nul in result.external_id))):
            unstorable = _unstorable_identifiers(event_id, event_type, result)
            if unstorable is not None:
                if not _storable(event_id):
                    event_id = None  # identified by its payload hash instead
                if not _storable(event_type):
                    event_type = None
                result = unstorable
        append(((capture.source, received, headers_text, body, payload_hash, event_id,
                 event_id or "sha256:" + payload_hash, event_type, occurred_datetime(occurred_at), capture_key, signature),
                result, occurred_at or capture.received_at, secret))
    return prepared


def _map(map_event: Callable[[Any], Any], parsed: Any) -> Any:
    """What mapping makes of a parsed payload: a MappedEvent, NotCovered or a Problem."""
    try:
        return map_event(parsed)
    except BoundaryProblem as problem:
        return Problem(problem.category, problem.code, problem.message)
    except Exception as exc:  # a mapping bug: keep the delivery, open a mapping failure
        return Problem(Category.MAPPING_FAILURE, f"mapping_crash:{type(exc).__name__}", f"mapping crashed: {exc!r}")


def finish_mapping(adapter: Adapter, result: Any) -> Any:
    """A prepared result, mapped now if `prepare` left it Unmapped (its event ID and type were
    checked then; the object ID the mapping makes is checked here)."""
    if type(result) is not Unmapped:
        return result
    done = _map(adapter.map, result.parsed)
    if type(done) is MappedEvent and not _storable(done.external_id):
        return _unstorable_identifiers(None, None, done)
    return done


def _storable(text: str | None) -> bool:
    return text is None or (len(text) <= IDENTIFIER_LIMIT and "\x00" not in text)


def _unstorable_identifiers(event_id: str | None, event_type: str | None, result: Any) -> Problem | None:
    """The problem with a delivery whose identifiers cannot be stored in their columns (None
    when all can): which field, and why. The raw body keeps them in full."""
    external_id = result.external_id if type(result) is MappedEvent else None
    named = (("event id", event_id), ("event type", event_type), ("object id", external_id))
    bad = [(name, text) for name, text in named if text is not None and not _storable(text)]
    if not bad:
        return None
    why = "; ".join(
        f"{name} is {len(text)} characters long (at most {IDENTIFIER_LIMIT} are stored)"
        if len(text) > IDENTIFIER_LIMIT else f"{name} contains a NUL character (\\u0000)"
        for name, text in bad)
    code = "unstorable_identifier:" + ",".join(name.replace(" ", "_") for name, _ in bad)
    return Problem(Category.CONTRACT_MISMATCH, code, f"{why}: kept only in the raw body, not applied")
