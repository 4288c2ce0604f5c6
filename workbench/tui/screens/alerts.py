"""Alerts: the open and acknowledged alerts (newest first), the highlighted one in detail, and
how each notifier is doing (a failing one is shown, never silent). `a` acknowledges and `r`
resolves the highlighted alert, each after a note (audited); Enter opens it whole, with every
notice and how it went."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rich.markup import escape
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import Static

from workbench.services import alerts
from workbench.services.alerts import NotifierHealth

from ..errors import describe_error
from ..formatting import count
from ..widgets import Column, Row, VirtualTable
from .base import FILTER_BINDING
from .dialogs import PromptScreen
from .table_screen import TableScreen

COLUMNS = [
    Column("Connection", 12, drop_below=70),
    Column("Rule", 18),
    Column("Severity", 9),
    Column("State", 12),
    Column("Count", 6, align="right"),
    Column("Last seen", 16, drop_below=100),
    Column("Summary", None, min_width=20),
]
SEVERITY_TONES = {"critical": "error", "warning": "warn", "info": "ok"}
NOTIFIER_TONES = {"ok": "ok", "failing": "error", "gave up": "error"}


@dataclass(frozen=True)
class AlertsData:
    alerts: list[dict[str, Any]]
    notifiers: list[NotifierHealth]


def notifier_line(notifiers: list[NotifierHealth]) -> str:
    """Markup: each notifier's state, failing ones with their last error."""
    if not notifiers:
        return "Notifiers: nothing sent yet"
    parts = []
    for h in notifiers:
        if h.status == "ok":
            parts.append(f"[green]{escape(h.notifier)} ({escape(h.connection)}) ok[/]")
        else:
            parts.append(f"[red]{escape(h.notifier)} ({escape(h.connection)}) {h.status.upper()}: "
                         f"{escape(h.last_error or '')}[/]")
    return "Notifiers: " + " · ".join(parts)


class AlertsScreen(TableScreen[AlertsData]):
    WHERE = "Alerts"
    NAME = "alerts"
    COLUMNS = COLUMNS
    EMPTY = "no open alerts"
    FILTER = "/ filter: connection, rule, summary"
    WRITES = frozenset({"ack", "resolve"})
    NEEDS = {"ack": "alerts", "resolve": "alerts"}
    HELP = """The open and acknowledged alerts, newest first: a rule's condition on a connection's failures
(settings.alerts, or the defaults), or a condition the engine noticed (breaker, auto-pause, an
expiring webhook secret). While it holds, an alert's count grows; people are told through its
notifiers once, again at most every repeat interval, and when it recovers.

  a      acknowledge: someone is on it (no more repeat notices), with a note
  r      resolve by hand, with a note (no recovery notice)
  enter  the alert whole, with each notice and how it went

The line at the bottom says how each notifier is doing: a failing one (a webhook answering
500, a command timing out) shows in red with its last error. Acknowledging and resolving are
written to the audit trail."""

    BINDINGS = [
        Binding("enter", "open", "Detail"),
        Binding("a", "change('ack')", "Acknowledge"),
        Binding("r", "change('resolve')", "Resolve"),
        FILTER_BINDING,
    ]

    def __init__(self, text: str = "") -> None:
        super().__init__(text)
        self._data = AlertsData([], [])

    def compose_below(self) -> ComposeResult:
        yield Static("", id="alerts-detail", classes="detail-panel")
        yield Static("", id="alerts-notifiers", classes="detail-panel")

    def fetch(self, request: object) -> AlertsData:
        return AlertsData(alerts.list_alerts(self.ctx), alerts.notifier_health(self.ctx))

    def show(self, data: AlertsData) -> None:
        self._data = data
        self.query_one("#alerts-notifiers", Static).update(notifier_line(data.notifiers))
        self._render_rows()

    def _render_rows(self) -> None:
        needle = self.filter_text.strip().lower()
        found = [a for a in self._data.alerts
                 if not needle or any(needle in str(a[key]).lower() for key in ("connection", "rule", "summary"))]
        rows = [Row(a["id"], (a["connection"], a["rule"], (a["severity"], SEVERITY_TONES.get(a["severity"], "")),
                              (a["state"], "warn" if a["state"] == "open" else "ok"), count(a["count"]),
                              (a["last_seen_at"] or "")[:16].replace("T", " "), a["summary"]), data=a)
                for a in found]
        self.table.set_rows(rows)
        failing = sum(1 for h in self._data.notifiers if h.status != "ok")
        shown = f"{count(len(found))} of {count(len(self._data.alerts))}" if needle else count(len(found))
        self.status.set_info(f"{shown} alert(s)" + (f" · {failing} notifier(s) failing" if failing else ""))
        self._show_detail(self.table.current_row)

    def filter_changed(self) -> None:
        self._render_rows()

    def on_virtual_table_highlighted(self, event: VirtualTable.Highlighted) -> None:
        self._show_detail(event.row)

    def _show_detail(self, row: Row | None) -> None:
        panel = self.query_one("#alerts-detail", Static)
        if row is None or not isinstance(row.data, dict):
            panel.update("")
            return
        a = row.data
        who = (f" · acknowledged by {a['acknowledged_by']}" if a["acknowledged_by"] else "")
        panel.update(escape(f"{a['rule']} on {a['connection']} · {a['severity']} · {a['state']}{who} · "
                            f"count {a['count']} since {(a['first_seen_at'] or '')[:19]}\n{a['summary']}"
                            + (f"\nnote: {a['note']}" if a["note"] else "")))

    def on_virtual_table_selected(self, event: VirtualTable.Selected) -> None:
        alert = event.row.data
        if isinstance(alert, dict):
            alert_id = alert["id"]
            self.wb.open_detail_loader(f"Alert {alert_id}", lambda ctx: alerts.get_alert(ctx, alert_id))

    def action_change(self, action: str) -> None:
        verb = "Acknowledge" if action == "ack" else "Resolve"
        if self.refused(verb) or self.denied(self.needs(action, ())):
            return
        row = self.table.current_row
        if row is None or not isinstance(row.data, dict):
            self.app.bell()
            return
        alert = row.data

        def prompted(note: str | None) -> None:
            if note is not None:
                self.run_worker(lambda: self._change(action, alert["id"], note), thread=True, group="action",
                                exit_on_error=False)

        self.app.push_screen(PromptScreen(f"{verb} {alert['rule']} on {alert['connection']}",
                                          "Note (recorded in the audit trail)", required=True), prompted)

    def _change(self, action: str, alert_id: str, note: str) -> None:
        act = alerts.acknowledge if action == "ack" else alerts.resolve
        try:
            done = act(self.ctx, alert_id, note)
        except Exception as exc:  # one line on screen; the app keeps running
            self._post(self.notify, f"{alert_id}: {describe_error(exc)}", severity="error", markup=False)
            return
        self._post(self.notify, f"{done['rule']} on {done['connection']}: {done['state']}", markup=False)
        self._post(self.reload)
