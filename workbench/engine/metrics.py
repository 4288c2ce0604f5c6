"""The engine's Prometheus metrics (`workbench engine --metrics-port P`): dispatches and their
outcomes by connection and category, polls, lease takeovers counted by this process; open
failures by category, lag per connection and heartbeat age read from the store (so they say
the same as `workbench engine status`). A registry of its own: nothing process-wide."""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from workbench.services import engine_status

if TYPE_CHECKING:
    from workbench.services.context import ServiceContext
    from workbench.services.dispatch import DispatchReport
    from workbench.services.polling import PollReport


class EngineMetrics:
    def __init__(self) -> None:
        self.observed = False
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.dispatches = Counter("workbench_dispatches", "Command attempts, by connection and outcome "
                                  "(ok or the failure category)", ["connection", "outcome"], registry=r)
        self.polls = Counter("workbench_polls", "Polls of a provider's events, by connection and outcome",
                             ["connection", "outcome"], registry=r)
        self.polled_events = Counter("workbench_polled_events", "Events read by polling", ["connection"],
                                     registry=r)
        self.takeovers = Counter("workbench_lease_takeovers", "Leases this engine took over from an engine "
                                 "that stopped renewing them", ["lease"], registry=r)
        self.claims_taken_over = Counter("workbench_command_takeovers", "Commands whose expired claim this "
                                         "engine took over", registry=r)
        self.open_failures = Gauge("workbench_open_failures", "Failures not resolved or ignored, by category",
                                   ["category"], registry=r)
        self.lag = Gauge("workbench_lag_seconds", "Age of the newest event when it was polled", ["connection"],
                         registry=r)
        self.pending = Gauge("workbench_commands", "Commands by status", ["status"], registry=r)
        self.heartbeat_age = Gauge("workbench_engine_heartbeat_age_seconds", "Seconds since each live "
                                   "engine's last heartbeat", ["engine"], registry=r)
        self.stopped = Gauge("workbench_connection_calls_stopped", "1 while a connection's calls are stopped "
                             "(authentication)", ["connection"], registry=r)
        self.breaker_open = Gauge("workbench_breaker_open", "1 while a connection's circuit breaker is open or "
                                  "probing", ["connection"], registry=r)
        self.drain = Gauge("workbench_drain_seconds", "Expected seconds to send a connection's queued commands "
                           "at its pace", ["connection"], registry=r)

    def serve(self, port: int, host: str = "127.0.0.1") -> None:
        start_http_server(port, addr=host, registry=self.registry)

    def dispatched(self, report: DispatchReport) -> None:
        for (connection, outcome), count in report.outcomes.items():
            self.dispatches.labels(connection, outcome).inc(count)
        if report.taken_over:
            self.claims_taken_over.inc(report.taken_over)

    def polled(self, connection: str, report: PollReport) -> None:
        self.polls.labels(connection, report.category or "ok").inc()
        if report.events:
            self.polled_events.labels(connection).inc(report.events)

    def takeover(self, lease: str) -> None:
        self.takeovers.labels(lease).inc()

    def observe_store(self, ctx: ServiceContext) -> None:
        """Gauges from the store (one status read, as `engine status` makes)."""
        self.observed = True
        status = engine_status.read_status(ctx)
        self.open_failures.clear()
        for category, count in status.open_failures.items():
            self.open_failures.labels(category).set(count)
        self.pending.clear()
        for name, count in status.commands.items():
            self.pending.labels(name).set(count)
        self.lag.clear()
        self.stopped.clear()
        self.breaker_open.clear()
        self.drain.clear()
        for connection in status.connections:
            if connection.lag_s is not None:
                self.lag.labels(connection.name).set(connection.lag_s)
            self.stopped.labels(connection.name).set(1 if connection.calls_stopped else 0)
            self.breaker_open.labels(connection.name).set(0 if connection.breaker == "closed" else 1)
            if connection.drain_s is not None:
                self.drain.labels(connection.name).set(connection.drain_s)
        self.heartbeat_age.clear()
        for engine in status.engines:
            self.heartbeat_age.labels(engine.id).set(engine.heartbeat_age_s)
