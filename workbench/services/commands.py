"""Commands (the outbox) and their attempts: what we asked the provider, and how each
exchange ended, classified into the failure taxonomy."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, update

from store.models import Attempt, Command, Failure
from workbench.domain.taxonomy import Category, policy_for

from .context import ServiceContext
from .failures_write import failure_row

commands = Command.__table__
attempts = Attempt.__table__
failures = Failure.__table__


def enqueue(conn: Connection, ctx: ServiceContext, *, connection_id: str, record_id: str | None, intent: str,
            payload: dict[str, Any], idempotency_key: str | None = None) -> str:
    """Write a command in the caller's transaction, so it commits with the intent (outbox)."""
    command_id = ctx.ids.new("cmd")
    now = ctx.clock()
    conn.execute(commands.insert().values(
        id=command_id, connection_id=connection_id, record_id=record_id, operation_id=ctx.ids.new("op"),
        idempotency_key=idempotency_key or command_id, intent=intent, payload=payload, status="pending",
        attempts=0, next_attempt_at=now, created_at=now, updated_at=now))
    return command_id


def record_attempt(conn: Connection, ctx: ServiceContext, *, command: Any, provider: str, number: int,
                   request: dict[str, Any], response_status: int | None, response_body: str | None,
                   latency_ms: int | None, category: Category | None, code: str, message: str) -> str | None:
    """Store one exchange; a failed one opens a failure with its category's policy. Returns
    the failure's ID, if any."""
    now = ctx.clock()
    conn.execute(attempts.insert().values(
        id=ctx.ids.new("att"), command_id=command.id, number=number, request=request,
        response_status=response_status, response_body=response_body, latency_ms=latency_ms,
        outcome=str(category) if category else "ok", created_at=now))
    if category is None:
        status = "succeeded"
    else:
        status = "pending" if policy_for(category).retryable else "failed"
    conn.execute(update(commands).where(commands.c.id == command.id)
                 .values(status=status, attempts=number, updated_at=now))
    if category is None:
        return None
    failure_id = ctx.ids.new("fail")
    conn.execute(failures.insert().values(failure_row(
        failure_id=failure_id, category=category, provider=provider, code=code, message=message, now=now,
        connection_id=command.connection_id, record_id=command.record_id, command_id=command.id)))
    return failure_id
