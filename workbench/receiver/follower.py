"""The follower: applies stored-but-unapplied (`held`) deliveries of active connections through
the ingest pipeline, off the request path. The same rows `workbench connection resume`
applies; a paused connection's wait for its resume.

It works a step at a time so that the store process (store_process.py) can commit the next
batch of requests in between: a request waits for at most one step. A step's size follows a
time budget (STEP_BUDGET_S): a step has a fixed cost of a few milliseconds (its queries and
their compilation), so steps of a few dozen spent most of their time on it, while a step of
hundreds would hold the next batch for tens of milliseconds. Each step locks the connection's
row first (as resuming does), so several receivers sharing a PostgreSQL store apply each
delivery once, and a connection paused meanwhile holds."""

from __future__ import annotations

import logging
import time
from collections import Counter, deque
from collections.abc import Mapping

from sqlalchemy import select

from store.database import writing
from store.models import Connection as ConnectionRow, Delivery
from workbench.services.connections import _get as locked_connection
from workbench.services.context import ServiceContext
from workbench.services.header_mac import header_key
from workbench.services.held import apply_held
from workbench.services.ingest import HELD
from workbench.services.ingest_run import one_line
from workbench.services.payload_crypto import Vaults

log = logging.getLogger(__name__)

deliveries = Delivery.__table__
connections = ConnectionRow.__table__
RETRY_S = 0.5  # a step that failed is tried again after this long
FIRST_STEP = 32  # deliveries in the first step; later ones sized to take about STEP_BUDGET_S
MIN_STEP, MAX_STEP = 32, 1000  # MIN_STEP: below it the fixed cost is most of a step; MAX_STEP: held.PAGE
STEP_BUDGET_S = 0.010  # quiet runs: 6 ms gave steps of ~50 at 160 us a delivery, 10 ms ~120 at 90 us


class Follower:
    def __init__(self, ctx: ServiceContext, vaults: Vaults) -> None:
        self._ctx, self._vaults = ctx, vaults
        self._mac_key = header_key(ctx.engine)
        # Delivery IDs to apply, by connection ID, oldest first, in the groups they came in,
        # each with when it came (monotonic): how long the oldest has waited is known exactly.
        self._due: dict[str, deque[tuple[float, list[str]]]] = {}
        self._resume_at = 0.0  # monotonic: after a failed step, nothing until then
        self.step_size = FIRST_STEP
        self.applied: Counter[str] = Counter()

    def add(self, held: Mapping[str, list[str]]) -> None:
        """Deliveries committed held, by connection ID."""
        now = time.monotonic()
        for connection_id, ids in held.items():
            if ids:
                self._due.setdefault(connection_id, deque()).append((now, list(ids)))

    def sweep(self) -> None:
        """Add every held delivery of an active connection: what a receiver killed before
        applying left behind. Their adapters are loaded now: importing one in the first step
        held a batch of requests for tens of milliseconds."""
        with self._ctx.engine.connect() as conn:
            active = conn.execute(select(connections.c.id, connections.c.provider)
                                  .where(connections.c.paused.is_(False))).all()
            for provider in {row.provider for row in active} & set(self._ctx.adapters.names()):
                self._ctx.adapters.get(provider)
            for connection_id, _ in active:
                ids = conn.execute(select(deliveries.c.id).where(deliveries.c.connection_id == connection_id,
                                                                 deliveries.c.verdict == str(HELD))
                                   .order_by(deliveries.c.id)).scalars().all()
                if ids:
                    self.add({connection_id: list(ids)})

    def ready(self) -> bool:
        """Something to apply, and not waiting after a failure."""
        return bool(self._due) and time.monotonic() >= self._resume_at

    def backlog(self) -> int:
        return sum(len(ids) for groups in self._due.values() for _, ids in groups)

    def waited(self) -> float:
        """Seconds the longest-waiting of the due deliveries has waited (0 when none)."""
        if not self._due:
            return 0.0
        return time.monotonic() - min(groups[0][0] for groups in self._due.values())

    def step(self) -> None:
        """Apply up to `step_size` deliveries of the connection that comes next (connections take
        turns); a failure puts them back."""
        connection_id, groups = next(iter(self._due.items()))
        taken: list[tuple[float, list[str]]] = []
        count = 0
        while groups and count < self.step_size:
            since, ids = groups.popleft()
            room = self.step_size - count
            if len(ids) > room:
                groups.appendleft((since, ids[room:]))
                ids = ids[:room]
            taken.append((since, ids))
            count += len(ids)
        del self._due[connection_id]
        if groups:
            self._due[connection_id] = groups  # to the back: connections take turns
        started = time.monotonic()
        try:
            self._apply(connection_id, [delivery for _, ids in taken for delivery in ids])
            if count == self.step_size:  # a full step: its length says how big the next may be
                self._resize(time.monotonic() - started)
        except Exception as exc:  # the store is unavailable or busy: tried again shortly
            log.warning("receiver: applying %d deliveries of %s failed (%s); will retry", count, connection_id,
                        one_line(exc))
            groups = self._due.pop(connection_id, deque())
            groups.extendleft(reversed(taken))
            self._due[connection_id] = groups
            self._resume_at = time.monotonic() + RETRY_S

    def _resize(self, took_s: float) -> None:
        """Towards the size that takes STEP_BUDGET_S: at most doubled at a time (one quick step
        says little), shrunk at once (a slow one held a batch)."""
        factor = min(2.0, STEP_BUDGET_S / max(took_s, 1e-4))
        self.step_size = max(MIN_STEP, min(MAX_STEP, int(self.step_size * factor)))

    def _apply(self, connection_id: str, ids: list[str]) -> None:
        with writing(self._ctx.engine) as conn:
            name = conn.execute(select(connections.c.name).where(connections.c.id == connection_id)).scalar()
            if name is None:
                return
            info = locked_connection(conn, name, for_update=True)
            if info.paused:
                return  # held until resumed (the resume applies them)
            counts = apply_held(conn, self._ctx, info, self._vaults, only=ids, mac_key=self._mac_key)
        self.applied.update(counts)
