"""Drift: the open findings of reconciliation (where our belief and the provider's view differ,
field by field), the newest runs above them, and the resolutions.

A resolution applies to the marked findings (space; * marks every finding the filter shows:
that is the bulk resolution) or else to the one under the cursor. Each asks for a note first,
and for confirmation when it covers more than one finding; the service does the work (one
transaction and one audit entry per finding) in a worker thread, with a progress bar.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.markup import escape
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import Static

from workbench.services import drift, reconcile
from workbench.services.drift import ResolveResult

from ..formatting import count
from ..widgets import Column, Row
from .base import FILTER_BINDING
from .bulk_table_screen import BulkTableScreen
from .dialogs import PromptScreen

LIMIT = 2000  # findings listed; the rest are reached by filtering or after resolving these
RUNS_SHOWN = 3

COLUMNS = [
    Column("Connection", 12, drop_below=70),
    Column("Record", 16, cut="middle"),
    Column("Field", 15),
    Column("Ours", None, min_width=10),
    Column("Theirs", None, min_width=10),
    Column("Since", 16, drop_below=100),
]


@dataclass(frozen=True)
class DriftData:
    runs: list[dict[str, Any]]
    findings: list[dict[str, Any]]


@dataclass(frozen=True)
class Resolution:
    name: str  # the service's: accept | push | escalate
    verb: str
    done: str
    explains: str  # what it does, in the confirmation


RESOLUTIONS = {
    "accept": Resolution("accept", "Accept", "accepted", "take the provider's value (a transition, cause reconciliation)"),
    "push": Resolution("push", "Push", "pushed", "send ours to the provider (a command in the outbox)"),
    "escalate": Resolution("escalate", "Escalate", "escalated", "put the record in review with an open failure"),
}


def shown_value(value: Any) -> str:
    if isinstance(value, dict):  # an object we have no record of: its status stands for it
        return f"{{status: {value.get('status')}, amount: {(value.get('fields') or {}).get('amount')}}}"
    return "-" if value is None else str(value)


def run_line(run: dict[str, Any]) -> str:
    when = (run["finished_at"] or run["requested_at"] or "")[:16].replace("T", " ")
    tail = " · dry run" if run["dry_run"] else (f" · {run['error']}" if run["error"] else "")
    return (f"{run['connection']} · {run['status']} {when} · {count(run['records_checked'])} records · "
            f"{count(run['findings'])} findings{tail}")


def summarise(resolution: Resolution, result: ResolveResult) -> str:
    text = f"{resolution.verb}: {len(result.done)} {resolution.done}"
    if len(result.done) == 1:
        text += f" ({next(iter(result.messages.values()))})"
    if result.skipped:
        reasons = sorted({reason for _, reason in result.skipped})
        text += f"; {len(result.skipped)} skipped: {'; '.join(reasons)[:160]}"
    return text


class DriftScreen(BulkTableScreen[DriftData]):
    CSS_PATH = Path(__file__).with_name("drift.tcss")
    WHERE = "Drift"
    NAME = "drift"
    COLUMNS = COLUMNS
    EMPTY = "no open drift: records and providers agree (as of the last reconciliation)"
    MARKABLE = True
    FILTER = "/ filter: connection, record, field, value"
    WRITES = frozenset({"resolve"})
    NEEDS = {"resolve": "reconcile"}
    HELP = """Where our records and the providers disagree, field by field, as the last reconciliation
(`workbench reconcile NAME`) found it; the newest runs are listed above. Space marks a finding,
* marks every finding the filter shows (a bulk resolution); a resolution applies to the marked
findings, or to the one under the cursor, and asks for a note first:

  a  accept    take the provider's value (a transition with cause reconciliation)
  p  push      send our value to the provider (a command in the outbox), where an intent can
  e  escalate  put the record in review, with an open failure saying why

