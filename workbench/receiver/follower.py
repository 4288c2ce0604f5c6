"""The follower: applies stored-but-unapplied (`held`) deliveries of active connections through
the ingest pipeline, off the request path. The same rows `workbench connection resume`
applies; a paused connection's wait for its resume.

It works a step at a time (a few dozen deliveries in one transaction) so that the store
process (store_process.py) can commit the next batch of requests in between: a request waits
for at most one step. Each step locks the connection's row first (as resuming does), so several
receivers sharing a PostgreSQL store apply each delivery once, and a connection paused
meanwhile holds."""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Mapping

from sqlalchemy import select

from store.database import writing
from store.models import Connection as ConnectionRow, Delivery
from workbench.services.connections import _get as locked_connection
from workbench.services.context import ServiceContext
from workbench.services.held import apply_held
from workbench.services.ingest import HELD
from workbench.services.ingest_run import one_line
from workbench.services.payload_crypto import Vaults

log = logging.getLogger(__name__)

deliveries = Delivery.__table__
connections = ConnectionRow.__table__
RETRY_S = 0.5  # a step that failed is tried again after this long
STEP = 32  # deliveries per transaction: a batch of requests waits for at most one step


class Follower:
    def __init__(self, ctx: ServiceContext, vaults: Vaults) -> None:
        self._ctx, self._vaults = ctx, vaults
        self._due: dict[str, list[str]] = {}  # delivery IDs to apply, by connection ID, oldest first
        self._since: float | None = None  # monotonic: when the oldest of them was added
        self._resume_at = 0.0  # monotonic: after a failed step, nothing until then
        self.applied: Counter[str] = Counter()

    def add(self, held: Mapping[str, list[str]]) -> None:
        """Deliveries committed held, by connection ID."""
        for connection_id, ids in held.items():
            self._due.setdefault(connection_id, []).extend(ids)
        if self._due and self._since is None:
            self._since = time.monotonic()

    def sweep(self) -> None:
        """Add every held delivery of an active connection: what a receiver killed before
        applying left behind."""
        with self._ctx.engine.connect() as conn:
            active = conn.execute(select(connections.c.id).where(connections.c.paused.is_(False))).scalars().all()
            for connection_id in active:
                ids = conn.execute(select(deliveries.c.id).where(deliveries.c.connection_id == connection_id,
                                                                 deliveries.c.verdict == str(HELD))
                                   .order_by(deliveries.c.id)).scalars().all()
                if ids:
                    self.add({connection_id: list(ids)})

    def ready(self) -> bool:
        """Something to apply, and not waiting after a failure."""
        return bool(self._due) and time.monotonic() >= self._resume_at

    def backlog(self) -> int:
        return sum(len(ids) for ids in self._due.values())

    def waited(self) -> float:
        """Seconds the longest-waiting of the due deliveries has waited (0 when none)."""
        return 0.0 if self._since is None else time.monotonic() - self._since

    def step(self) -> None:
        """Apply up to STEP deliveries of the connection waiting longest; a failure puts them back."""
        connection_id, ids = next(iter(self._due.items()))
        taken, rest = ids[:STEP], ids[STEP:]
        del self._due[connection_id]
        if rest:
            self._due[connection_id] = rest  # to the back: connections take turns
        # Roughly: the rest have waited since this step (exact enough to bound the wait).
        self._since = time.monotonic() if self._due else None
        try:
            self._apply(connection_id, taken)
        except Exception as exc:  # the store is unavailable or busy: tried again shortly
            log.warning("receiver: applying %d deliveries of %s failed (%s); will retry", len(taken), connection_id,
                        one_line(exc))
            self._due[connection_id] = taken + self._due.pop(connection_id, [])
            self._resume_at = time.monotonic() + RETRY_S

    def _apply(self, connection_id: str, ids: list[str]) -> None:
        with writing(self._ctx.engine) as conn:
            name = conn.execute(select(connections.c.name).where(connections.c.id == connection_id)).scalar()
            if name is None:
                return
            info = locked_connection(conn, name, for_update=True)
            if info.paused:
                return  # held until resumed (the resume applies them)
            counts = apply_held(conn, self._ctx, info, self._vaults, only=ids)
        self.applied.update(counts)
