"""Polling a connection's provider for events, from the cursor kept in `sync_state`, into the
same ingest pipeline webhooks go through (same dedupe by event ID, same ordering rules). For
a provider with webhooks this is the backstop that catches missed deliveries.

Polled events come over the provider's authenticated API, not as signed webhooks: they are
stored with the signature verdict `unchecked` (there is no signature to check)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from adapters.protocol import ProviderClient
from store.database import reading

from .captures import Capture
from .connections import ConnectionInfo
from .context import ServiceContext
from .ingest import ingest
from .payload_crypto import NO_VAULTS, Vaults
from .sync_state import get_state, save_poll

PAGE = 100
MAX_PAGES = 20  # per poll: a connection far behind catches up over several polls, not in one


@dataclass
class PollReport:
    pages: int = 0
    events: int = 0
    stored: int = 0  # new deliveries (the rest were known: a webhook or an earlier poll had them)
    error: str | None = None  # the page call's classified failure, if the last one failed
    category: str | None = None


def poll_connection(ctx: ServiceContext, connection: ConnectionInfo, client: ProviderClient, *,
                    vaults: Vaults = NO_VAULTS, stop: Callable[[], bool] = lambda: False,
                    max_pages: int = MAX_PAGES) -> PollReport:
    """Read the provider's events after the stored cursor, ingest them page by page, and move
    the cursor after each page is committed (a crash re-reads one page: dedupe drops it)."""
    adapter = ctx.adapters.get(connection.provider)
    with reading(ctx.engine) as conn:
        state = get_state(conn, connection.id)
    cursor = state.cursor if state is not None else None
    report = PollReport()
    while report.pages < max_pages and not stop():
        page = client.list_events(cursor, PAGE)
        report.pages += 1
        polled_at = ctx.clock()
        if page.call.outcome.category is not None:
            report.error = f"{page.call.outcome.code}: {page.call.outcome.message}"
            report.category = str(page.call.outcome.category)
            save_poll(ctx, connection.id, None, newest_event_at=None, polled_at=polled_at)
            break
        newest: datetime | None = None
        if page.bodies:
            captures = [Capture(polled_at, {}, body, "poll") for body in page.bodies]
            counts = ingest(ctx, connection.name, captures, vaults=vaults, signatures=None)
            report.events += len(page.bodies)
            report.stored += counts.total - counts.counts.get("duplicate", 0)
            try:
                newest = adapter.parse(page.bodies[-1]).occurred_at
            except Exception:  # the lag is only a gauge: ingest stored an unparseable event as such
                newest = None
        saved = save_poll(ctx, connection.id, page.next_cursor,
                          newest_event_at=newest or (polled_at if page.bodies else None), polled_at=polled_at,
                          read_from=cursor)
        if not saved or page.next_cursor is None or not page.bodies:
            break  # (not saved: the cursor was rewound meanwhile; the next poll starts there)
        cursor = page.next_cursor
    return report