Every resolution is written to the audit trail. Enter opens the record's timeline."""

    BINDINGS = [
        Binding("enter", "open", "Timeline"),
        Binding("space", "mark", "Mark"),
        Binding("asterisk", "mark_all", "All shown", show=False),
        Binding("a", "resolve('accept')", "Accept"),
        Binding("p", "resolve('push')", "Push"),
        Binding("e", "resolve('escalate')", "Escalate"),
        FILTER_BINDING,
    ]

    def __init__(self, text: str = "") -> None:
        super().__init__(text)
        self._data = DriftData([], [])

    def compose_above(self) -> ComposeResult:
        yield Static("", id="drift-runs", classes="drift-runs")

    def compose_below(self) -> ComposeResult:
        yield Static("", id="drift-detail", classes="drift-detail")
        yield from self.compose_progress()

    # ----------------------------------------------------------------- loading

    def fetch(self, request: object) -> DriftData:
        return DriftData(reconcile.latest_runs(self.ctx, limit=RUNS_SHOWN),
                         drift.list_findings(self.ctx, limit=LIMIT))

    def show(self, data: DriftData) -> None:
        self._data = data
        runs = "\n".join(escape(run_line(run)) for run in data.runs)
        self.query_one("#drift-runs", Static).update(runs or "no reconciliation has run yet")
        self._render_rows()

    def _render_rows(self) -> None:
        needle = self.filter_text.strip().lower()
        found = [f for f in self._data.findings
                 if not needle or any(needle in str(part).lower() for part in
                                      (f["connection"], f["record"], f["provider_id"], f["field"],
                                       shown_value(f["ours"]), shown_value(f["theirs"])))]
        rows = [Row(f["id"], (f["connection"], f["record"] or f"({f['provider_id']})", (f["field"], "warn"),
                              shown_value(f["ours"]), shown_value(f["theirs"]), f["since"][:16].replace("T", " ")),
                    data=f) for f in found]
        table = self.table
        table.set_rows(rows)
        self._update_info(len(found))
        self._show_detail(table.current_row)

    def _update_info(self, shown: int | None = None) -> None:
        table = self.table
        total = len(self._data.findings)
        shown = len(table.rows) if shown is None else shown
        listed = f"{count(shown)} of {count(total)}" if shown != total else count(total)
        more = " (the first listed)" if total >= LIMIT else ""
        marked = len(table.marked)
        self.status.set_info(f"{listed} open finding(s){more}" + (f" · {marked} marked" if marked else ""))

    def filter_changed(self) -> None:
        self._render_rows()  # the findings are all here: no need to ask the store again

    detail_panel_id = "drift-detail"
    record_key = "record"
    no_record_message = "We have no record of this provider object: accept it to make one"

    def detail_text(self, data: dict[str, Any]) -> str:
        record = data["record"] or "no record of ours"
        return (f"{data['field']} · {data['kind']} {data['provider_id'] or '-'} · {record} · since {data['since'][:19]}\n"
                f"ours:   {shown_value(data['ours'])}\n"
                f"theirs: {shown_value(data['theirs'])}")

    # ----------------------------------------------------------------- resolutions

    def action_resolve(self, name: str) -> None:
        resolution = RESOLUTIONS[name]
        if self.refused(resolution.verb) or self.denied(self.needs("resolve", (name,))):
            return
        if self.busy():
            return
        ids = self.targets()
        if not ids:
            self.app.bell()
            return
        what = f"{len(ids)} findings" if len(ids) > 1 else f"finding {ids[0]}"

        def prompted(text: str | None) -> None:
            if text is not None:
                self._confirm(resolution, ids, text)

        self.app.push_screen(PromptScreen(f"{resolution.verb} {what}", f"Note: why {resolution.name}?",
                                          required=True), prompted)

    def _confirm(self, resolution: Resolution, ids: list[str], text: str) -> None:
        def start() -> None:
            self.run_bulk(resolution.verb, len(ids),
                          lambda progress: drift.resolve(self.ctx, ids, resolution.name, text, progress),
                          lambda result: (summarise(resolution, result), bool(result.skipped)))

        self.confirm_many(ids, f"{resolution.verb} {len(ids)} findings?",
                          f"This will {resolution.explains} for {len(ids)} findings, with: {text}.\n"
                          "Each one is written to the audit trail.", resolution.verb, start)
