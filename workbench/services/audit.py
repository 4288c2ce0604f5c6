"""The audit trail: append-only, chained with a keyed MAC and anchored outside the database.

Each entry's MAC covers the previous entry's MAC and the entry's own fields under a key kept
outside the store (services/audit_anchor), and the head is checkpointed beside that key after
every commit, so altering, deleting, reordering or forging a row, or cutting off the tail and
rewinding `audit_head`, breaks the chain and `verify` names the first broken entry and why.
Entries made before revision 0003 keep their plain SHA-256 hashes (docs/audit.md).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import orjson
from sqlalchemy import Connection, Engine, select, update

from store.database import after_commit, reading
from store.models import AuditEntry, AuditHead
from workbench.domain.audit_chain import (
    FIELDS,
    GENESIS_HASH,
    KEYED,
    Break,
    ChainWalker,
    MissingKey,
    canonical,
    entry_mac,
    field_digest,
    field_digests,
)
from workbench.domain.redaction import redact, redact_text

from . import access
from .audit_anchor import AnchorFiles, AuditKeyError, anchor_files, load_key, read_checkpoint, write_checkpoint
from .context import ServiceContext
from .errors import ServiceError

__all__ = ["GENESIS_HASH", "VerifyResult", "append", "export", "search", "key_file", "verify", "verify_export"]

log = logging.getLogger(__name__)

entries = AuditEntry.__table__
head = AuditHead.__table__


def _fields(seq: int, at: datetime, actor: str, action: str, target_type: str, target_id: str | None,
            before: Any, after: Any, reason: str | None) -> dict[str, Any]:
    return {"seq": seq, "at": at.isoformat(), "actor": actor, "action": action, "target_type": target_type,
            "target_id": target_id, "before": before, "after": after, "reason": reason}


class _PendingCheckpoint:
    """The newest head one transaction appended, recorded outside the database once (and only
    if) it commits. A crash in between leaves the checkpoint behind the table, which verify
    accepts (the entries past it still need the key); the reverse, a checkpoint ahead of the
    table, then only ever means entries were cut off."""

    def __init__(self, files: AnchorFiles) -> None:
        self.files = files
        self.seq = 0
        self.mac = ""
        self.first_keyed = 0

    def __call__(self) -> None:
        try:
            write_checkpoint(self.files, self.seq, self.mac, self.first_keyed)
        except (OSError, ServiceError) as exc:  # committed already: say so, do not fail the action
            log.warning("audit entry %d is saved but its checkpoint at %s could not be written (%s); "
                        "a cut-off tail past entry %d may go unnoticed until the next write",
                        self.seq, self.files.checkpoint, exc, self.seq)


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
    """Append one entry inside the caller's transaction (opened by store.database.writing).
    Returns its sequence number.

    Bumping the head row first takes its lock (a row lock on PostgreSQL, the write lock on
    SQLite), so concurrent appenders queue up instead of forking the chain.
    """
    hooks = after_commit(conn)
    if hooks is None:
        raise RuntimeError("audit.append needs a transaction opened by store.database.writing()")
    files = anchor_files(ctx.engine)
    key = load_key(files, create=True)
    assert key is not None  # created when absent
    conn.execute(update(head).where(head.c.id == 1).values(seq=head.c.seq + 1))
    seq, prev_hash = conn.execute(select(head.c.seq, head.c.hash).where(head.c.id == 1)).one()
    # In UTC, as the store hands it back to verify (a clock in another zone would otherwise
    # MAC "+02:00" now and read back "+00:00": a chain broken by nobody).
    at = ctx.clock().astimezone(UTC)
    # Normalise through JSON so what is MACed now is exactly what verify reads back later.
    before = orjson.loads(orjson.dumps(before)) if before is not None else None
    after = orjson.loads(orjson.dumps(after)) if after is not None else None
    fields = _fields(seq, at, ctx.actor, action, target_type, target_id, before, after, reason)
    mac = entry_mac(key, prev_hash, field_digests(key, fields))
    conn.execute(
        entries.insert().values(
            seq=seq, at=at, actor=ctx.actor, action=action, target_type=target_type,
            target_id=target_id, before=before, after=after, reason=reason,
            prev_hash=prev_hash, hash=mac, scheme=KEYED,
        )
    )
    conn.execute(update(head).where(head.c.id == 1).values(hash=mac))
    _checkpoint_after_commit(conn, hooks, files, seq, seq, mac)
    return int(seq)


def append_many(conn: Connection, ctx: ServiceContext, action: str, target_type: str,
                targets: list[tuple[str | None, Any]]) -> None:
    """`append` of one entry per (target ID, after) in `targets`, all with the same action,
    in the caller's transaction: the head bumped once, the entries chained here and inserted
    together (a load of many alike actions: as if appended one by one, at one clock reading)."""
    if not targets:
        return
    hooks = after_commit(conn)
    if hooks is None:
        raise RuntimeError("audit.append_many needs a transaction opened by store.database.writing()")
    files = anchor_files(ctx.engine)
    key = load_key(files, create=True)
    assert key is not None  # created when absent
    conn.execute(update(head).where(head.c.id == 1).values(seq=head.c.seq + len(targets)))
    last, mac = conn.execute(select(head.c.seq, head.c.hash).where(head.c.id == 1)).one()
    first = int(last) - len(targets) + 1
    at = ctx.clock().astimezone(UTC)
    rows: list[dict[str, Any]] = []
    for seq, (target_id, after) in enumerate(targets, start=first):
        after = orjson.loads(orjson.dumps(after)) if after is not None else None
        prev_hash = mac
        mac = entry_mac(key, prev_hash, field_digests(
            key, _fields(seq, at, ctx.actor, action, target_type, target_id, None, after, None)))
        rows.append({"seq": seq, "at": at, "actor": ctx.actor, "action": action, "target_type": target_type,
                     "target_id": target_id, "before": None, "after": after, "reason": None,
                     "prev_hash": prev_hash, "hash": mac, "scheme": KEYED})
    conn.execute(entries.insert(), rows)
    conn.execute(update(head).where(head.c.id == 1).values(hash=mac))
    _checkpoint_after_commit(conn, hooks, files, first, int(last), mac)


def _checkpoint_after_commit(conn: Connection, hooks: list[Callable[[], None]], files: AnchorFiles, first: int, last: int,
                             mac: str) -> None:
    """The transaction's checkpoint, written once after it commits, at its newest entry."""
    pending = next((hook for hook in hooks if isinstance(hook, _PendingCheckpoint)), None)
    if pending is None:
        pending = _PendingCheckpoint(files)
        pending.first_keyed = _first_keyed(conn, files, first)
        hooks.append(pending)
    pending.seq, pending.mac = int(last), mac


