"""`workbench command submit`: a command, its record and its idempotency key written in one
transaction (the outbox), for the engine to dispatch. The intent is ours ("payment.create"),
checked against what the connection's adapter can do; its payload is checked by the adapter,
so a bad one is refused in one line before anything is written."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import Connection, select

from adapters.protocol import Commanding
from store.database import writing
from store.models import Command, Record, Transition
from workbench.domain.statuses import Status

from . import access, audit
from .commands import enqueue
from .connections import ConnectionInfo, get_connection
from .context import ServiceContext
from .errors import InvalidArgument, NotFound, ServiceError

records = Record.__table__
transitions = Transition.__table__
commands = Command.__table__

MAX_DATA_BYTES = 64 * 1024
MAX_KEY_LENGTH = 255


@dataclass(frozen=True)
class Submitted:
    command: str
    record: str
    created: bool  # False: the idempotency key named a command submitted before (nothing written)


def parse_data(text: str) -> dict[str, Any]:
    """`--data` as a JSON object, or one line saying what is wrong with it."""
    if len(text.encode()) > MAX_DATA_BYTES:
        raise InvalidArgument(f"--data: at most {MAX_DATA_BYTES // 1024} KiB of JSON")
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise InvalidArgument(f"--data: not JSON ({str(exc).splitlines()[0][:80]})") from None
    if not isinstance(value, dict):
        raise InvalidArgument("--data: a JSON object ({...}) is expected")
    return value


def submit(ctx: ServiceContext, connection_name: str, intent: str, payload: dict[str, Any], *,
           record_id: str | None = None, idempotency_key: str | None = None) -> Submitted:
    """Queue `intent` for connection `connection_name`. A new record (status draft, the
    adapter's record kind) is made unless `record_id` names one of the connection's records
    (commands about an existing object: confirm, cancel...). `idempotency_key` (default: the
    command's ID) is sent to providers that honour keys; submitting the same key again returns
    the first command instead of queueing a second."""
    access.require(ctx, "command")
    info = get_connection(ctx, connection_name)
    kind = _checked(ctx, info, intent, [payload])
    if idempotency_key is not None and not (0 < len(idempotency_key) <= MAX_KEY_LENGTH
                                            and idempotency_key.isprintable()):
        raise InvalidArgument(f"--idempotency-key: 1 to {MAX_KEY_LENGTH} printable characters")
    with writing(ctx.engine) as conn:
        if idempotency_key is not None:
            earlier = conn.execute(select(commands.c.id, commands.c.record_id, commands.c.intent).where(
                commands.c.connection_id == info.id, commands.c.idempotency_key == idempotency_key)).first()
            if earlier is not None:
                if earlier.intent != intent:
                    raise ServiceError(f"idempotency key already used for a {earlier.intent} command "
                                       f"({earlier.id}): use a new key")
                return Submitted(earlier.id, earlier.record_id, created=False)
        new_record = record_id is None
        if record_id is None:
            record_id = ctx.ids.new("rec")
        else:
            _check_record(conn, info.id, record_id)
        command_id = enqueue(conn, ctx, connection_id=info.id, record_id=record_id, intent=intent,
                             payload=payload, idempotency_key=idempotency_key)
        if new_record:
            _new_record(conn, ctx, info.id, record_id, kind, intent, command_id)
        audit.append(conn, ctx, "command.submit", "command", command_id,
                     after={"connection": info.name, "intent": intent, "record": record_id})
    return Submitted(command_id, record_id, created=True)


def submit_many(ctx: ServiceContext, connection_name: str, intent: str,
                payloads: list[dict[str, Any]]) -> list[Submitted]:
    """`submit` of one command per payload, each with a new record, checked alike and written
    in one transaction (one audit anchor for the lot, not one per command): a scripted load of
    the outbox. Nothing is written if one payload is refused."""
    access.require(ctx, "command")
    info = get_connection(ctx, connection_name)
    kind = _checked(ctx, info, intent, payloads)
    now = ctx.clock()
    out: list[Submitted] = []
    command_rows: list[dict[str, Any]] = []
    record_rows: list[dict[str, Any]] = []
    transition_rows: list[dict[str, Any]] = []
    for payload in payloads:
        record_id, command_id = ctx.ids.new("rec"), ctx.ids.new("cmd")
        command_rows.append(dict(
            id=command_id, connection_id=info.id, record_id=record_id, operation_id=ctx.ids.new("op"),
            idempotency_key=command_id, intent=intent, payload=payload, status="pending", attempts=0,
            next_attempt_at=now, created_at=now, updated_at=now))
        record_rows.append(_record_row(info.id, record_id, kind, now))
        transition_rows.append(_transition_row(ctx, record_id, intent, command_id, now))
        out.append(Submitted(command_id, record_id, created=True))
    with writing(ctx.engine) as conn:
        if command_rows:
            # Records first: a command and a transition name theirs.
            conn.execute(records.insert(), record_rows)
            conn.execute(commands.insert(), command_rows)
            conn.execute(transitions.insert(), transition_rows)
        audit.append_many(conn, ctx, "command.submit", "command", [
            (made.command, {"connection": info.name, "intent": intent, "record": made.record}) for made in out])
    return out


def _checked(ctx: ServiceContext, info: ConnectionInfo, intent: str, payloads: list[dict[str, Any]]) -> str:
    """The record kind for `intent`'s commands on this connection, once the adapter takes the
    intent and every payload; else one line saying what is wrong."""
    adapter = ctx.adapters.get(info.provider)
    capabilities = adapter.capabilities
    if not isinstance(adapter, Commanding) or not capabilities.intents or capabilities.record_kind is None:
        raise ServiceError(f"the {info.provider} adapter takes no commands")
    if intent not in capabilities.intents:
        raise InvalidArgument(f"{info.provider} has no intent {intent[:60]!r}: "
                              f"one of {', '.join(capabilities.intents)}")
    for payload in payloads:
        problem = adapter.check_command(intent, payload)
        if problem is not None:
            raise InvalidArgument(f"--data: {problem}")
    return capabilities.record_kind


def _check_record(conn: Connection, connection_id: str, record_id: str) -> None:
    owner = conn.execute(select(records.c.connection_id).where(records.c.id == record_id)).scalar()
    if owner != connection_id:
        raise NotFound(f"no record {record_id[:60]!r} on this connection")


def _new_record(conn: Connection, ctx: ServiceContext, connection_id: str, record_id: str, kind: str,
                intent: str, command_id: str) -> None:
    now = ctx.clock()
    conn.execute(records.insert().values(_record_row(connection_id, record_id, kind, now)))
    conn.execute(transitions.insert().values(_transition_row(ctx, record_id, intent, command_id, now)))


def _record_row(connection_id: str, record_id: str, kind: str, now: datetime) -> dict[str, Any]:
    return dict(id=record_id, connection_id=connection_id, kind=kind, status=str(Status.DRAFT), version=1, fields={},
                last_occurred_at=None, last_rank=None, last_event_key=None, created_at=now, updated_at=now)


def _transition_row(ctx: ServiceContext, record_id: str, intent: str, command_id: str, now: datetime) -> dict[str, Any]:
    return dict(id=ctx.ids.new("trn"), record_id=record_id, version=1, from_status=None, to_status=str(Status.DRAFT),
                cause="command", actor=ctx.actor, mapping_version=None, delivery_id=None, command_id=command_id,
                reason=f"{intent} submitted", changed_fields=[], occurred_at=None, created_at=now)
