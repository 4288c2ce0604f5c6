"""The engine's alerts job, in one call: deliver due notices (on the worker's own threads),
evaluate the rules over the failures table, and now and then run the secret rotation watch.

On a store several engines share, only the holder of the `alerts` lease evaluates (one
alert per rule and connection needs one evaluator); every engine delivers, each notice claimed
by one of them."""

from __future__ import annotations

import time
from collections.abc import Mapping

from workbench.vault import UnlockedVault

from . import access, alert_evaluation, leases, secret_watch
from .alert_notify import NotificationWorker
from .context import ServiceContext

LEASE = "alerts"


class AlertingJob:
    def __init__(self, ctx: ServiceContext, vaults: Mapping[str, UnlockedVault], *, lease_ttl_s: float = 10.0,
                 secret_watch_every_s: float = 60.0, threads: int = 2) -> None:
        self.ctx = ctx
        self.worker = NotificationWorker(ctx, vaults, threads)
        self.lease_ttl_s = lease_ttl_s
        self.secret_watch_every_s = secret_watch_every_s
        self._last_watch: float | None = None

    def run(self, holder: str) -> alert_evaluation.EvaluationReport | None:
        """One round; the evaluation's report when this engine evaluated."""
        access.require(self.ctx, "alerts")
        self.worker.pump()
        if not leases.acquire(self.ctx, LEASE, holder, self.lease_ttl_s).held:
            return None
        report = alert_evaluation.evaluate(self.ctx)
        now = time.monotonic()
        if self._last_watch is None or now - self._last_watch >= self.secret_watch_every_s:
            self._last_watch = now
            secret_watch.check(self.ctx)
        self.worker.pump()  # what this round just opened goes out now, not a round later
        return report

    def close(self) -> None:
        self.worker.close()
