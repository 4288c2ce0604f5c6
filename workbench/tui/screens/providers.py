"""Providers (home): every connection's health at a glance."""

from __future__ import annotations

from rich.markup import escape
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import Static

from workbench.services import connections, health
from workbench.services.context import ServiceContext
from workbench.services.health import ConnectionHealth

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
    Column("Open failures by category", None, min_width=20, drop_below=110),
]


def by_category(item: ConnectionHealth) -> str:
    ordered = sorted(item.open_failures.items(), key=lambda kv: (-kv[1], kv[0]))
    return ", ".join(f"{category} {count(n)}" for category, n in ordered) or "none"


class ProvidersScreen(TableScreen[list[ConnectionHealth]]):
    WHERE = "Providers"
    NAME = "providers"
    COLUMNS = COLUMNS
    EMPTY = "no connections yet: add one with `workbench connection add`"
    WRITES = frozenset({"pause"})
    NEEDS = {"pause": "pause"}
    HELP = """Every connection with its health at a glance.

Last event: when the newest delivery arrived (age). Ev/h: deliveries in the hour up to the
newest one. Open: failures not yet resolved or ignored. Review: records waiting for a person.
State: active, or paused (the engine makes no calls for a paused connection).
The panel below the table breaks the open failures down by category."""

    BINDINGS = [
        Binding("enter", "records", "Records"),
        Binding("f", "failures", "Failures"),
        Binding("p", "pause", "Pause/resume"),
    ]

    def compose_below(self) -> ComposeResult:
        yield Static("", id="providers-detail", classes="detail-panel")

    @staticmethod
    def load_health(ctx: ServiceContext) -> list[ConnectionHealth]:
        return health.connection_health(ctx)

    def fetch(self, request: object) -> list[ConnectionHealth]:
        # The first load takes what the app started fetching while it started up.
        prefetched, self.wb.prefetched = self.wb.prefetched, None
        if prefetched is not None:
            return prefetched.result()
        return self.load_health(self.ctx)

    def show(self, data: list[ConnectionHealth]) -> None:
        now = self.wb.now()
        rows = []
        for item in data:
            failures = (count(item.open_failure_total), "error") if item.open_failure_total else "0"
            review = (count(item.needs_review), "warn") if item.needs_review else "0"
            state = ("paused", "warn") if item.paused else ("active", "ok")
            last = age(item.lag(now)) if item.last_event_at else "never"
            rows.append(Row(item.name, (item.name, item.environment, last, count(item.events_last_hour), failures,
                                        review, state, by_category(item)), data=item))
        table = self.table
        table.set_rows(rows)
        total = sum(item.open_failure_total for item in data)
        self.status.set_info(f"{len(data)} connection(s) · {count(total)} open failure(s)")
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
            f"[b]{escape(item.name)}[/b]  {escape(item.provider)} · {escape(item.environment)} · {state}\n"
            f"Last event {last} · {count(item.events_last_hour)} in the last hour\n"
            f"Open failures: {escape(by_category(item))}\n"
            f"Records needing review: {count(item.needs_review)}"
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
