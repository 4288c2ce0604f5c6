"""Error queue: open failures grouped by category, connection and fingerprint, largest first.
Enter drills into a group."""

from __future__ import annotations

from textual.binding import Binding

from workbench.services import triage
from workbench.services.triage import FailureGroup

from ..formatting import count, short_time
from ..widgets import Column, Row, VirtualTable
from .base import FILTER_BINDING
from .table_screen import TableScreen

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


class ErrorsScreen(TableScreen[list[FailureGroup]]):
    WHERE = "Error queue"
    NAME = "errors"
    COLUMNS = COLUMNS
    EMPTY = "the error queue is empty"
    FILTER = "/ filter: category, connection, fingerprint, message"
    HELP = """Failures not yet resolved or ignored, grouped by category, connection and fingerprint
(failures with the same cause share a fingerprint), largest group first.
Type after / to narrow the groups (category, connection, fingerprint or message).
Enter lists the failures of a group, where you retry, replay, resolve, ignore or assign them."""

    BINDINGS = [
        Binding("enter", "open", "Failures"),
        FILTER_BINDING,
    ]

    def __init__(self, text: str = "") -> None:
        super().__init__(text)
        self._groups: list[FailureGroup] = []

    def fetch(self, request: object) -> list[FailureGroup]:
        return triage.groups(self.ctx)

    def show(self, data: list[FailureGroup]) -> None:
        self._groups = data
        self._render_rows()

    def _render_rows(self) -> None:
        needle = self.filter_text.strip().lower()
        groups = [g for g in self._groups
                  if not needle or any(needle in (part or "").lower()
                                       for part in (g.category, g.connection, g.fingerprint, g.sample_message))]
        rows = [Row(group_key(g), (count(g.count), (g.category, "error"), g.connection or "-", g.fingerprint,
                                   g.sample_message, short_time(g.newest)), data=g) for g in groups]
        self.table.set_rows(rows)
        total = sum(g.count for g in self._groups)
        shown = f"{len(groups)} of {len(self._groups)}" if needle else f"{len(self._groups)}"
        self.status.set_info(f"{count(total)} open failure(s) in {shown} group(s)")

    def filter_changed(self) -> None:
        self._render_rows()  # the groups are all here: no need to ask the store again

    def on_virtual_table_selected(self, event: VirtualTable.Selected) -> None:
        if isinstance(event.row.data, FailureGroup):
            self.wb.open_group(event.row.data)
