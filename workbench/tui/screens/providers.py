"""Providers (home): every connection's health at a glance; for the highlighted one, what its
provider can do, how its webhook signatures stand and where a receiver takes its webhooks."""

from __future__ import annotations

from datetime import datetime, timedelta

from rich.markup import escape
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import Static

from workbench.services import alerts, connections, health, provider_status, reconcile
from workbench.services.context import ServiceContext
from workbench.services.health import ConnectionHealth
from workbench.services.provider_status import EngineView, ProviderStatus, describe_capabilities

from ..errors import describe_error
from ..formatting import age, count, short_time
from ..vaults import unlocked_vaults
from ..widgets import Column, Row, VirtualTable
from .dialogs import PromptScreen
from .table_screen import TableScreen

COLUMNS = [
    Column("Connection", None, min_width=12),
    Column("Env", 7),
    Column("Last event", 10),
    Column("Ev/h", 7, align="right"),
    Column("Open", 6, align="right"),
    Column("Review", 6, align="right"),
    Column("State", 6),
    Column("Sig", 8),
    Column("Open failures by category", None, min_width=20, drop_below=110),
]


SIGNATURE_TONES = {"verified": "ok", "failed": "error"}


def _toned(text: str, tone: str | None) -> str | tuple[str, str]:
    return (text, tone) if tone else text


def by_category(item: ConnectionHealth) -> str:
    ordered = sorted(item.open_failures.items(), key=lambda kv: (-kv[1], kv[0]))
    return ", ".join(f"{category} {count(n)}" for category, n in ordered) or "none"


