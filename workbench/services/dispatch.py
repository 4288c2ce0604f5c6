"""The outbox dispatcher: claims due commands, sends each through its connection's client,
and records every attempt (request, answer, latency, classified outcome, redacted).

A claim marks a command `dispatching` until a deadline (kept in `next_attempt_at`): on
PostgreSQL the claim reads rows FOR UPDATE SKIP LOCKED, so engines claiming at once take
disjoint commands; a claim whose deadline passed (its engine died mid-call) is taken over by
the next claim, and that retry is made safe the same way as any other: the idempotency key
where the provider honours keys, otherwise a lookup by our reference before sending again.

A claim's calls go out on sender threads; their answers are written together once they are
in (services/dispatch_bulk: a few statements for the group; each attempt written only while its
claim still holds, redacted like any other).

A success moves the command's record (cause `command`) and links it to the provider's object;
a failure follows its category's policy: retryable ones come back on the retry schedule
(Retry-After honoured) until it is used up, then need review; `authentication` stops the
connection's calls (services/sync_state) and keeps the command for after the key's rotation.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy import Connection, select, update

from adapters.protocol import CallResult, Capabilities, ClassifiedOutcome, Commanding, ProviderClient
from store.database import reading, writing
from store.models import Command, Connection as ConnectionTable, Failure, ProviderRef, Record, SyncState, Transition
from workbench.domain.redaction import PathTree, compile_paths, redact
from workbench.domain.retry_schedule import DEFAULT_SCHEDULE_S, retry_delay
from workbench.domain.state_machine import can_transition
from workbench.domain.statuses import Status
from workbench.domain.taxonomy import CLOSED_STATES, Category, TriageState, policy_for

from . import access
from .commands import record_attempt
from .connections import ConnectionInfo
from .context import ServiceContext
from .sync_state import stop_calls

if TYPE_CHECKING:
    from .breaker import CallGate

log = logging.getLogger(__name__)

commands = Command.__table__
connections = ConnectionTable.__table__
failures = Failure.__table__
records = Record.__table__
refs = ProviderRef.__table__
transitions = Transition.__table__
sync_state = SyncState.__table__

CLAIM_S = 60.0  # a claim's deadline: longer than any call (clients time out after 10 s)
UNCALLABLE_WAIT_S = 30.0  # a connection without a usable key: its commands wait this long
MAX_BODY_CHARS = 16_384  # an attempt keeps this much of the provider's answer
_CLOSED = [str(state) for state in CLOSED_STATES]


@dataclass(frozen=True, slots=True)
class Claimed:
    id: str
    connection_id: str
    record_id: str | None
    operation_id: str
    idempotency_key: str
    intent: str
    payload: dict[str, Any]
    attempts: int
    deadline: datetime  # the claim's; the result is written only while it still holds
    taken_over: bool  # an earlier claim expired: this command may have been sent already


@dataclass
class DispatchReport:
    claimed: int = 0
    taken_over: int = 0
    # (connection name, outcome: "ok" or a category) -> count
    outcomes: dict[tuple[str, str], int] = field(default_factory=dict)

    def count(self, connection: str, outcome: str) -> None:
        key = (connection, outcome)
        self.outcomes[key] = self.outcomes.get(key, 0) + 1


def claim(ctx: ServiceContext, *, limit: int = 100, claim_s: float = CLAIM_S,
          connection_ids: list[str] | None = None) -> list[Claimed]:
    """Claim up to `limit` due commands of connections that are neither paused nor stopped
    (read in the same statement: a pause stops new dispatches at once), oldest due first."""
    now = ctx.clock()
    deadline = now + timedelta(seconds=claim_s)
    query = (select(commands.c.id, commands.c.connection_id, commands.c.record_id, commands.c.operation_id,
                    commands.c.idempotency_key, commands.c.intent, commands.c.payload, commands.c.attempts,
                    commands.c.status)
             .join(connections, connections.c.id == commands.c.connection_id)
             .outerjoin(sync_state, sync_state.c.connection_id == commands.c.connection_id)
             .where(commands.c.status.in_(("pending", "dispatching")), commands.c.next_attempt_at <= now,
                    connections.c.paused.is_(False), sync_state.c.calls_stopped_at.is_(None))
             .order_by(commands.c.next_attempt_at, commands.c.id).limit(limit))
    if connection_ids is not None:
        query = query.where(commands.c.connection_id.in_(connection_ids))
    with writing(ctx.engine) as conn:
        if conn.dialect.name == "postgresql":
            query = query.with_for_update(of=commands, skip_locked=True)
        rows = conn.execute(query).all()
        if not rows:
            return []
        conn.execute(update(commands).where(commands.c.id.in_([row.id for row in rows]))
                     .values(status="dispatching", next_attempt_at=deadline, updated_at=now))
    return [Claimed(row.id, row.connection_id, row.record_id, row.operation_id, row.idempotency_key, row.intent,
                    row.payload, row.attempts, deadline, row.status == "dispatching") for row in rows]


def renew(ctx: ServiceContext, claimed: list[Claimed], claim_s: float) -> list[Claimed]:
    """Move the deadline of claims still held (one statement); the ones lost are left out."""
    if not claimed:
        return []
    now = ctx.clock()
    deadline = now + timedelta(seconds=claim_s)
    kept: list[Claimed] = []
    with writing(ctx.engine) as conn:
        for old_deadline in sorted({item.deadline for item in claimed}):
            group = [item for item in claimed if item.deadline == old_deadline]
            conn.execute(update(commands).where(
                commands.c.id.in_([item.id for item in group]), commands.c.status == "dispatching",
                commands.c.next_attempt_at == old_deadline).values(next_attempt_at=deadline, updated_at=now))
        held = set(conn.execute(select(commands.c.id).where(
            commands.c.id.in_([item.id for item in claimed]), commands.c.status == "dispatching",
            commands.c.next_attempt_at == deadline)).scalars())
    for item in claimed:
        if item.id in held:
            kept.append(replace(item, deadline=deadline))
    return kept


def release(ctx: ServiceContext, claimed: list[Claimed], *, after_s: float = 0.0) -> None:
    """Hand claimed commands not yet sent back to the outbox (a clean stop; a connection that
    cannot be called yet: due again in `after_s`)."""
    now = ctx.clock()
    due = now + timedelta(seconds=after_s)
    with writing(ctx.engine) as conn:
        for item in claimed:
            conn.execute(update(commands).where(commands.c.id == item.id, commands.c.status == "dispatching",
                                                commands.c.next_attempt_at == item.deadline)
                         .values(status="pending", next_attempt_at=due, updated_at=now))


def send(client: ProviderClient, capabilities: Capabilities, item: Claimed) -> CallResult:
    """One attempt at the provider. A retry to a provider without idempotency keys looks the
    operation up by our reference first: found, the earlier attempt did happen."""
    retry = item.attempts > 0 or item.taken_over
    if retry and not capabilities.idempotency_keys and capabilities.lookup_by_reference:
        found = client.lookup(item.operation_id)
        if found.outcome.category is None:
            return found
        if found.outcome.category is not Category.MISSING_DEPENDENCY:
            return found  # cannot tell whether it happened: sending could do it twice
    key = item.idempotency_key if capabilities.idempotency_keys else None
    try:
        return client.send(item.intent, item.payload, reference=item.operation_id, idempotency_key=key)
    except ValueError as exc:  # a payload the client cannot send (checked at submit: an old command)
        outcome = ClassifiedOutcome(Category.VALIDATION, "unsendable", str(exc)[:300])
        return CallResult("-", item.intent, None, None, {}, 0, outcome)


def answer_paths(paths: tuple[str, ...]) -> PathTree:
    """An adapter's redacted paths (written for its events) for its API answers too: an answer
    is the object an event wraps, so each path also counts from each of its later segments."""
    parts = [path.split(".") for path in paths]
    return compile_paths({".".join(segments[i:]) for segments in parts for i in range(len(segments))})


@dataclass
class Outcome:
    outcome: str  # "ok" or the failure's category
    stopped_calls: bool = False


def record_result(ctx: ServiceContext, connection: ConnectionInfo, item: Claimed, result: CallResult,
                  paths: PathTree, *, rng: random.Random | None = None) -> Outcome | None:
    """Write one attempt and its consequences in one transaction; None when the claim was lost
    (it expired and another engine took the command over: that engine's attempt counts)."""
    with writing(ctx.engine) as conn:
        return record_in(conn, ctx, connection, item, result, paths, rng=rng)


def record_in(conn: Connection, ctx: ServiceContext, connection: ConnectionInfo, item: Claimed, result: CallResult,
              paths: PathTree, *, rng: random.Random | None = None) -> Outcome | None:
    """record_result in the caller's transaction (a batch's attempts commit together)."""
    adapter = ctx.adapters.get(connection.provider)
    category = result.outcome.category
    now = ctx.clock()
    held = conn.execute(select(commands.c.id).where(
        commands.c.id == item.id, commands.c.status == "dispatching",
        commands.c.next_attempt_at == item.deadline)).first()
    if held is None:
        return None
    number = item.attempts + 1
    request = {"method": result.method, "path": result.path, "intent": item.intent,
               "reference": item.operation_id, "payload": redact(item.payload, paths)}
    body = orjson.dumps(redact(dict(result.body), paths)).decode()[:MAX_BODY_CHARS] if result.body else None
    if category is None:
        _attempt(conn, ctx, connection, item, number, request, result, body, None)
        conn.execute(update(commands).where(commands.c.id == item.id)
                     .values(status="succeeded", next_attempt_at=None, updated_at=now))
        mapped = adapter.command_result(item.intent, result.body or {}) if isinstance(adapter, Commanding) else None
        _move_record(conn, ctx, connection, item, mapped, result.outcome.code)
        _close_failures(conn, item.id, now)
        return Outcome("ok")
    outcome = Outcome(str(category))
    if category is Category.AUTHENTICATION:
        # Not this command's fault: it waits (pending) while the connection's calls are stopped.
        _attempt(conn, ctx, connection, item, number, request, result, body, category, keep_open=True)
        conn.execute(update(commands).where(commands.c.id == item.id)
                     .values(status="pending", next_attempt_at=now, updated_at=now))
        stop_calls(conn, ctx, connection, f"{result.outcome.code}: {result.outcome.message}")
        outcome.stopped_calls = True
        return outcome
    policy = policy_for(category)
    delay = retry_delay(number, _schedule(connection), retry_after_s=result.outcome.retry_after_s, rng=rng) \
        if policy.retryable else None
    _attempt(conn, ctx, connection, item, number, request, result, body, category, keep_open=delay is not None)
    if delay is None:
        conn.execute(update(commands).where(commands.c.id == item.id)
                     .values(status="failed", next_attempt_at=None, updated_at=now))
        # A retryable failure whose schedule is used up needs a person now.
        conn.execute(update(failures).where(failures.c.command_id == item.id,
                                            failures.c.state == str(TriageState.RETRYING))
                     .values(state=str(TriageState.NEEDS_REVIEW), updated_at=now))
    else:
        conn.execute(update(commands).where(commands.c.id == item.id).values(
            status="pending", next_attempt_at=now + timedelta(seconds=delay), updated_at=now))
    return outcome


def _schedule(connection: ConnectionInfo) -> tuple[int, ...]:
    sync = connection.settings.get("sync")
    custom = sync.get("retry_schedule_s") if isinstance(sync, dict) else None
    return tuple(custom) if isinstance(custom, list) and custom else DEFAULT_SCHEDULE_S


def _attempt(conn: Connection, ctx: ServiceContext, connection: ConnectionInfo, item: Claimed, number: int,
             request: dict[str, Any], result: CallResult, body: str | None, category: Category | None,
             keep_open: bool = False) -> None:
    """The attempt row; a failure opens one failure per command and category (a second
    attempt failing the same way updates it: a retried command is one item in the queue)."""
    existing = None
    if category is not None:
        existing = conn.execute(select(failures.c.id).where(
            failures.c.command_id == item.id, failures.c.category == str(category),
            failures.c.state.not_in(_CLOSED))).first()
    command = _CommandRef(item.id, item.connection_id, item.record_id)
    if existing is None:
        record_attempt(conn, ctx, command=command, provider=connection.provider, number=number, request=request,
                       response_status=result.status_code, response_body=body, latency_ms=result.latency_ms,
                       category=category, code=result.outcome.code, message=_message(number, result))
    else:
        from .commands import attempts

        conn.execute(attempts.insert().values(
            id=ctx.ids.new("att"), command_id=item.id, number=number, request=request,
            response_status=result.status_code, response_body=body, latency_ms=result.latency_ms,
            outcome=str(category), created_at=ctx.clock()))
        conn.execute(update(commands).where(commands.c.id == item.id).values(attempts=number))
        conn.execute(update(failures).where(failures.c.id == existing.id).values(
            message=_message(number, result), updated_at=ctx.clock()))


@dataclass(frozen=True, slots=True)
class _CommandRef:
    id: str
    connection_id: str
    record_id: str | None


def _message(number: int, result: CallResult) -> str:
    return f"attempt {number}: {result.outcome.code}: {result.outcome.message}"[:500]


def _close_failures(conn: Connection, command_id: str, now: datetime) -> None:
    conn.execute(update(failures).where(failures.c.command_id == command_id, failures.c.state.not_in(_CLOSED))
                 .values(state=str(TriageState.RESOLVED), updated_at=now))


def _move_record(conn: Connection, ctx: ServiceContext, connection: ConnectionInfo, item: Claimed,
                 mapped: Any, code: str) -> None:
    """The command's record after a success: the status and fields the answer shows (at least
    `submitted`), linked to the provider's object so its events find this record."""
    if item.record_id is None:
        return
    row = conn.execute(select(records).where(records.c.id == item.record_id)).first()
    if row is None:
        return
    target = mapped.status if mapped is not None and mapped.status is not None else Status.SUBMITTED
    if mapped is not None:
        linked = conn.execute(select(refs.c.record_id).where(
            refs.c.connection_id == connection.id, refs.c.kind == mapped.kind,
            refs.c.external_id == mapped.external_id)).scalar()
        if linked is None:
            conn.execute(refs.insert().values(id=ctx.ids.new("ref"), connection_id=connection.id,
                                              provider=connection.provider, kind=mapped.kind,
                                              external_id=mapped.external_id, record_id=item.record_id))
        elif linked != item.record_id:
            _superseded(conn, ctx, item, row, linked)
            return
    current = Status(row.status)
    fields = mapped.fields if mapped is not None else row.fields
    if current == target and fields == row.fields:
        return
    if current != target and not can_transition(current, target):
        return  # the record moved on (an event was faster): the answer is older news
    changed = sorted(key for key in set(fields) | set(row.fields) if fields.get(key) != row.fields.get(key))
    now = ctx.clock()
    version = row.version + 1
    conn.execute(update(records).where(records.c.id == row.id, records.c.version == row.version)
                 .values(status=str(target), version=version, fields=fields, updated_at=now))
    conn.execute(transitions.insert().values(
        id=ctx.ids.new("trn"), record_id=row.id, version=version, from_status=str(current), to_status=str(target),
        cause="command", actor=ctx.actor, mapping_version=mapped.mapping_version if mapped is not None else None,
        delivery_id=None, command_id=item.id, reason=f"{item.intent} succeeded ({code})", changed_fields=changed,
        occurred_at=None, created_at=now))


def _superseded(conn: Connection, ctx: ServiceContext, item: Claimed, row: Any, other: str) -> None:
    """The provider's object reached us as an event (polled or pushed) before this command's
    answer, and the event made a record of its own: the command now points at that record,
    and the draft it made is closed, saying where its object is."""
    conn.execute(update(commands).where(commands.c.id == item.id).values(record_id=other))
    current = Status(row.status)
    if not can_transition(current, Status.CANCELLED) or current is not Status.DRAFT:
        return
    now = ctx.clock()
    conn.execute(update(records).where(records.c.id == row.id, records.c.version == row.version)
                 .values(status=str(Status.CANCELLED), version=row.version + 1, updated_at=now))
    conn.execute(transitions.insert().values(
        id=ctx.ids.new("trn"), record_id=row.id, version=row.version + 1, from_status=str(current),
        to_status=str(Status.CANCELLED), cause="command", actor=ctx.actor, mapping_version=None, delivery_id=None,
        command_id=item.id, reason=f"superseded by record {other}: the provider's event about this "
                                   f"{item.intent} arrived before its answer", changed_fields=[],
        occurred_at=None, created_at=now))


def connection_infos(ctx: ServiceContext) -> dict[str, ConnectionInfo]:
    """Every connection by ID (the dispatcher's view of names, providers and settings)."""
    from .connections import _info

    with reading(ctx.engine) as conn:
        return {row.id: _info(row) for row in conn.execute(select(connections))}


OpenClient = Callable[[ConnectionInfo], ProviderClient]


class Clients:
    """One client per connection, reopened when the connection changes (a new version: a new
    base URL or key reference). `open_client` is services.provider_calls.open_client bound to
    the engine's vaults."""

    def __init__(self, open_client: OpenClient) -> None:
        self._open = open_client
        self._clients: dict[str, tuple[int, ProviderClient]] = {}
        self._lock = threading.Lock()  # the engine's poll jobs share one pool across threads

    def get(self, connection: ConnectionInfo) -> ProviderClient:
        with self._lock:
            held = self._clients.get(connection.id)
            if held is not None and held[0] == connection.version:
                return held[1]
            if held is not None:
                held[1].close()
            client = self._open(connection)
            self._clients[connection.id] = (connection.version, client)
            return client

    def close(self) -> None:
        with self._lock:
            for _, client in self._clients.values():
                client.close()
            self._clients.clear()


def dispatch_once(ctx: ServiceContext, clients: Clients, *, limit: int = 100, claim_s: float = CLAIM_S,
                  connection_ids: list[str] | None = None, stop: Callable[[], bool] = lambda: False,
                  infos: Mapping[str, ConnectionInfo] | None = None,
                  held_back: Callable[[str], bool] = lambda _connection_id: False,
                  senders: ThreadPoolExecutor | None = None, parallel: int = 1,
                  gate: CallGate | None = None) -> DispatchReport:
    """Claim due commands and dispatch them, `parallel` at a time on `senders`' threads (a call
    mostly waits for the provider); this thread writes their answers, a group of them in one
    transaction (services/dispatch_bulk). Just before its call, a command
    is left unsent if `stop()` is true, or `held_back(connection ID)` (paused since the claim),
    or its claim was lost; those are released at the end. A connection whose client cannot be
    opened (no key, vault locked) has its commands released for a while; the reason is logged.
    `gate` (the engine's): the connection's circuit breaker and outbound pace decide which
    commands go and when; the others are released unsent, and the breaker counts the answers in
    the transaction that writes them."""
    access.require(ctx, "call")
    report = DispatchReport()
    claimed = claim(ctx, limit=limit, claim_s=claim_s, connection_ids=connection_ids)
    report.claimed = len(claimed)
    report.taken_over = sum(1 for item in claimed if item.taken_over)
    if not claimed:
        return report
    infos = infos if infos is not None else connection_infos(ctx)
    run = _Run(ctx, report, claim_s, stop, held_back, gate)
    waiting: list[Claimed] = []
    for item in claimed:
        connection = infos.get(item.connection_id)
        if connection is None or held_back(item.connection_id):
            waiting.append(item)
            continue
        try:
            client = clients.get(connection)
        except Exception as exc:  # one line, logged; the command waits for the connection to be callable
            log.warning("cannot call %s: %s", connection.name, exc)
            release(ctx, [item], after_s=UNCALLABLE_WAIT_S)
            continue
        run.add(item, connection, client)
    release(ctx, waiting)
    if gate is not None and run.entries:  # breaker and pace (services/breaker.CallGate): who goes now, when
        run.admit(gate)
    if senders is None or parallel <= 1:
        for entry in run.entries:
            run.keep_claims()
            run.write([(entry, run.call(entry))])
    else:
        run.pipelined(senders)
    run.release_unsent()
    return report


@dataclass(frozen=True, slots=True)
class _Entry:
    id: str
    connection: ConnectionInfo
    client: ProviderClient
    capabilities: Capabilities
    paths: PathTree
    at: float = 0.0  # epoch seconds when its pace lets it go (0: at once)


class _Run:
    """One dispatch_once's claimed commands: their calls, the claims renewed while they wait,
    the answers written as they come in, the unsent ones released."""

    def __init__(self, ctx: ServiceContext, report: DispatchReport, claim_s: float, stop: Callable[[], bool],
                 held_back: Callable[[str], bool], gate: CallGate | None = None) -> None:
        self.ctx, self.report, self.claim_s = ctx, report, claim_s
        self.stop, self.held_back, self.gate = stop, held_back, gate
        self.entries: list[_Entry] = []
        self.current: dict[str, Claimed] = {}  # by command ID: the claim as it stands (renewed)
        self.lost: set[str] = set()
        self.unsent: list[str] = []
        self._paths: dict[str, PathTree] = {}

    def add(self, item: Claimed, connection: ConnectionInfo, client: ProviderClient) -> None:
        adapter = self.ctx.adapters.get(connection.provider)
        paths = self._paths.get(connection.provider)
        if paths is None:
            paths = self._paths[connection.provider] = answer_paths(adapter.redacted_paths)
        self.current[item.id] = item
        self.entries.append(_Entry(item.id, connection, client, adapter.capabilities, paths))

    def admit(self, gate: CallGate) -> None:
        """Only the commands the breaker lets through now, each with its slot in the pace; the
        others go back to the outbox for as long as the gate says."""
        admitted = gate.admit([entry.connection for entry in self.entries])
        kept: list[_Entry] = []
        for entry, verdict in zip(self.entries, admitted, strict=True):
            if verdict.at is None:
                release(self.ctx, [self.current.pop(entry.id)], after_s=verdict.wait_s)
            else:
                kept.append(replace(entry, at=verdict.at))
        self.entries = kept

    def call(self, entry: _Entry) -> CallResult | None:
        """The command's attempt (on a sender thread), or None: not to be sent now."""
        if self.gate is not None:
            if entry.at:
                self.gate.wait_until(entry.at)  # its slot in the connection's pace
            if self.gate.holds(entry.connection.id):
                return None  # its breaker opened on an earlier answer of this batch
        item = self.current.get(entry.id)
        if item is None or self.stop() or entry.id in self.lost or self.held_back(entry.connection.id):
            return None
        return send(entry.client, entry.capabilities, item)

    def keep_claims(self, waiting: list[str] | None = None) -> None:
        """Past half its time, the claim of every command not yet written is renewed (a slow
        batch: another engine would take the rest over while they wait their turn here)."""
        ids = waiting if waiting is not None else list(self.current)
        pending = [self.current[i] for i in ids if i in self.current]
        if not pending or (min(item.deadline for item in pending) - self.ctx.clock()).total_seconds() >= self.claim_s / 2:
            return
        kept = renew(self.ctx, pending, self.claim_s)
        self.current.update((item.id, item) for item in kept)
        lost = {item.id for item in pending} - {item.id for item in kept}
        self.lost |= lost
        for command_id in lost:
            del self.current[command_id]

    def pipelined(self, senders: ThreadPoolExecutor) -> None:
        """All calls queued on the senders; the answers written when all are in, or every half
        second while they come in slowly. Not one write per answer: this thread would wait for
        the interpreter lock behind the busy senders at every statement (each gives it up)."""
        futures = {senders.submit(self.call, entry): entry for entry in self.entries}
        outstanding: set[Future[CallResult | None]] = set(futures)
        try:
            while outstanding:
                done, outstanding = wait(outstanding, timeout=0.5)
                self.keep_claims([futures[future].id for future in outstanding])
                self.write([(futures[future], future.result()) for future in done])
        except BaseException:
            # An attempt's unexpected error, or a failed write: the calls not started yet are
            # dropped (their claims expire and the next claim retries them safely, by lookup
            # or key), so nothing more is sent whose answer nobody would write.
            for future in outstanding:
                future.cancel()
            raise

    def write(self, answered: list[tuple[_Entry, CallResult | None]]) -> None:
        from .dispatch_bulk import Answer, record_many  # it builds on this module's record_in

        answers: list[Answer] = []
        for entry, result in answered:
            if entry.id in self.lost:
                continue  # another engine holds it now: its attempt counts
            if result is None:
                self.unsent.append(entry.id)
                continue
            answers.append(Answer(entry.connection, self.current.pop(entry.id), result, entry.paths))
        if not answers:
            return
        with writing(self.ctx.engine) as conn:  # one commit for the group's attempts
            outcomes = record_many(conn, self.ctx, answers)
            if self.gate is not None:  # the answers, counted by the breaker in the same commit
                self.gate.observed_in(conn, [(answer.connection, answer.result.outcome.category)
                                             for answer in answers])
        for answer, written in zip(answers, outcomes, strict=True):
            if written is not None:
                self.report.count(answer.connection.name, written.outcome)

    def release_unsent(self) -> None:
        release(self.ctx, [self.current[i] for i in self.unsent if i in self.current])
