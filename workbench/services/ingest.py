"""The ingest pipeline, the same for every source (file, webhook, poll, replay).

Per batch, in one transaction: capture raw bytes and headers first (nothing that follows can
stop them being stored), parse, identify the event (provider ID or payload hash), drop
duplicates, map, order against the record's watermark, apply through the state machine, and
write everything in bulk. A batch commits whole or not at all, so a process killed half-way
leaves every delivery either fully ingested or not at all, and a re-run completes the rest.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

from sqlalchemy import Connection, select
from sqlalchemy.exc import IntegrityError, OperationalError

from store.bulk import insert_rows
from store.database import writing
from store.models import Delivery
from workbench.domain.canonical import BoundaryProblem, NotCovered, ParsedEvent, Verdict
from workbench.domain.redaction import MASK, is_sensitive_key
from workbench.domain.taxonomy import Category

from .beliefs import CHUNK, BeliefBook, ConcurrentChange, Outcome
from .captures import Capture
from .connections import ConnectionInfo, get_connection
from .context import ServiceContext

log = logging.getLogger(__name__)

deliveries = Delivery.__table__

DEFAULT_BATCH = 5000
MAX_BATCH_TRIES = 5


@dataclass
class IngestReport:
    counts: Counter[str] = field(default_factory=Counter)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def add(self, other: Counter[str]) -> None:
        self.counts.update(other)


@dataclass(slots=True)
class _Pending:
    """One delivery on its way through the pipeline."""

    row: dict[str, Any]
    parsed: ParsedEvent | None = None
    problem: BoundaryProblem | None = None


def stored_headers(headers: dict[str, str]) -> dict[str, str]:
    """Headers as stored: credentials a sender put in headers never rest in plain text; a hash
    keeps them comparable. Everything else (signatures included) is kept as received."""
    if not any(map(is_sensitive_key, headers)):
        return headers
    return {
        k: f"{MASK} sha256:{hashlib.sha256(v.encode()).hexdigest()[:16]}" if is_sensitive_key(k) else v
        for k, v in headers.items()
    }


def ingest(
    ctx: ServiceContext,
    connection_name: str,
    captures: Iterable[Capture],
    *,
    batch_size: int = DEFAULT_BATCH,
    progress: Callable[[IngestReport], None] | None = None,
) -> IngestReport:
    """Ingest captures into a connection; returns counts per verdict."""
    connection = get_connection(ctx, connection_name)
    adapter = ctx.adapters.get(connection.provider)
    report = IngestReport()
    for batch in _batches(iter(captures), batch_size):
        report.add(_ingest_batch(ctx, connection, adapter, batch))
        if progress:
            progress(report)
    return report


def _batches(items: Iterator[Capture], size: int) -> Iterator[list[Capture]]:
    while batch := list(islice(items, size)):
        yield batch


def _ingest_batch(ctx: ServiceContext, connection: ConnectionInfo, adapter: Any, batch: list[Capture]) -> Counter[str]:
    # A unique-constraint or version-guard conflict means another writer got there first:
    # redo the whole batch, which now sees that writer's rows (as duplicates or newer beliefs).
    for attempt in range(1, MAX_BATCH_TRIES + 1):
        try:
            with writing(ctx.engine) as conn:
                return process_batch(conn, ctx, connection, adapter, batch)
        except (IntegrityError, ConcurrentChange, OperationalError) as exc:
            if attempt == MAX_BATCH_TRIES or (isinstance(exc, OperationalError) and "locked" not in str(exc)):
                raise
            log.info("ingest batch conflicted with another writer (%s); retrying", type(exc).__name__)
    raise AssertionError("unreachable")


def capture_row(ctx: ServiceContext, connection_id: str, capture: Capture) -> dict[str, Any]:
    """The raw row: bytes and headers exactly as received, before any interpretation."""
    return {
        "id": ctx.ids.new("dlv"), "connection_id": connection_id, "source": capture.source,
        "received_at": capture.received_at, "headers": stored_headers(capture.headers),
        "body": capture.body, "payload_hash": hashlib.sha256(capture.body).hexdigest(),
        "provider_event_id": None, "dedupe_key": None, "event_type": None, "occurred_at": None,
        "signature_verdict": "unchecked", "verdict": None, "verdict_reason": None, "record_id": None,
        "mapping_version": None, "duplicate_of": None, "replay_of": None,
    }


def process_batch(conn: Connection, ctx: ServiceContext, connection: ConnectionInfo, adapter: Any,
                  batch: list[Capture], *, replay_of: list[str | None] | None = None) -> Counter[str]:
    pending = [_Pending(capture_row(ctx, connection.id, c)) for c in batch]
    for item in pending:
        _parse(adapter, item)
    if replay_of is None:
        _mark_duplicates(conn, connection.id, pending)
    else:
        for item, original in zip(pending, replay_of):
            # A replayed copy points at its original, which keeps the event's dedupe key.
            item.row.update(replay_of=original, dedupe_key=None)

    book = BeliefBook(ctx, connection.id, connection.provider)
    mapped_items = _map_all(adapter, pending)
    book.load(conn, {(m.kind, m.external_id) for _, m in mapped_items})
    for item, mapped in mapped_items:
        row, parsed = item.row, item.parsed
        assert parsed is not None
        event_time = parsed.occurred_at or row["received_at"]
        row["mapping_version"] = mapped.mapping_version
        outcome = book.apply(mapped, event_time, parsed.provider_event_id or row["payload_hash"],
                             delivery_id=row["id"])
        _settle(row, outcome)
    for item in pending:
        if item.row["verdict"] is None:  # the parse or mapping problem of an undecided delivery
            problem = item.problem or BoundaryProblem(Category.UNKNOWN, "no_verdict", "no verdict reached")
            item.row["verdict"] = Verdict.INVALID if problem.category in (
                Category.VALIDATION, Category.CONTRACT_MISMATCH) else Verdict.FAILED
            item.row["verdict_reason"] = problem.message
            book.open_failure(problem.category, problem.code, problem.message, delivery_id=item.row["id"])

    # Raw rows go in before anything derived from them.
    insert_rows(conn, deliveries, [item.row for item in pending])
    book.flush(conn)
    return Counter(str(item.row["verdict"]) for item in pending)


def _parse(adapter: Any, item: _Pending) -> None:
    try:
        item.parsed = adapter.parse(item.row["body"])
    except BoundaryProblem as problem:
        item.problem = problem
        item.row["dedupe_key"] = "sha256:" + item.row["payload_hash"]
        return
    except Exception as exc:  # an adapter bug must never cost us the raw delivery
        item.problem = BoundaryProblem(Category.UNKNOWN, f"parse_crash:{type(exc).__name__}", f"parser crashed: {exc!r}")
        item.row["dedupe_key"] = "sha256:" + item.row["payload_hash"]
        return
    parsed = item.parsed
    item.row.update(
        provider_event_id=parsed.provider_event_id, event_type=parsed.event_type, occurred_at=parsed.occurred_at,
        dedupe_key=parsed.provider_event_id or "sha256:" + item.row["payload_hash"],
    )


def _mark_duplicates(conn: Connection, connection_id: str, pending: list[_Pending]) -> None:
    keys = list({item.row["dedupe_key"] for item in pending})
    originals: dict[str, str] = {}
    for start in range(0, len(keys), CHUNK):
        chunk = keys[start:start + CHUNK]
        rows = conn.execute(select(deliveries.c.dedupe_key, deliveries.c.id)
                            .where(deliveries.c.connection_id == connection_id, deliveries.c.dedupe_key.in_(chunk)))
        originals.update({key: delivery_id for key, delivery_id in rows})
    for item in pending:
        key = item.row["dedupe_key"]
        if key in originals:
            item.row.update(dedupe_key=None, duplicate_of=originals[key], verdict=Verdict.DUPLICATE,
                            verdict_reason=f"already received as {originals[key]}")
            item.parsed = None
            item.problem = None
        else:
            originals[key] = item.row["id"]


def _map_all(adapter: Any, pending: list[_Pending]) -> list[tuple[_Pending, Any]]:
    mapped_items = []
    for item in pending:
        if item.parsed is None:
            continue
        try:
            mapped = adapter.map(item.parsed)
        except BoundaryProblem as problem:
            item.problem = problem
            continue
        except Exception as exc:  # a mapping bug: keep the delivery, open a mapping failure
            item.problem = BoundaryProblem(Category.MAPPING_FAILURE, f"mapping_crash:{type(exc).__name__}",
                                           f"mapping crashed: {exc!r}")
            continue
        if isinstance(mapped, NotCovered):
            item.row.update(verdict=Verdict.IGNORED, verdict_reason=mapped.reason,
                            mapping_version=getattr(adapter, "mapping_version", None))
            continue
        mapped_items.append((item, mapped))
    return mapped_items


def _settle(row: dict[str, Any], outcome: Outcome) -> None:
    row.update(verdict=outcome.verdict, verdict_reason=outcome.reason, record_id=outcome.record_id)