class ProvidersScreen(TableScreen[list[ConnectionHealth]]):
    WHERE = "Providers"
    NAME = "providers"
    COLUMNS = COLUMNS
    EMPTY = "no connections yet: add one with `workbench connection add`"
    WRITES = frozenset({"pause", "reconcile_now"})
    NEEDS = {"pause": "pause", "reconcile_now": "reconcile"}
    HELP = """Every connection with its health at a glance.

Last event: when the newest delivery arrived (age). Ev/h: deliveries in the hour up to the
newest one. Open: failures not yet resolved or ignored. Review: records waiting for a person.
State: active, or paused (the engine makes no calls for a paused connection). Sig: the newest
signature-checked delivery's verdict (verified or failed); none: the connection has no active
webhook secret, so its deliveries are stored unchecked; -: none checked yet.
The panel below the table breaks the open failures down by category, says in plain words what
the provider can do, names the active webhook secrets (never their values) with the newest
verified and failed deliveries, and gives the URL each running receiver (`workbench listen`)
takes this connection's webhooks at, and what the sync engine (`workbench engine`) is doing for
it: engines running and their heartbeats, the last poll and lag, queued commands (and how long
they take to drain at the connection's pace), the circuit breaker when it is not closed, and
when it polls and reconciles next. Its first line counts the connection's open alerts, if any
(the Alerts screen, key 8, lists them).

p pauses or resumes the connection (asks for a reason; audited). r asks the running engines to
reconcile it now, as `workbench reconcile NAME --now` does (asks for a reason; audited); the
run and its findings then show on the Drift screen (7)."""

    BINDINGS = [
        Binding("enter", "records", "Records"),
        Binding("f", "failures", "Failures"),
        Binding("p", "pause", "Pause/resume"),
        Binding("r", "reconcile_now", "Reconcile now"),
    ]

    def compose_below(self) -> ComposeResult:
        yield Static("", id="providers-detail", classes="detail-panel")

    @staticmethod
    def load_health(ctx: ServiceContext, now: datetime) -> list[ConnectionHealth]:
        items = health.connection_health(ctx)
        statuses = provider_status.provider_status(ctx, now)
        open_alerts = alerts.open_counts(ctx)
        for item in items:
            item.status = statuses.get(item.id)
            item.open_alerts = open_alerts.get(item.id, 0)
        return items

    def fetch(self, request: object) -> list[ConnectionHealth]:
        # The first load takes what the app started fetching while it started up.
        prefetched, self.wb.prefetched = self.wb.prefetched, None
        if prefetched is not None:
            return prefetched.result()
        return self.load_health(self.ctx, self.wb.now())

    def show(self, data: list[ConnectionHealth]) -> None:
        now = self.wb.now()
        rows = []
        for item in data:
            failures = (count(item.open_failure_total), "error") if item.open_failure_total else "0"
            review = (count(item.needs_review), "warn") if item.needs_review else "0"
            state = ("paused", "warn") if item.paused else ("active", "ok")
            last = age(item.lag(now)) if item.last_event_at else "never"
            sig = item.status.signature.latest if item.status else "-"
            rows.append(Row(item.name, (item.name, item.environment, last, count(item.events_last_hour), failures,
                                        review, state, _toned(sig, SIGNATURE_TONES.get(sig)), by_category(item)),
                            data=item))
        table = self.table
        table.set_rows(rows)
        total = sum(item.open_failure_total for item in data)
        alerting = sum(item.open_alerts for item in data)
        self.status.set_info(f"{len(data)} connection(s) · {count(total)} open failure(s)"
                             + (f" · {count(alerting)} open alert(s)" if alerting else ""))
        self._show_detail(table.current_row)

    def on_virtual_table_highlighted(self, event: VirtualTable.Highlighted) -> None:
        self._show_detail(event.row)

    def _show_detail(self, row: Row | None) -> None:
        panel = self.query_one("#providers-detail", Static)
        if row is None or not isinstance(row.data, ConnectionHealth):
            panel.update("")
            return
        item = row.data
        state = "paused" if item.paused else "active"
        last = (f"{short_time(item.last_event_at)} ({age(item.lag(self.wb.now()))} ago)"
                if item.last_event_at else "no events yet")
        panel.update(
            f"[b]{escape(item.name)}[/b]  {escape(item.provider)} · {escape(item.environment)} · {state}"
            + (f" · [red]{count(item.open_alerts)} open alert(s)[/] (8: Alerts)" if item.open_alerts else "") + "\n"
            f"Last event {last} · {count(item.events_last_hour)} in the last hour\n"
            f"Open failures: {escape(by_category(item))}\n"
            f"Records needing review: {count(item.needs_review)}"
            + "".join(f"\n{escape(line)}" for line in status_lines(item.status, self.wb.now()))
        )

    def on_virtual_table_selected(self, event: VirtualTable.Selected) -> None:
        self.action_records()

    def action_records(self) -> None:
        item = self.current(ConnectionHealth)  # Enter and the palette both land here
        if item is not None:
            self.wb.open_records(f"conn:{item.name}")

    def action_failures(self) -> None:
        item = self.current(ConnectionHealth)
        if item is not None:
            self.wb.open_errors(item.name)

    def action_pause(self) -> None:
        if self.refused("Pause/resume") or self.denied("pause"):
            return
        item = self.current(ConnectionHealth)
        if item is None:
            return
        verb = "Resume" if item.paused else "Pause"

        def done(reason: str | None) -> None:
            if reason is None:
                return
            self.run_worker(lambda: self._set_paused(item.name, not item.paused, reason), thread=True,
                            group="action", exit_on_error=False)

        self.app.push_screen(PromptScreen(f"{verb} {item.name}", "Reason (recorded in the audit trail)",
                                          required=True), done)

    def action_reconcile_now(self) -> None:
        if self.refused("Reconcile now") or self.denied("reconcile"):
            return
        item = self.current(ConnectionHealth)
        if item is None:
            return

        def done(reason: str | None) -> None:
            if reason is None:
                return
            self.run_worker(lambda: self._request_reconcile(item.name, reason), thread=True, group="action",
                            exit_on_error=False)

        self.app.push_screen(PromptScreen(
            f"Reconcile {item.name} now", "Reason (recorded in the audit trail)", required=True,
            message="A running engine does it; findings show on Drift (7)."), done)

    def _request_reconcile(self, name: str, reason: str) -> None:
        try:
            run_id = reconcile.request_now(self.ctx, name, reason=reason)
        except Exception as exc:  # one line on screen; the app keeps running
            self._post(self.notify, f"Reconcile {name} failed: {describe_error(exc)}", severity="error", markup=False)
            return
        self._post(self.notify, f"{name}: reconciliation {run_id} requested; a running engine carries it out",
                   markup=False)
        self._post(self.reload)

    def _set_paused(self, name: str, paused: bool, reason: str) -> None:
        try:
            # Resuming applies held deliveries: encrypted ones open with the app's unlocked vaults.
            connections.set_paused(self.ctx, name, paused, reason, unlocked_vaults(self.app))
        except Exception as exc:  # one line on screen; the app keeps running
            verb = "Pause" if paused else "Resume"
            self._post(self.notify, f"{verb} {name} failed: {describe_error(exc)}", severity="error", markup=False)
            return
        self._post(self.notify, f"{name} {'paused' if paused else 'resumed'}")
        self._post(self.reload)


