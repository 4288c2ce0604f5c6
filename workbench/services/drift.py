"""Drift findings: listing them, and resolving each, audited, in one transaction per finding.

- accept: the provider's value becomes ours, through the BeliefBook (a transition with cause
  `reconciliation`, under the same transition guard as any event); a provider object we had
  no record of becomes a record.
- push: our value goes back to the provider as a command in the outbox, with the intent the
  adapter maps for it (adapters.protocol.Pushing); refused, in one line, where there is none.
- escalate: the record goes to needs_review with an open failure saying why
  (business_rule_rejection: it blocks the workflow until an operator decides).

A resolution is the provider's view as of its moment: the record's ordering watermark moves to
now (or just past the newest event's time, where that is later than our clock), so an event
that occurred earlier and arrives later is kept as evidence (stale), not applied over a
decision a person made.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal

from sqlalchemy import Connection, select, update

from adapters.protocol import Pushing
from store.database import reading, writing
from store.models import Connection as ConnectionRow, DriftFinding, Record
from workbench.domain.canonical import Cause, MappedEvent, Verdict
from workbench.domain.drift import EXISTS, STATUS
from workbench.domain.redaction import redact_text
from workbench.domain.statuses import Status
from workbench.domain.taxonomy import Category

from . import access, audit
from .beliefs import BeliefBook
from .commands import enqueue
from .connections import _get as get_connection_in
from .context import ServiceContext
from .errors import InvalidArgument, NotFound, ServiceError

findings = DriftFinding.__table__
connections = ConnectionRow.__table__
records = Record.__table__

Resolution = Literal["accept", "push", "escalate"]
RESOLUTIONS: tuple[Resolution, ...] = ("accept", "push", "escalate")
Progress = Callable[[int, int], None]


@dataclass
class ResolveResult:
    done: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    messages: dict[str, str] = field(default_factory=dict)


def finding_dict(row: Any, connection: str) -> dict[str, Any]:
    return {"id": row.id, "connection": connection, "record": row.record_id, "field": row.field,
            "ours": row.ours, "theirs": row.theirs, "since": row.since.isoformat(), "state": row.state,
            "kind": row.kind, "provider_id": row.provider_id, "run": row.run_id, "resolution": row.resolution,
            "resolved_by": row.resolved_by,
            "resolved_at": row.resolved_at.isoformat() if row.resolved_at is not None else None,
            "note": redact_text(row.note) if row.note else None}


def _filtered(query: Any, connection: str | None, field_name: str | None, record: str | None, state: str | None) -> Any:
    if connection is not None:
        query = query.where(connections.c.name == connection)
    if field_name is not None:
        query = query.where(findings.c.field == field_name)
    if record is not None:
        query = query.where(findings.c.record_id == record)
    if state is not None:
        query = query.where(findings.c.state == state)
    return query


def _known(conn: Connection, connection: str | None) -> None:
    """A filter naming a connection that does not exist is a mistake, not "no findings"."""
    if connection is not None:
        get_connection_in(conn, connection)


def list_findings(ctx: ServiceContext, *, connection: str | None = None, field_name: str | None = None,
                  record: str | None = None, state: str | None = "open", limit: int | None = None) -> list[dict[str, Any]]:
    """Findings (open ones by default), oldest first."""
    access.require(ctx, "read")
    if state not in (None, "open", "resolved"):
        raise InvalidArgument(f"state is open or resolved, not {state!r}")
    query = (select(findings, connections.c.name).join(connections, connections.c.id == findings.c.connection_id)
             .order_by(findings.c.since, findings.c.id))
    query = _filtered(query, connection, field_name, record, state)
    if limit is not None:
        query = query.limit(limit)
    with reading(ctx.engine) as conn:
        _known(conn, connection)
        return [finding_dict(row, row.name) for row in conn.execute(query)]


def matching_ids(ctx: ServiceContext, *, connection: str | None = None, field_name: str | None = None,
                 record: str | None = None) -> list[str]:
    """The open findings a bulk resolution by this filter would act on (count them first)."""
    access.require(ctx, "read")
    query = select(findings.c.id).join(connections, connections.c.id == findings.c.connection_id)
    query = _filtered(query, connection, field_name, record, "open").order_by(findings.c.since, findings.c.id)
    with reading(ctx.engine) as conn:
        _known(conn, connection)
        return list(conn.execute(query).scalars())


def resolve(ctx: ServiceContext, finding_ids: Sequence[str], resolution: str, note: str,
            progress: Progress | None = None) -> ResolveResult:
    """Resolve each finding as `resolution` says; one transaction each, so a bulk resolution
    that stops half-way leaves every finding either resolved or untouched."""
    access.require(ctx, "reconcile")
    if resolution not in RESOLUTIONS:
        raise InvalidArgument(f"a resolution is one of {', '.join(RESOLUTIONS)}, not {resolution!r}")
    text = (note or "").strip()
    if not text:
        raise InvalidArgument("a note is required: say why")
    if not finding_ids:
        raise InvalidArgument("no findings selected")
    act = {"accept": _accept, "push": _push, "escalate": _escalate}[resolution]
    result = ResolveResult()
    for index, finding_id in enumerate(finding_ids, start=1):
        try:
            with writing(ctx.engine) as conn:
                row = _open_finding(conn, finding_id)
                provider = conn.execute(select(connections.c.provider)
                                        .where(connections.c.id == row.connection_id)).scalar_one()
                message = act(conn, ctx, row, provider, text)
                conn.execute(update(findings).where(findings.c.id == row.id).values(
                    state="resolved", resolution=resolution, resolved_by=ctx.actor, resolved_at=ctx.clock(),
                    note=f"{message} - {text}"))
                # Aimed at the record (an accept may just have made it), so its timeline shows it.
                record_id = conn.execute(select(findings.c.record_id).where(findings.c.id == row.id)).scalar()
                audit.append(conn, ctx, f"drift.{resolution}", "record" if record_id else "drift_finding",
                             record_id or row.id,
                             before={"finding": row.id, "state": "open", "field": row.field, "ours": row.ours,
                                     "theirs": row.theirs},
                             after={"finding": row.id, "state": "resolved", "resolution": resolution},
                             reason=f"{message} - {text}")
            result.done.append(finding_id)
            result.messages[finding_id] = message
        except ServiceError as exc:
            result.skipped.append((finding_id, redact_text(str(exc))))
        if progress is not None:
            progress(index, len(finding_ids))
    return result


def _open_finding(conn: Connection, finding_id: str) -> Any:
    row = conn.execute(select(findings).where(findings.c.id == finding_id)).first()
    if row is None:
        raise NotFound(f"no drift finding {finding_id!r}")
    if row.state != "open":
        raise ServiceError(f"finding {finding_id} is {row.state} already ({row.resolution})")
    return row


def _book(conn: Connection, ctx: ServiceContext, row: Any, provider: str) -> BeliefBook:
    book = BeliefBook(ctx, row.connection_id, provider)
    if row.record_id is not None:
        book.load(conn, [(row.kind, row.provider_id)])
        if (row.kind, row.provider_id) not in book.states:
            raise ServiceError(f"record {row.record_id} is no longer known by {row.provider_id}")
    return book


def _apply(conn: Connection, ctx: ServiceContext, book: BeliefBook, row: Any, mapped: MappedEvent) -> str:
    # Ordered after everything the record has seen: now, or just after its newest event where
    # that one is stamped later than our clock (a provider's clock ahead of ours).
    state = book.states.get((mapped.kind, mapped.external_id))
    at = book.now
    if state is not None and state.belief.watermark is not None and state.belief.watermark[0] >= at:
        at = state.belief.watermark[0] + timedelta(milliseconds=1)
    outcome = book.apply(mapped, at, f"reconcile:{row.id}", delivery_id=None, cause=Cause.RECONCILIATION)
    if outcome.verdict not in (Verdict.APPLIED, Verdict.FAILED):
        raise ServiceError(f"cannot accept: {outcome.reason}; escalate it instead")
    book.flush(conn)
    return outcome.reason


def _accept(conn: Connection, ctx: ServiceContext, row: Any, provider: str, note: str) -> str:
    adapter = ctx.adapters.get(provider)
    if row.field == EXISTS:
        if row.record_id is not None:
            raise ServiceError("the provider does not know this record: there is no value of theirs to accept; "
                               "push it or escalate it")
        theirs = row.theirs if isinstance(row.theirs, dict) else {}
        their_status = theirs.get("status")
        mapped = MappedEvent(row.kind, row.provider_id, str(theirs.get("provider_status")),
                             Status(their_status) if their_status else None, dict(theirs.get("fields") or {}),
                             str(theirs.get("mapping_version") or adapter.mapping_version))
        book = _book(conn, ctx, row, provider)
        _apply(conn, ctx, book, row, mapped)
        record_id = book.states[(row.kind, row.provider_id)].id
        conn.execute(update(findings).where(findings.c.id == row.id).values(record_id=record_id))
        return f"accepted: record {record_id} made from the provider's {row.kind} {row.provider_id}"
    book = _book(conn, ctx, row, provider)
    belief = book.states[(row.kind, row.provider_id)].belief
    fields = dict(belief.fields)
    status: Status | None = belief.status
    if row.field == STATUS:
        theirs_text = str(row.theirs)
        status = None if theirs_text.startswith("unmapped:") else Status(theirs_text)
    else:
        fields[row.field] = row.theirs
    mapped = MappedEvent(row.kind, row.provider_id, str(fields.get("provider_status", "")), status, fields,
                         adapter.mapping_version)
    reason = _apply(conn, ctx, book, row, mapped)
    return f"accepted the provider's {row.field} ({reason})"


def _push(conn: Connection, ctx: ServiceContext, row: Any, provider: str, note: str) -> str:
    adapter = ctx.adapters.get(provider)
    command = (adapter.push_command(row.kind, row.provider_id, row.field, row.ours)
               if isinstance(adapter, Pushing) and row.provider_id and row.field != EXISTS else None)
    if command is None:
        raise ServiceError(f"the {provider} adapter has no intent that sets {row.field} to {row.ours!r} at the provider; "
                           "accept or escalate instead")
    command_id = enqueue(conn, ctx, connection_id=row.connection_id, record_id=row.record_id, intent=command.intent,
                         payload=command.payload, idempotency_key=f"drift:{row.id}")
    return f"pushed: command {command_id} ({command.intent}) in the outbox"


def _escalate(conn: Connection, ctx: ServiceContext, row: Any, provider: str, note: str) -> str:
    book = _book(conn, ctx, row, provider)
    why = (f"drift on {row.field}: ours {row.ours!r}, the provider's {row.theirs!r} "
           f"(finding {row.id}): {note}")
    if row.record_id is None:
        failure_id = book.open_failure(Category.BUSINESS_RULE_REJECTION, f"drift:{row.field}",
                                       f"the provider has {row.kind} {row.provider_id} we have no record of "
                                       f"(finding {row.id}): {note}")
        book.flush(conn)
        return f"escalated: failure {failure_id} opened"
    belief = book.states[(row.kind, row.provider_id)].belief
    mapped = MappedEvent(row.kind, row.provider_id, str(belief.fields.get("provider_status", "")),
                         Status.NEEDS_REVIEW, dict(belief.fields), ctx.adapters.get(provider).mapping_version)
    _apply(conn, ctx, book, row, mapped)
    failure_id = book.open_failure(Category.BUSINESS_RULE_REJECTION, f"drift:{row.field}", why, record_id=row.record_id)
    book.flush(conn)
    return f"escalated: record {row.record_id} in needs_review, failure {failure_id} opened"
