"""`workbench engine`: the sync engine, one APScheduler 3 scheduler per process.

APScheduler's job stores must not be shared by several schedulers, so each engine keeps its
jobs in memory, derived from the connections in the store (rebuilt when a connection's version
changes; the store is looked at every second), and which engine does which piece of work is
decided in the store: commands are claimed row by row (services/dispatch), a connection's poll
is done by the holder of its lease, so is its reconciliation (on request, or on a schedule
due from the newest run in the store, whoever ran it), and on SQLite only the holder of the
store-wide lease works at all (a second engine stands by and takes over when the first stops renewing it).

Operators steer it through the store: a paused connection's dispatches, polls and scheduled
reconciliations stop within a second or two; a stopped connection (authentication failure)
waits for its key's rotation.
SIGTERM (or Ctrl-C): in-flight attempts finish, claimed but unsent commands are released,
leases are given up, the process is marked stopped, and it exits 0.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import FrameType
from typing import Any

from apscheduler.executors.pool import ThreadPoolExecutor as JobThreads
from apscheduler.schedulers.background import BackgroundScheduler

from adapters.protocol import ProviderClient
from workbench.services import (
    access,
    alerting,
    breaker,
    dispatch,
    leases,
    polling,
    processes,
    provider_calls,
    recovery,
    retention,
    sync_schedule,
    sync_state,
)
from workbench.services.connections import ConnectionInfo
from workbench.services.context import ServiceContext
from workbench.services.payload_crypto import Vaults

from .metrics import EngineMetrics

log = logging.getLogger(__name__)

STORE_LEASE = "engine:store"  # SQLite: the one active engine
SCHEDULED_RECONCILE = "reconcile-every:"  # job ID prefix (the on-demand run's job is "reconcile:<id>")

# Reconciliation of one connection (services/reconcile.run_for_engine, given by the CLI): the
# engine calls it on request (`sync_state.request_reconcile`) and every sync.reconcile_interval_s
# (services/sync_schedule), holding lease reconcile:<id> either way.
Reconciler = Callable[[ServiceContext, ConnectionInfo, ProviderClient], object]


@dataclass(frozen=True)
class EngineOptions:
    dispatch_every_s: float = 0.25
    control_every_s: float = 1.0
    heartbeat_every_s: float = 5.0
    lease_ttl_s: float = 10.0  # a dead engine's leases are taken over after this
    retention_every_s: float = 3600.0
    recovery_every_s: float = 1.0  # one batch of a running recovery by filter per run
    batch: int = 64  # commands per claim
    # Calls in flight at once (a pause, a stop or an opened breaker reaches the rest of a batch
    # before their calls).
    parallel: int = 8
    call_timeout_s: float = 10.0
    alerts_every_s: float = 2.0  # alert rules evaluated, notices handed to their worker

    @property
    def claim_s(self) -> float:
        """How long a claimed command is ours: a call or two, and the lease's grace."""
        return self.lease_ttl_s + 2 * self.call_timeout_s


@dataclass
class _Known:
    versions: dict[str, int] = field(default_factory=dict)
    infos: dict[str, ConnectionInfo] = field(default_factory=dict)
    held_back: set[str] = field(default_factory=set)  # paused or stopped: nothing is sent or polled
    breaker_held: set[str] = field(default_factory=set)  # breaker open or probing: not polled


