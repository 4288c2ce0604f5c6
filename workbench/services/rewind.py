"""Rewinding a connection's polling cursor (`workbench connection rewind NAME --since TIME`):
the engine then re-reads the provider's events from that time on, through the same ingest
pipeline, whose dedupe by event (the provider's event ID, or the payload hash) stores nothing
twice. The adapter's client says where its listing stood at that time (adapters.protocol
Rewinding): that is a provider's business, not the core's. A plan first (the cursor now and
what it becomes), then the move, audited.

A poll in flight when the cursor moves does not undo it: polling saves its progress only if
the cursor is still the one it started from (sync_state.save_poll `read_from`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from adapters.protocol import ProviderClient, Rewinding
from store.database import reading, writing

from . import access, audit
from .connections import get_connection
from .context import ServiceContext
from .errors import ServiceError
from .sync_state import get_state, set_cursor


@dataclass(frozen=True)
class RewindPlan:
    connection: str
    connection_id: str
    since: datetime
    current: str | None  # the cursor now (None: from the start / never polled)
    target: str | None  # what it becomes (None: from the very start)
    last_poll_at: datetime | None
    calls: int  # provider calls it took to find the target

    def as_dict(self) -> dict[str, Any]:
        return {"connection": self.connection, "since": self.since.isoformat(), "cursor_now": self.current,
                "cursor_after": self.target,
                "last_poll_at": self.last_poll_at.isoformat() if self.last_poll_at else None}


def plan_rewind(ctx: ServiceContext, name: str, since: datetime, client: ProviderClient) -> RewindPlan:
    """Where connection `name`'s cursor is and where `since` puts it, asking the provider
    through `client` (the connection's own). Refuses in one line when the adapter cannot
    rewind, the connection is not polled, or the provider does not answer."""
    access.require(ctx, "read")
    info = get_connection(ctx, name)
    adapter = ctx.adapters.get(info.provider)
    if not adapter.capabilities.event_listing:
        raise ServiceError(f"{name} is not polled: the {info.provider} adapter lists no events")
    if not isinstance(client, Rewinding):
        raise ServiceError(f"the {info.provider} adapter cannot say where its events stood at a time")
    with reading(ctx.engine) as conn:
        state = get_state(conn, info.id)
    if state is None or state.cursor is None or state.last_event_at is None:
        raise ServiceError(f"{name}'s cursor is at the start already: nothing to rewind")
    if since > state.last_event_at:  # forwards would skip events never read: never
        raise ServiceError(f"{name}'s polling has read events up to {state.last_event_at.isoformat()}; "
                           f"{since.isoformat()} is later: a rewind only goes back")
    found = client.cursor_at(since)
    outcome = found.call.outcome
    if outcome.category is not None:
        raise ServiceError(f"{name}'s provider did not say where its events stood at {since.isoformat()}: "
                           f"{outcome.category}: {outcome.message}"[:400])
    return RewindPlan(name, info.id, since, state.cursor, found.cursor, state.last_poll_at, found.calls)


def apply_rewind(ctx: ServiceContext, plan: RewindPlan, reason: str | None = None) -> None:
    """Move the cursor as `plan` says (confirmed by the operator); one audit entry."""
    access.require(ctx, "rewind")
    now = ctx.clock()
    with writing(ctx.engine) as conn:
        state = get_state(conn, plan.connection_id)
        before = state.cursor if state else None
        set_cursor(conn, plan.connection_id, plan.target, now)
        audit.append(conn, ctx, "connection.rewind", "connection", plan.connection_id,
                     before={"cursor": before}, after={"cursor": plan.target, "since": plan.since.isoformat()},
                     reason=reason)
