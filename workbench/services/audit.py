"""The audit trail: append-only and hash-chained.

Each entry's hash covers the previous entry's hash and the entry's own content, so altering,
deleting or reordering any row breaks the chain at that row, and `verify` names it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO, Any

import orjson
from sqlalchemy import Connection, Engine, select, update

from store.database import reading
from store.models import AuditEntry, AuditHead
from workbench.domain.redaction import redact, redact_text

from .context import ServiceContext

GENESIS_HASH = "0" * 64

entries = AuditEntry.__table__
head = AuditHead.__table__


def _content(seq: int, at: datetime, actor: str, action: str, target_type: str,
             target_id: str | None, before: Any, after: Any, reason: str | None) -> bytes:
    return orjson.dumps(
        {
            "seq": seq, "at": at.isoformat(), "actor": actor, "action": action,
            "target_type": target_type, "target_id": target_id,
            "before": before, "after": after, "reason": reason,
        },
        option=orjson.OPT_SORT_KEYS,
    )


def chain_hash(prev_hash: str, content: bytes) -> str:
    return hashlib.sha256(prev_hash.encode() + b"\n" + content).hexdigest()


def append(
    conn: Connection,
    ctx: ServiceContext,
    action: str,
    target_type: str,
    target_id: str | None,
    *,
    before: Any = None,
    after: Any = None,
    reason: str | None = None,
) -> int:
    """Append one entry inside the caller's transaction. Returns its sequence number.

    Bumping the head row first takes its lock (a row lock on PostgreSQL, the write lock on
    SQLite), so concurrent appenders queue up instead of forking the chain.
    """
    conn.execute(update(head).where(head.c.id == 1).values(seq=head.c.seq + 1))
    seq, prev_hash = conn.execute(select(head.c.seq, head.c.hash).where(head.c.id == 1)).one()
    # In UTC, as the store hands it back to verify (a clock in another zone would otherwise
    # hash "+02:00" now and read back "+00:00": a chain broken by nobody).
    at = ctx.clock().astimezone(UTC)
    # Normalise through JSON so what is hashed now is exactly what verify reads back later.
    before = orjson.loads(orjson.dumps(before)) if before is not None else None
    after = orjson.loads(orjson.dumps(after)) if after is not None else None
    digest = chain_hash(prev_hash, _content(seq, at, ctx.actor, action, target_type, target_id, before, after, reason))
    conn.execute(
        entries.insert().values(
            seq=seq, at=at, actor=ctx.actor, action=action, target_type=target_type,
            target_id=target_id, before=before, after=after, reason=reason,
            prev_hash=prev_hash, hash=digest,
        )
    )
    conn.execute(update(head).where(head.c.id == 1).values(hash=digest))
    return int(seq)


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    checked: int
    broken_seq: int | None = None
    problem: str | None = None


@contextmanager
def _snapshot(engine: Engine) -> Iterator[Connection]:
    """One read transaction that sees a single snapshot of the whole chain. PostgreSQL's
    default (READ COMMITTED) takes a new snapshot per statement, so a walk in pages would see
    the head before, and entries after, a concurrent append: a false "entries were deleted"."""
    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            conn.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin():
            yield conn


def verify(ctx: ServiceContext, batch: int = 5000) -> VerifyResult:
    """Walk the chain in sequence order and recompute every hash."""
    expected_prev = GENESIS_HASH
    expected_seq = 1
    checked = 0
    with _snapshot(ctx.engine) as conn:
        head_seq, head_hash = conn.execute(select(head.c.seq, head.c.hash).where(head.c.id == 1)).one()
        for row in _stream(conn, batch):
            if row.seq != expected_seq:
                missing = expected_seq if row.seq > expected_seq else row.seq
                return VerifyResult(False, checked, missing, f"entry {missing} is missing or out of sequence")
            if row.prev_hash != expected_prev:
                return VerifyResult(False, checked, row.seq, f"entry {row.seq} does not follow entry {row.seq - 1}")
            content = _content(row.seq, row.at, row.actor, row.action, row.target_type, row.target_id,
                               row.before, row.after, row.reason)
            if chain_hash(row.prev_hash, content) != row.hash:
                return VerifyResult(False, checked, row.seq, f"entry {row.seq} was altered (hash mismatch)")
            expected_prev = row.hash
            expected_seq += 1
            checked += 1
        if head_seq != checked or head_hash != expected_prev:
            return VerifyResult(
                False, checked, checked + 1 if head_seq > checked else head_seq,
                f"the chain ends at entry {checked} but its head says {head_seq}: entries were deleted",
            )
    return VerifyResult(True, checked)


def _stream(conn: Connection, batch: int) -> Iterator[Any]:
    last = 0
    while True:
        rows = conn.execute(
            select(entries).where(entries.c.seq > last).order_by(entries.c.seq).limit(batch)
        ).all()
        if not rows:
            return
        yield from rows
        last = rows[-1].seq


def entry_dict(row: Any) -> dict[str, Any]:
    """One entry as exported and displayed: before/after pass through redaction."""
    return {
        "seq": row.seq, "at": row.at.isoformat(), "actor": row.actor, "action": row.action,
        "target_type": row.target_type, "target_id": row.target_id,
        "before": redact(row.before), "after": redact(row.after),
        "reason": redact_text(row.reason) if row.reason else row.reason,
        "prev_hash": row.prev_hash, "hash": row.hash,
    }


def export(ctx: ServiceContext, out: IO[bytes]) -> int:
    """Write the trail as JSON lines; returns the number of entries."""
    count = 0
    with _snapshot(ctx.engine) as conn:
        for row in _stream(conn, 5000):
            out.write(orjson.dumps(entry_dict(row)) + b"\n")
            count += 1
    return count


def search(ctx: ServiceContext, text: str | None = None, limit: int = 500) -> list[dict[str, Any]]:
    """Newest first; `text` matches actor, action, target or reason."""
    query = select(entries).order_by(entries.c.seq.desc()).limit(limit)
    if text:
        like = f"%{text}%"
        query = query.where(
            entries.c.actor.ilike(like) | entries.c.action.ilike(like)
            | entries.c.target_id.ilike(like) | entries.c.reason.ilike(like)
        )
    with reading(ctx.engine) as conn:
        return [entry_dict(row) for row in conn.execute(query)]