class Engine:
    def __init__(self, ctx: ServiceContext, vaults: Vaults, options: EngineOptions | None = None,
                 metrics: EngineMetrics | None = None, reconcile: Reconciler | None = None) -> None:
        self.ctx = ctx
        self.reconcile = reconcile
        self.vaults = vaults
        self.options = options or EngineOptions()
        self.metrics = metrics or EngineMetrics()
        self.stopping = threading.Event()
        self.process_id = ""
        self.active = False
        self._known = _Known()
        self._last_beat = 0.0
        self._lock = threading.Lock()
        self._reconciling_now: set[str] = set()  # connections this process reconciles right now
        self._clients = dispatch.Clients(self._open_client)
        self._poll_clients = dispatch.Clients(self._open_client)  # polls run on their own threads
        self._reconcile_clients = dispatch.Clients(self._open_client)
        self._gate = breaker.CallGate(ctx)  # circuit breaker and outbound pace, shared through the store
        self._senders = ThreadPoolExecutor(self.options.parallel, thread_name_prefix="engine-send")
        self._scheduler = BackgroundScheduler(
            timezone=UTC, executors={"default": JobThreads(4)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None})
        self._sqlite = ctx.engine.dialect.name == "sqlite"
        self._alerting = alerting.AlertingJob(ctx, vaults, lease_ttl_s=self.options.lease_ttl_s)

    # -- life -------------------------------------------------------------------------------

    def run(self, started: Callable[[Engine], None] | None = None) -> None:
        """Run until stop() (or SIGTERM/SIGINT when called on the main thread)."""
        access.require(self.ctx, "call")
        self.process_id = processes.announce(self.ctx, "engine", None)
        self._last_beat = time.monotonic()
        restore = self._install_signals()
        try:
            self._control()  # the first look at the store before any job runs
            every = self.options
            self._scheduler.add_job(self._guarded(self._control), "interval", seconds=every.control_every_s,
                                    id="control")
            self._scheduler.add_job(self._guarded(self._dispatch), "interval", seconds=every.dispatch_every_s,
                                    id="dispatch")
            self._scheduler.add_job(self._guarded(self._retention), "interval", seconds=every.retention_every_s,
                                    id="retention")
            self._scheduler.add_job(self._guarded(self._recoveries), "interval", seconds=every.recovery_every_s,
                                    id="recoveries")
            self._scheduler.add_job(self._guarded(self._alerts), "interval", seconds=every.alerts_every_s, id="alerts")
            self._scheduler.start()
            if started is not None:
                started(self)
            self.stopping.wait()
        finally:
            self._shutdown()
            restore()

    def stop(self) -> None:
        self.stopping.set()

    def _install_signals(self) -> Callable[[], None]:
        if threading.current_thread() is not threading.main_thread():
            return lambda: None
        previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}

        def handler(_signum: int, _frame: FrameType | None) -> None:
            self.stopping.set()

        for sig in previous:
            signal.signal(sig, handler)

        def restore() -> None:  # no process-wide switch left flipped
            for sig, old in previous.items():
                signal.signal(sig, old)
        return restore

    def _shutdown(self) -> None:
        self.stopping.set()
        if self._scheduler.running:
            self._scheduler.shutdown(wait=True)  # running jobs finish: a dispatch releases its unsent claims
        self._senders.shutdown(wait=True)
        self._alerting.close()  # a notice under way finishes within its notifier's timeout
        self._clients.close()
        self._poll_clients.close()
        self._reconcile_clients.close()
        if self.process_id:
            try:
                leases.release(self.ctx, self.process_id)
                processes.stopped(self.ctx, self.process_id)
            except Exception:
                log.warning("could not mark the engine stopped in the store", exc_info=True)

    def _guarded(self, job: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            if self.stopping.is_set():
                return
            try:
                job()
            except Exception as exc:  # one line in the log; the next run tries again
                log.warning("engine job %s failed: %s", job.__name__, exc)
        run.__name__ = job.__name__
        return run

    # -- control: heartbeat, leases, connections ---------------------------------------------

    def _control(self) -> None:
        now = time.monotonic()
        beat = now - self._last_beat >= self.options.heartbeat_every_s
        if beat:
            processes.beat(self.ctx, self.process_id)
            self._last_beat = now
        if self._sqlite:
            claim = leases.acquire(self.ctx, STORE_LEASE, self.process_id, self.options.lease_ttl_s)
            if claim.taken_over:
                self.metrics.takeover("store")
            if claim.held != self.active:
                log.info("engine %s %s", self.process_id, "active" if claim.held else "standing by")
            self.active = claim.held
        else:
            self.active = True
        self._refresh_connections()
        if beat or not self.metrics.observed:
            self.metrics.observe_store(self.ctx)  # gauges from the store at the heartbeat's pace

    def _refresh_connections(self) -> None:
        infos = dispatch.connection_infos(self.ctx)
        states = sync_state.all_states(self.ctx)
        held_back = set()
        for info in infos.values():
            state = states.get(info.id)
            if state is not None and state.calls_stopped_at is not None and self.active:
                if sync_state.resume_if_rotated(self.ctx, info, state):
                    state = None
            if info.paused or (state is not None and state.calls_stopped_at is not None):
                held_back.add(info.id)
            elif state is not None and state.reconcile_requested_at is not None:
                self._reconcile_requested(info, state.reconcile_requested_at)
        if self.active:
            try:  # auto-pause warnings and pauses; a pause made here is obeyed from the next look
                for name in breaker.watch(self.ctx, infos):
                    log.warning("connection %s auto-paused: failing too long", name)
            except Exception as exc:  # e.g. no role to pause: said, and the rest of control goes on
                log.warning("auto-pause watch failed: %s", exc)
        breaker_held = breaker.calls_held(self.ctx)
        versions = {info.id: info.version for info in infos.values()}
        with self._lock:
            changed = versions != self._known.versions
            self._known = _Known(versions, infos, held_back, breaker_held)
        if changed:
            self._rebuild_polls(infos)

    def _rebuild_polls(self, infos: dict[str, ConnectionInfo]) -> None:
        """The per-connection jobs: a poll every sync.interval_s where the provider lists
        events, a reconciliation every sync.reconcile_interval_s (each its own job ID prefix)."""
        polls: dict[str, float] = {}
        reconciles: dict[str, float] = {}
        for info in infos.values():
            interval = sync_schedule.poll_interval_s(info.settings)
            if interval and self.ctx.adapters.get(info.provider).capabilities.event_listing:
                polls[f"poll:{info.id}"] = interval
            every = sync_schedule.reconcile_interval_s(info.settings)
            if every and self.reconcile is not None:
                reconciles[f"{SCHEDULED_RECONCILE}{info.id}"] = every
        now = _utc_now()
        self._sync_jobs("poll:", polls, self._poller, lambda _: now)  # the first poll is due at once
        ids = [job_id.removeprefix(SCHEDULED_RECONCILE) for job_id in reconciles]
        last = sync_schedule.last_full_runs(self.ctx, ids) if ids else {}

        def first_reconcile(connection_id: str) -> datetime:
            every = reconciles[SCHEDULED_RECONCILE + connection_id]
            return sync_schedule.next_due(last.get(connection_id), every, now) or now
        self._sync_jobs(SCHEDULED_RECONCILE, reconciles, self._scheduled_reconciler, first_reconcile)

    def _sync_jobs(self, prefix: str, wanted: dict[str, float], job_for: Callable[[str], Callable[[], None]],
                   first_run: Callable[[str], datetime]) -> None:
        """Make the scheduler's `prefix` jobs exactly `wanted` (job ID: seconds between runs)."""
        for job in self._scheduler.get_jobs():
            if job.id.startswith(prefix) and job.id not in wanted:
                job.remove()
        for job_id, interval in wanted.items():
            connection_id = job_id.removeprefix(prefix)
            existing = self._scheduler.get_job(job_id)
            if existing is not None and existing.trigger.interval.total_seconds() == interval:
                continue
            # replace_existing: a changed interval reschedules from when the work is due.
            self._scheduler.add_job(self._guarded(job_for(connection_id)), "interval", seconds=interval, id=job_id,
                                    replace_existing=True, next_run_time=first_run(connection_id))

    # -- work ---------------------------------------------------------------------------------

    def _reconcile_requested(self, info: ConnectionInfo, requested_at: datetime) -> None:
        if not self.active or self.reconcile is None:
            return  # left in the store for an engine that can reconcile
        with self._lock:
            if info.id in self._reconciling_now:
                return  # a scheduled run is under way here: the request waits for the next look
        if not sync_state.take_reconcile_request(self.ctx, info.id, requested_at):
            return  # another engine took it
        reconcile = self.reconcile

        def run() -> None:
            with self._reconciling(info.id) as mine:
                if mine:
                    reconcile(self.ctx, info, self._reconcile_clients.get(info))
        run.__name__ = f"reconcile_{info.id}"
        self._scheduler.add_job(self._guarded(run), id=f"reconcile:{info.id}", replace_existing=True)

    @contextmanager
    def _reconciling(self, connection_id: str) -> Iterator[bool]:
        """Whether this engine may reconcile the connection now: none of its own threads does
        (the lease alone would let them both: a holder renews its own) and it holds the lease
        reconcile:<id> (no other engine does); both given up afterwards."""
        with self._lock:
            busy = connection_id in self._reconciling_now
            self._reconciling_now.add(connection_id)
        if busy:
            yield False
            return
        resource = f"reconcile:{connection_id}"
        try:
            held = leases.acquire(self.ctx, resource, self.process_id, 3600).held
            try:
                yield held
            finally:
                if held:
                    leases.release(self.ctx, self.process_id, resource)
        finally:
            with self._lock:
                self._reconciling_now.discard(connection_id)

    def _scheduled_reconciler(self, connection_id: str) -> Callable[[], None]:
        def reconcile_on_schedule() -> None:
            with self._lock:
                info = self._known.infos.get(connection_id)
            reconcile = self.reconcile
            if not self.active or reconcile is None or info is None or self._held_back(connection_id):
                return
            interval = sync_schedule.reconcile_interval_s(info.settings)
            with self._reconciling(connection_id) as mine:
                if not mine:
                    return
                last = sync_schedule.last_full_runs(self.ctx, [connection_id]).get(connection_id)
                now = self.ctx.clock()
                # A full run since (another engine's, or an operator's): due again from that one.
                # The slack: this job fires `interval` after the run it started, which began a
                # moment after the job fired.
                slack = min(5.0, interval / 10)
                if last is not None and (now - last).total_seconds() < interval - slack:
                    self._scheduler.modify_job(SCHEDULED_RECONCILE + connection_id,
                                               next_run_time=last + timedelta(seconds=interval))
                    return
                log.info("reconciling %s (every %ss)", info.name, f"{interval:g}")
                reconcile(self.ctx, info, self._reconcile_clients.get(info))
        reconcile_on_schedule.__name__ = f"reconcile_on_schedule_{connection_id}"
        return reconcile_on_schedule

    def _dispatch(self) -> None:
        if not self.active:
            return
        while not self.stopping.is_set():
            with self._lock:
                known = self._known
            report = dispatch.dispatch_once(self.ctx, self._clients, limit=self.options.batch, infos=known.infos,
                                            claim_s=self.options.claim_s, senders=self._senders,
                                            parallel=self.options.parallel,
                                            stop=self.stopping.is_set, held_back=self._held_back,
                                            gate=self._gate)
            self.metrics.dispatched(report)
            if report.claimed < self.options.batch:
                return  # drained: the next run looks again

    def _held_back(self, connection_id: str) -> bool:
        with self._lock:
            return connection_id in self._known.held_back

    def _poller(self, connection_id: str) -> Callable[[], None]:
        def poll() -> None:
            if not self.active or self._held_back(connection_id):
                return
            with self._lock:
                info = self._known.infos.get(connection_id)
                if connection_id in self._known.breaker_held:
                    return  # the breaker is open: the provider is left alone until a probe closes it
            if info is None:
                return
            # Held from poll to poll (renewed by each): the other engines leave this connection
            # alone until its holder misses a poll by lease_ttl_s, then one of them takes over.
            ttl = sync_schedule.poll_interval_s(info.settings) + self.options.lease_ttl_s
            claim = leases.acquire(self.ctx, f"poll:{connection_id}", self.process_id, ttl)
            if not claim.held:
                return  # another engine polls this connection
            if claim.taken_over:
                self.metrics.takeover("poll")
            client = self._poll_clients.get(info)
            report = polling.poll_connection(self.ctx, info, client, vaults=self.vaults,
                                             stop=lambda: self.stopping.is_set() or self._held_back(connection_id))
            self.metrics.polled(info.name, report)
            if report.error:
                log.warning("polling %s: %s", info.name, report.error)
        poll.__name__ = f"poll_{connection_id}"
        return poll

    def _retention(self) -> None:
        if not self.active or not access.allowed(self.ctx, "retention"):
            return  # retention purges bodies: only an engine bound admin runs it
        claim = leases.acquire(self.ctx, "retention", self.process_id, 3600)
        if claim.held:
            retention.run_retention(self.ctx)

    def _recoveries(self) -> None:
        """One batch of the oldest running recovery by filter (services/recovery), by whichever
        engine holds the `recovery` lease; its retried commands go out through _dispatch."""
        if not self.active or not access.allowed(self.ctx, "recover") or not recovery.any_running(self.ctx):
            return  # (the read first: no lease write every second for nothing)
        claim = leases.acquire(self.ctx, "recovery", self.process_id, self.options.lease_ttl_s + 60)
        if claim.held:
            recovery.run_batch(self.ctx, self.vaults)
    def _alerts(self) -> None:
        if self.active:
            self._alerting.run(self.process_id)

    def _open_client(self, info: ConnectionInfo) -> Any:
        return provider_calls.open_client(self.ctx, info.name, self.vaults, timeout_s=self.options.call_timeout_s)


def _utc_now() -> datetime:
    return datetime.now(UTC)
