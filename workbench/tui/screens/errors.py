"""Error queue: open failures grouped by category, connection and fingerprint, largest first.
Enter drills into a group."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widget import Widget
from textual.widgets import Input

from workbench.services import triage
from workbench.services.triage import FailureGroup

from ..formatting import count, short_time
from ..widgets import Column, FilterInput, Row, VirtualTable
from .base import FILTER_BINDING, WorkbenchScreen

COLUMNS = [
    Column("Count", 7, align="right"),
    Column("Category", 18),
    Column("Connection", 14, drop_below=70),
    Column("Fingerprint", 11, cut="middle"),
    Column("Sample message", None, min_width=16),
    Column("Newest", 14, drop_below=120),
]


def group_key(group: FailureGroup) -> str:
    return f"{group.category}|{group.connection or ''}|{group.fingerprint}"


class ErrorsScreen(WorkbenchScreen[list[FailureGroup]]):
    WHERE = "Error queue"
    HELP = """Failures not yet resolved or ignored, grouped by category, connection and fingerprint
(failures with the same cause share a fingerprint), largest group first.
Type after / to narrow the groups (category, connection, fingerprint or message).
Enter lists the failures of a group, where you retry, replay, resolve, ignore or assign them."""

    BINDINGS = [
        Binding("enter", "open", "Failures"),
        FILTER_BINDING,
    ]

    def __init__(self, text: str = "") -> None:
        super().__init__()
        self._initial = text
        self._groups: list[FailureGroup] = []

    def compose_body(self) -> ComposeResult:
        yield FilterInput(self._initial, placeholder="/ filter: category, connection, fingerprint, message",
                          id="errors-filter")
        yield VirtualTable(COLUMNS, empty="the error queue is empty", id="errors-table")

    def main_widget(self) -> Widget:
        return self.query_one(VirtualTable)

    def on_mount(self) -> None:
        self.query_one(VirtualTable).focus()
        super().on_mount()

    def set_filter(self, text: str) -> None:
        self.query_one(Input).value = text

    def fetch(self, request: object) -> list[FailureGroup]:
        return triage.groups(self.ctx)

    def show(self, data: list[FailureGroup]) -> None:
        self._groups = data
        self._render_rows()

    def _render_rows(self) -> None:
        needle = self.query_one(Input).value.strip().lower()
        groups = [g for g in self._groups
                  if not needle or any(needle in (part or "").lower()
                                       for part in (g.category, g.connection, g.fingerprint, g.sample_message))]
        rows = [Row(group_key(g), (count(g.count), (g.category, "error"), g.connection or "-", g.fingerprint,
                                   g.sample_message, short_time(g.newest)), data=g) for g in groups]
        self.query_one(VirtualTable).set_rows(rows)
        total = sum(g.count for g in self._groups)
        shown = f"{len(groups)} of {len(self._groups)}" if needle else f"{len(self._groups)}"
        self.status.set_info(f"{count(total)} open failure(s) in {shown} group(s)")

    @on(Input.Changed, "#errors-filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self._render_rows()

    @on(Input.Submitted, "#errors-filter")
    def _filter_submitted(self, event: Input.Submitted) -> None:
        self.query_one(VirtualTable).focus()

    def action_open(self) -> None:
        self.query_one(VirtualTable).action_select()

    def on_virtual_table_selected(self, event: VirtualTable.Selected) -> None:
        if isinstance(event.row.data, FailureGroup):
            self.wb.open_group(event.row.data)