def _first_keyed(conn: Connection, files: AnchorFiles, seq: int) -> int:
    """The first keyed entry, which the checkpoint keeps so that no plain-hash entry after it
    passes verify: this one, unless keyed entries precede it (then the checkpoint knows; only
    without one, on a machine new to this store, does it take a scan)."""
    previous = conn.execute(select(entries.c.scheme).where(entries.c.seq == seq - 1)).scalar()
    if previous != KEYED:
        return seq
    anchor = read_checkpoint(files)
    if anchor is not None:
        return anchor.first_keyed
    first = conn.execute(select(entries.c.seq).where(entries.c.scheme == KEYED).order_by(entries.c.seq)
                         .limit(1)).scalar()
    return int(first) if first is not None else seq


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    checked: int
    broken_seq: int | None = None
    problem: str | None = None
    # edited / deleted / reordered / forged / truncated (see workbench.domain.audit_chain)
    cause: str | None = None
    # False when no checkpoint for this store is on this machine: a cut-off tail goes unseen.
    anchored: bool = True


def _broken(walker: ChainWalker, found: Break) -> VerifyResult:
    return VerifyResult(False, walker.checked, found.seq, found.message, found.cause)


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


def _missing_key(files: AnchorFiles) -> AuditKeyError:
    return AuditKeyError(f"the trail has keyed entries but there is no audit key at {files.key}; "
                         f"point WORKBENCH_AUDIT_KEY_FILE at the key this store was written with")


def verify(ctx: ServiceContext, batch: int = 5000) -> VerifyResult:
    """Walk the chain in sequence order, recompute every MAC (or legacy hash) and hold the
    end to the head row and to the checkpoint kept outside the database."""
    access.require(ctx, "read")
    files = anchor_files(ctx.engine)
    # Read before the snapshot: written after each commit, it can then only be behind it.
    anchor = read_checkpoint(files)
    key = load_key(files, create=False)
    with _snapshot(ctx.engine) as conn:
        head_row = conn.execute(select(head.c.seq, head.c.hash).where(head.c.id == 1)).first()
        if head_row is None:
            return VerifyResult(False, 0, None, "the chain's head row (audit_head) is missing: it was deleted "
                                "outside the workbench; restore the store from a backup", "deleted")
        walker = ChainWalker(key, anchor, lambda digest: _locate(conn, digest))
        try:
            for row in _stream(conn, batch):
                found = walker.step(_stored(row))
                if found is not None:
                    return _broken(walker, found)
        except MissingKey:
            raise _missing_key(files) from None
        head_seq, head_hash = head_row
        last = walker.last_seq
        if head_seq > last:
            return VerifyResult(False, last, last + 1,
                                f"the chain ends at entry {last} but its head says {head_seq}: entries "
                                f"{last + 1}..{head_seq} were deleted", "deleted")
        found = walker.truncated()
        if found is not None:
            return _broken(walker, found)
        if head_seq < last or head_hash != walker.prev_hash:
            return VerifyResult(False, last, head_seq + 1 if head_seq < last else head_seq,
                                f"the chain's head row says entry {head_seq} but the chain ends at entry {last} "
                                "(the head row was edited)", "edited")
    return VerifyResult(True, walker.checked, anchored=anchor is not None or walker.checked == 0)


def _locate(conn: Connection, digest: str) -> int | None:
    seq = conn.execute(select(entries.c.seq).where(entries.c.hash == digest).limit(1)).scalar()
    return int(seq) if seq is not None else None


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


