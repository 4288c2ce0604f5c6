"""Connection health at a glance: what the Providers screen shows. Index-backed aggregates
only, so it stays fast on a store with millions of deliveries."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import func, select

from store.database import reading
from store.models import Connection, Delivery, Failure, Record

from . import access
from .context import ServiceContext

if TYPE_CHECKING:
    from .provider_status import ProviderStatus

connections = Connection.__table__
deliveries = Delivery.__table__
failures = Failure.__table__
records = Record.__table__

OPEN_STATES = ("open", "retrying", "needs_review")
RATE_WINDOW = timedelta(hours=1)


@dataclass
class ConnectionHealth:
    id: str
    name: str
    provider: str
    environment: str
    paused: bool
    last_event_at: datetime | None
    events_last_hour: int
    open_failures: dict[str, int] = field(default_factory=dict)
    needs_review: int = 0
    # Capabilities, signature status and receiver URLs (provider_status), where asked for.
    status: ProviderStatus | None = None
    open_alerts: int = 0  # open or acknowledged alerts (alerts.open_counts), where asked for

    @property
    def open_failure_total(self) -> int:
        return sum(self.open_failures.values())

    def lag(self, now: datetime) -> timedelta | None:
        return now - self.last_event_at if self.last_event_at else None


def connection_health(ctx: ServiceContext) -> list[ConnectionHealth]:
    access.require(ctx, "read")
    now = ctx.clock()
    with reading(ctx.engine) as conn:
        result = {row.id: ConnectionHealth(row.id, row.name, row.provider, row.environment, row.paused, None, 0)
                  for row in conn.execute(select(connections).order_by(connections.c.name))}
        for health in result.values():
            # Per connection, so each is a single index probe on (connection_id, received_at).
            health.last_event_at = conn.execute(
                select(func.max(deliveries.c.received_at)).where(deliveries.c.connection_id == health.id)
            ).scalar_one()
            since = (health.last_event_at or now) - RATE_WINDOW
            health.events_last_hour = conn.execute(
                select(func.count()).select_from(deliveries)
                .where(deliveries.c.connection_id == health.id, deliveries.c.received_at > since)
            ).scalar_one()
        for row in conn.execute(select(failures.c.connection_id, failures.c.category, func.count())
                                .where(failures.c.state.in_(OPEN_STATES))
                                .group_by(failures.c.connection_id, failures.c.category)):
            if row[0] in result:
                result[row[0]].open_failures[row[1]] = row[2]
        for row in conn.execute(select(records.c.connection_id, func.count())
                                .where(records.c.status == "needs_review").group_by(records.c.connection_id)):
            if row[0] in result:
                result[row[0]].needs_review = row[1]
    return list(result.values())
