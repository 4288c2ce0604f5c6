"""What the Providers screen says about each connection beyond its health: what its adapter
can do, how its webhooks' signatures stand (active secrets by name, the newest verified and
failed deliveries) and where live receivers take its webhooks.

Cheap on a store with millions of deliveries: per connection, the newest failed signature is
one probe of a partial index holding only failed rows; the newest verified one walks the
(connection_id, received_at) index backwards from the newest delivery and stops at the first
verified, never further back than VERIFIED_WITHIN deliveries (a connection that signs has a
verified delivery near the top; one that does not would otherwise be read end to end)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from urllib.parse import quote

from sqlalchemy import Connection, func, literal_column, select

from adapters.protocol import Capabilities, Pagination
from adapters.registry import UnknownProvider
from store.database import reading
from store.models import Breaker, Command, Delivery, Process, SyncState

from . import access, connections, processes, secret_refs, sync_schedule
from .context import ServiceContext
from .errors import ServiceError
from .pace import outbound_rate
from .pacing import drain_s
from .signatures import WEBHOOK_SECRET

deliveries = Delivery.__table__
process_table = Process.__table__
sync_state = SyncState.__table__
command_table = Command.__table__
breaker_table = Breaker.__table__

VERIFIED_WITHIN = 10_000  # newest deliveries searched for the last verified one


@dataclass(frozen=True, slots=True)
class SignatureStatus:
    secrets: tuple[str, ...]  # active webhook secrets' names, newest first (never values)
    last_verified_at: datetime | None = None
    last_verified_secret: str | None = None
    last_failed_at: datetime | None = None
    last_failed_secret: str | None = None  # the secret tried
    problem: str | None = None  # why the secrets could not be read (damaged references)

    @property
    def latest(self) -> str:
        """The newest checked delivery's verdict, "none" without active secrets, or "-" before
        any delivery was checked."""
        if self.last_failed_at and (self.last_verified_at is None or self.last_failed_at > self.last_verified_at):
            return "failed"
        if self.last_verified_at:
            return "verified"
        return "none" if not self.secrets else "-"


@dataclass(frozen=True, slots=True)
class EngineView:
    """The sync engine as it concerns one connection (issue 11): the live engines' heartbeats,
    and this connection's polling and stopped calls (sync_state)."""

    heartbeats: tuple[datetime, ...]  # live engines' last heartbeats, newest first
    last_poll_at: datetime | None = None
    lag_s: int | None = None
    calls_stopped_at: datetime | None = None
    calls_stopped_reason: str | None = None
    stopped_key: str | None = None  # the api_key reference that failed
    queued: int = 0  # commands pending or being dispatched
    rate_per_s: float | None = None  # the outbound pace (None: unpaced)
    drain_s: float | None = None  # the queue's expected drain time at that pace
    breaker: str = "closed"  # the circuit breaker: closed, open or half_open
    breaker_reason: str | None = None
    # The schedule (services/sync_schedule); None: not polled / reconciled on demand only.
    poll_interval_s: float | None = None
    next_poll_at: datetime | None = None
    reconcile_interval_s: float | None = None
    last_reconcile_at: datetime | None = None
    next_reconcile_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class ProviderStatus:
    connection: str
    capabilities: Capabilities | None  # None: no adapter for the provider here
    signature: SignatureStatus
    receivers: tuple[str, ...]  # live receivers' base URLs
    # None where no engine ever ran on this store and the connection has no sync state.
    engine: EngineView | None = None

    @property
    def hook_urls(self) -> list[str]:
        return [f"{address}/hooks/{quote(self.connection, safe='')}" for address in self.receivers]


def describe_capabilities(capabilities: Capabilities) -> list[str]:
    """The capabilities in plain words, one short phrase each: what it can, then what it cannot."""
    can: list[str] = []
    if capabilities.webhooks:
        scheme = capabilities.signature_scheme
        can.append(f"webhooks signed {scheme}" if scheme else "webhooks (unsigned)")
    flags = ((capabilities.event_listing, "event listing"), (capabilities.polling_cursor, "polling cursor"),
             (capabilities.idempotency_keys, "idempotency keys"),
             (capabilities.lookup_by_reference, "lookup by our reference"))
    can.extend(what for flag, what in flags if flag)
    if capabilities.pagination is not Pagination.NONE:
        can.append(f"{capabilities.pagination} pagination")
    if capabilities.rate_limit_signals:
        signals = sorted(signal.replace("status:", "HTTP ").replace("header:", "")
                         for signal in capabilities.rate_limit_signals)
        can.append(f"rate limits: {', '.join(signals)}")
    cannot = [f"no {what}" for flag, what in ((capabilities.webhooks, "webhooks"), *flags) if not flag]
    return can + cannot


