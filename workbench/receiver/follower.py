"""The follower: applies stored-but-unapplied (`held`) deliveries of active connections through
the ingest pipeline, within a second of their commit and off the request path. The same
rows `workbench connection resume` applies; a paused connection's wait for its resume.

It locks the connection's row first (as resuming does), so several receivers sharing a
PostgreSQL store apply each delivery once, and a connection paused meanwhile holds."""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Mapping

from sqlalchemy import select

from store.database import writing
from store.models import Connection as ConnectionRow, Delivery
from workbench.services.connections import _get as locked_connection
from workbench.services.context import ServiceContext
from workbench.services.held import apply_held
from workbench.services.ingest import HELD
from workbench.services.payload_crypto import Vaults

log = logging.getLogger(__name__)

deliveries = Delivery.__table__
connections = ConnectionRow.__table__
WAIT_S = 0.25  # a pass after a failed one waits this long
STEP = 256  # deliveries applied per transaction: the writer gets its turn in between


class Follower:
    def __init__(self, ctx: ServiceContext, vaults: Vaults, turns: threading.Lock | None = None) -> None:
        self._ctx, self._vaults = ctx, vaults
        self._turns = turns or threading.Lock()  # shared with the writer: one of them at the store at a time
        # Deliveries stored since the last pass, by connection ID (None: every held one).
        self._due: dict[str, list[str] | None] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="receiver-follower", daemon=True)
        self.applied: Counter[str] = Counter()
        self.passes = 0

    def start(self) -> None:
        self._thread.start()

    def stored(self, held: Mapping[str, list[str] | None]) -> None:
        """The writer committed these held deliveries (by connection ID; None: look for all)."""
        with self._lock:
            for connection_id, ids in held.items():
                known = self._due.get(connection_id, [])
                self._due[connection_id] = None if ids is None or known is None else [*known, *ids]
        self._wake.set()

    def stop(self) -> None:
        """One last pass over what was stored, then end."""
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=60)

    def _run(self) -> None:
        try:  # first, what a receiver killed before applying left behind
            self.stored(dict.fromkeys(self._holding()))
        except Exception:
            log.warning("receiver: could not look for held deliveries", exc_info=True)
        while True:
            self._wake.wait(WAIT_S)
            self._wake.clear()
            stopping = self._stop.is_set()
            with self._lock:
                due, self._due = self._due, {}
            for connection_id, ids in sorted(due.items()):
                try:
                    self._apply(connection_id, ids)
                except Exception as exc:  # tried again on the next pass
                    log.warning("receiver: applying deliveries of %s failed (%s); will retry", connection_id,
                                type(exc).__name__)
                    self.stored({connection_id: ids})
            self.passes += 1
            if stopping:
                return

    def _holding(self) -> set[str]:
        """Active connections with held deliveries."""
        with self._ctx.engine.connect() as conn:
            ids = conn.execute(select(connections.c.id).where(connections.c.paused.is_(False))).scalars().all()
            return {connection_id for connection_id in ids if conn.execute(
                select(deliveries.c.id).where(deliveries.c.connection_id == connection_id,
                                              deliveries.c.verdict == str(HELD)).limit(1)).first()}

    def _apply(self, connection_id: str, ids: list[str] | None) -> None:
        steps = [None] if ids is None else [ids[start:start + STEP] for start in range(0, len(ids), STEP)]
        for step in steps:
            with self._turns, writing(self._ctx.engine) as conn:
                name = conn.execute(select(connections.c.name).where(connections.c.id == connection_id)).scalar()
                if name is None:
                    return
                info = locked_connection(conn, name, for_update=True)
                if info.paused:
                    return  # held until resumed (the resume applies them)
                counts = apply_held(conn, self._ctx, info, self._vaults, only=step)
            self.applied.update(counts)