def status_lines(status: ProviderStatus | None, now: datetime) -> list[str]:
    """The detail panel's lines on capabilities, signatures and receivers (plain text)."""
    if status is None:
        return []
    can = (" · ".join(describe_capabilities(status.capabilities)) if status.capabilities is not None
           else "unknown: no adapter for this provider here")
    return [f"Can: {can}", *signature_lines(status, now),
            "Receiver: " + (", ".join(status.hook_urls) or "no receiver running: start `workbench listen`"),
            *engine_lines(status.engine, status.connection, now)]


def engine_lines(engine: EngineView | None, name: str, now: datetime) -> list[str]:
    """The sync engine's word on the connection: engines running, polling, stopped calls."""
    if engine is None:
        return []
    if engine.heartbeats:
        running = f"{len(engine.heartbeats)} running (heartbeat {age(now - engine.heartbeats[0])} ago)"
    else:
        running = "none running: start `workbench engine`"
    polled = f"last poll {age(now - engine.last_poll_at)} ago" if engine.last_poll_at else "not polled yet"
    lag = f" · lag {engine.lag_s}s" if engine.lag_s is not None else ""
    pace = f" · paced {engine.rate_per_s:g}/s" if engine.rate_per_s is not None else ""
    drain = f", drains in ~{age(timedelta(seconds=engine.drain_s))}" if engine.queued and engine.drain_s else ""
    lines = [f"Engine: {running} · {polled}{lag} · {count(engine.queued)} command(s) queued{drain}{pace}"]
    if engine.breaker != "closed":
        state = "OPEN" if engine.breaker == "open" else "HALF-OPEN (probing)"
        lines.append(f"Circuit breaker {state}: {engine.breaker_reason or 'the provider is failing'} · "
                     "commands wait, nothing is dropped")
    lines.append(schedule_line(engine, now))
    if engine.calls_stopped_at is not None:
        lines.append(f"Calls STOPPED {age(now - engine.calls_stopped_at)} ago: {engine.calls_stopped_reason} · "
                     f"API key {engine.stopped_key or '-'} failed: rotate it (`workbench connection secret add "
                     f"{name} --kind api_key`)")
    return lines


def schedule_line(engine: EngineView, now: datetime) -> str:
    """When the engines poll and reconcile the connection next (the store's view: the same
    times `workbench engine status` shows)."""
    def due(when: datetime | None) -> str:
        return f"in {age(when - now)}" if when is not None and when > now else "due now"

    poll = (f"next poll {due(engine.next_poll_at)} (every {age(timedelta(seconds=engine.poll_interval_s))})"
            if engine.poll_interval_s else "not polled")
    if engine.reconcile_interval_s:
        last = f"last {age(now - engine.last_reconcile_at)} ago" if engine.last_reconcile_at else "never run"
        reconcile = (f"next reconcile {due(engine.next_reconcile_at)} "
                     f"(every {age(timedelta(seconds=engine.reconcile_interval_s))}, {last})")
    else:
        reconcile = "reconcile on demand only (r; sync.reconcile_interval_s schedules it)"
    return f"Schedule: {poll} · {reconcile}"


def signature_lines(status: ProviderStatus, now: datetime) -> list[str]:
    """Active webhook secrets by name (never a value); the newest verified and failed deliveries."""
    sig = status.signature
    if sig.problem:
        return [f"Webhook secrets: {sig.problem}"]
    secrets = (f"Webhook secrets: {len(sig.secrets)} active: {', '.join(sig.secrets)}" if sig.secrets
               else "Webhook secrets: none: deliveries are stored unchecked")
    if not sig.last_verified_at and not sig.last_failed_at:
        return [secrets] if not sig.secrets else [secrets, "Signatures: none checked yet"]
    verified = f"last verified {age(now - sig.last_verified_at)} ago" if sig.last_verified_at else "never verified"
    failed = (f"last failed {age(now - sig.last_failed_at)} ago (tried {sig.last_failed_secret or 'no secret'})"
              if sig.last_failed_at else "none failed")
    return [secrets, f"Signatures: {verified} · {failed}"]