def _stored(row: Any) -> dict[str, Any]:
    """An entry as its MAC saw it."""
    fields = _fields(row.seq, row.at, row.actor, row.action, row.target_type, row.target_id, row.before,
                     row.after, row.reason)
    return {**fields, "scheme": row.scheme, "prev_hash": row.prev_hash, "hash": row.hash}


def entry_dict(row: Any) -> dict[str, Any]:
    """One entry as exported and displayed: before/after pass through redaction."""
    return {
        "seq": row.seq, "at": row.at.isoformat(), "actor": row.actor, "action": row.action,
        "target_type": row.target_type, "target_id": row.target_id,
        "before": redact(row.before), "after": redact(row.after),
        "reason": redact_text(row.reason) if row.reason else row.reason,
        "prev_hash": row.prev_hash, "hash": row.hash, "scheme": row.scheme,
    }


def _seal(key: bytes, line: dict[str, Any]) -> str:
    """Vouches for an exported line as written, redacted text included."""
    return hmac.new(key, b"wb-audit-export/1\n" + canonical(line), hashlib.sha256).hexdigest()


def _exported(key: bytes | None, row: Any) -> dict[str, Any]:
    line = entry_dict(row)
    if key is None:  # only legacy entries, made before any key existed
        return line
    stored = _stored(row)
    # A field redaction changed travels with its keyed digest: the MAC still verifies, and
    # the digest confirms no guess about the hidden value.
    redacted = {name: field_digest(key, name, stored[name]) for name in FIELDS
                if canonical(line[name]) != canonical(stored[name])}
    if redacted:
        line["digests"] = redacted
    line["seal"] = _seal(key, line)
    return line


def export(ctx: ServiceContext, out: IO[bytes]) -> int:
    """Write the trail as JSON lines; returns the number of entries. Each line is sealed with
    the audit key, so `verify_export` checks it on its own (docs/audit.md)."""
    access.require(ctx, "read")
    files = anchor_files(ctx.engine)
    # Made here if no write made it yet (a store upgraded from plain hashes), so that even a
    # trail of legacy entries exports sealed; a read-only store exports unsealed lines.
    key = load_key(files, create=not ctx.read_only)
    count = 0
    with _snapshot(ctx.engine) as conn:
        for row in _stream(conn, 5000):
            if key is None and row.scheme == KEYED:
                raise _missing_key(files)
            out.write(orjson.dumps(_exported(key, row)) + b"\n")
            count += 1
    return count


def key_file(ctx: ServiceContext) -> Path:
    """Where this store's audit key is (WORKBENCH_AUDIT_KEY_FILE, else beside the store)."""
    return anchor_files(ctx.engine).key


def verify_export(source: IO[bytes], key_path: Path) -> VerifyResult:
    """Verify an exported trail on its own, with the audit key at `key_path`: every line's
    seal, and the chain through it from the first entry, redacted fields by their digests."""
    key = load_key(AnchorFiles(key_path, key_path), create=False)
    if key is None:
        raise AuditKeyError(f"no audit key at {key_path} to verify the export with; give the key the "
                            "trail was written with (--key FILE or WORKBENCH_AUDIT_KEY_FILE)")
    lines: list[dict[str, Any]] = []
    for number, raw in enumerate(source, start=1):
        if not raw.strip():
            continue
        try:
            line = orjson.loads(raw)
            if not isinstance(line, dict) or not isinstance(line.get("seq"), int):
                raise ValueError
        except (orjson.JSONDecodeError, ValueError):
            return VerifyResult(False, len(lines), None, f"line {number} of the export is not an audit entry "
                                "(edited)", "edited")
        lines.append(line)
    where = {line.get("hash"): line["seq"] for line in lines}
    where_seq = {line["seq"] for line in lines}
    walker = ChainWalker(key, None, where.get, where_seq.__contains__)
    for line in lines:
        seal = line.pop("seal", None)
        if not isinstance(seal, str) or not hmac.compare_digest(_seal(key, line), seal):
            return _broken(walker, Break(line["seq"], "edited",
                                         f"entry {line['seq']} was altered in the export (edited: its seal "
                                         "does not verify)"))
        digests = line.get("digests")
        try:
            found = walker.step(line, digests if isinstance(digests, dict) else None)
        except KeyError as exc:
            found = Break(line["seq"], "edited", f"entry {line['seq']} lacks its {exc.args[0]!r} field (edited)")
        if found is not None:
            return _broken(walker, found)
    return VerifyResult(True, walker.checked)


def search(ctx: ServiceContext, text: str | None = None, limit: int = 500) -> list[dict[str, Any]]:
    """Newest first; `text` matches actor, action, target or reason."""
    access.require(ctx, "read")
    query = select(entries).order_by(entries.c.seq.desc()).limit(limit)
    if text:
        like = f"%{text}%"
        query = query.where(
            entries.c.actor.ilike(like) | entries.c.action.ilike(like)
            | entries.c.target_id.ilike(like) | entries.c.reason.ilike(like)
        )
    with reading(ctx.engine) as conn:
        return [entry_dict(row) for row in conn.execute(query)]