def provider_status(ctx: ServiceContext, now: datetime) -> dict[str, ProviderStatus]:
    """Every connection's status by connection ID; `now`: what "active" secrets and "live"
    receivers are judged at."""
    access.require(ctx, "read")
    infos = connections.list_connections(ctx)
    receivers = tuple(p.address for p in processes.live(ctx, "receiver", now) if p.address)
    heartbeats = tuple(p.seen_at for p in processes.live(ctx, "engine", now))
    result: dict[str, ProviderStatus] = {}
    with reading(ctx.engine) as conn:
        engine_ran = bool(heartbeats) or conn.execute(
            select(process_table.c.id).where(process_table.c.kind == "engine").limit(1)).first() is not None
        states = {row.connection_id: row for row in conn.execute(select(sync_state))}
        breakers = {row.connection_id: row for row in conn.execute(select(breaker_table))}
        reconciled = sync_schedule.last_full_runs_in(conn)
        queued: dict[str, int] = dict(conn.execute(
            select(command_table.c.connection_id, func.count())
            .where(command_table.c.status.in_(("pending", "dispatching")))
            .group_by(command_table.c.connection_id)).all())
        for info in infos:
            try:
                capabilities: Capabilities | None = ctx.adapters.get(info.provider).capabilities
            except UnknownProvider:
                capabilities = None
            problem = None
            try:
                active = [ref for ref in secret_refs.references(info)
                          if ref.kind == WEBHOOK_SECRET and ref.state(now) == "active"]
                names = tuple(ref.name for ref in sorted(active, key=lambda ref: ref.added_at, reverse=True))
            except ServiceError as exc:
                names, problem = (), str(exc)
            verified = _last_verified(conn, info.id)
            failed = _last_failed(conn, info.id)
            state = states.get(info.id)
            engine = None
            if engine_ran or state is not None:
                waiting = int(queued.get(info.id, 0))
                rate = outbound_rate(info, ctx.adapters)
                breaker = breakers.get(info.id)
                poll_every = (sync_schedule.poll_interval_s(info.settings)
                              if capabilities is not None and capabilities.event_listing else 0.0)
                reconcile_every = sync_schedule.reconcile_interval_s(info.settings)
                last_poll = state.last_poll_at if state is not None else None
                engine = EngineView(
                    heartbeats, queued=waiting, rate_per_s=rate, drain_s=drain_s(waiting, rate),
                    breaker=breaker.state if breaker is not None else "closed",
                    breaker_reason=breaker.reason if breaker is not None else None,
                    poll_interval_s=poll_every or None,
                    next_poll_at=sync_schedule.next_due(last_poll, poll_every, now),
                    reconcile_interval_s=reconcile_every or None, last_reconcile_at=reconciled.get(info.id),
                    next_reconcile_at=sync_schedule.next_due(reconciled.get(info.id), reconcile_every, now))
                if state is not None:
                    engine = replace(engine, last_poll_at=state.last_poll_at, lag_s=state.lag_s,
                                     calls_stopped_at=state.calls_stopped_at,
                                     calls_stopped_reason=state.calls_stopped_reason, stopped_key=state.stopped_key)
            result[info.id] = ProviderStatus(
                info.name, capabilities,
                SignatureStatus(names, verified[0] if verified else None, verified[1] if verified else None,
                                failed[0] if failed else None, failed[1] if failed else None, problem),
                receivers, engine)
    return result


def _last_failed(conn: Connection, connection_id: str) -> tuple[datetime, str | None] | None:
    # The verdict as a literal: a partial index serves only a query that states its condition.
    row = conn.execute(select(deliveries.c.received_at, deliveries.c.signature_secret)
                       .where(deliveries.c.connection_id == connection_id,
                              deliveries.c.signature_verdict == literal_column("'failed'"))
                       .order_by(deliveries.c.received_at.desc()).limit(1)).first()
    return (row[0], row[1]) if row else None


def _last_verified(conn: Connection, connection_id: str) -> tuple[datetime, str | None] | None:
    # How far back to look: the receipt time VERIFIED_WITHIN deliveries back (read from the
    # index alone), so the backward walk below ends there at the latest.
    floor = conn.execute(select(deliveries.c.received_at).where(deliveries.c.connection_id == connection_id)
                         .order_by(deliveries.c.received_at.desc())
                         .offset(VERIFIED_WITHIN - 1).limit(1)).scalar()
    query = (select(deliveries.c.received_at, deliveries.c.signature_secret)
             .where(deliveries.c.connection_id == connection_id, deliveries.c.signature_verdict == "verified")
             .order_by(deliveries.c.received_at.desc()).limit(1))
    if floor is not None:
        query = query.where(deliveries.c.received_at >= floor)
    row = conn.execute(query).first()
    return (row[0], row[1]) if row else None
