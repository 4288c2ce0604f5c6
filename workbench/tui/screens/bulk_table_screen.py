"""A table screen whose rows are marked and acted on together (the Error queue's triage, the
Drift screen's resolutions): the marks, the targets (the marked rows, else the highlighted
one), a confirmation when there are several, and the run itself in a worker with a progress
bar under the table. One run at a time per screen."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from rich.markup import escape
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.notifications import SeverityLevel
from textual.widgets import Label, ProgressBar, Static

from ..errors import describe_error
from ..widgets import Row, VirtualTable
from .base import Data
from .dialogs import ConfirmScreen
from .table_screen import TableScreen

Result = TypeVar("Result")
Progress = Callable[[int, int], None]  # (done, total), called by the service in the worker's thread


class BulkTableScreen(TableScreen[Data]):
    running: str | None = None  # the verb of the run under way, if any

    def compose_progress(self) -> ComposeResult:
        with Horizontal(id="action-progress"):
            yield Label("", id="action-label")
            yield ProgressBar(show_eta=False, id="action-bar")

    # The detail panel under the table, and what Enter on a row opens: each screen names its
    # panel, says what it shows for a row, and which key of a row holds its record's ID.
    detail_panel_id = ""
    record_key = "record_id"
    no_record_message = "This row names no record"

    def detail_text(self, data: dict[str, Any]) -> str:
        """The detail panel's text (markup escaped by the caller) for a row's data."""
        return ""

    def _show_detail(self, row: Row | None) -> None:
        panel = self.query_one(f"#{self.detail_panel_id}", Static)
        data = row.data if row is not None else None
        panel.update(escape(self.detail_text(data)) if isinstance(data, dict) else "")

    def on_virtual_table_highlighted(self, event: VirtualTable.Highlighted) -> None:
        self._show_detail(event.row)

    def on_virtual_table_selected(self, event: VirtualTable.Selected) -> None:
        data = event.row.data
        if isinstance(data, dict) and data.get(self.record_key):
            self.wb.open_timeline(data[self.record_key])
        else:
            self.notify(self.no_record_message, severity="warning")

    def marks_changed(self) -> None:
        """The marks changed: what the status line says about them."""
        self._update_info()

    def _update_info(self) -> None:
        """The status line's count of rows shown and marked (each screen words its own)."""

    def action_mark(self) -> None:
        table = self.table
        table.toggle_mark()
        table.action_cursor(1)
        self.marks_changed()

    def action_mark_all(self) -> None:
        self.table.mark_all()
        self.marks_changed()

    def targets(self) -> list[str]:
        """The marked rows' keys, else the highlighted row's."""
        table = self.table
        marked = [row.key for row in table.marked_rows]
        if marked:
            return marked
        current = table.current_row
        return [current.key] if current is not None else []

    def busy(self) -> bool:
        """A run is under way (and the user is told so)."""
        if self.running:
            self.notify(f"{self.running} is still running", severity="warning")
        return self.running is not None

    def confirm_many(self, ids: list[str], title: str, message: str, verb: str, start: Callable[[], None]) -> None:
        """`start` at once for one target; after a confirmation for several."""
        if len(ids) == 1:
            start()
            return

        def confirmed(ok: bool | None) -> None:
            if ok:
                start()

        self.app.push_screen(ConfirmScreen(title, message, verb), confirmed)

    def run_bulk(self, verb: str, total: int, work: Callable[[Progress], Result],
                 summary: Callable[[Result], tuple[str, bool]]) -> None:
        """Run `work` in a worker with the progress bar; `summary`: the result in one line, and
        whether some targets were skipped (a warning rather than information)."""
        self.running = verb
        self.query_one("#action-progress").add_class("-running")
        self.query_one("#action-label", Label).update(f"{verb} 0/{total}")
        self.query_one("#action-bar", ProgressBar).update(total=total, progress=0)
        self.run_worker(lambda: self._run(verb, work, summary), thread=True, group="action", exit_on_error=False)

    def _run(self, verb: str, work: Callable[[Progress], Result], summary: Callable[[Result], tuple[str, bool]]) -> None:
        def progress(done: int, total: int) -> None:  # called by the service, in this thread
            self._post(self._progress, verb, done, total)

        try:
            line, skipped = summary(work(progress))
        except Exception as exc:
            self._post(self._finished, f"{verb} failed: {describe_error(exc)}", "error")
            return
        self._post(self._finished, line, "warning" if skipped else "information")

    def _progress(self, verb: str, done: int, total: int) -> None:
        if self.is_attached:
            self.query_one("#action-label", Label).update(f"{verb} {done}/{total}")
            self.query_one("#action-bar", ProgressBar).update(total=total, progress=done)

    def _finished(self, line: str, severity: SeverityLevel) -> None:
        self.running = None
        if not self.is_attached:
            return
        self.query_one("#action-progress").remove_class("-running")
        if severity != "error":
            self.table.clear_marks()
        self.notify(line, severity=severity, markup=False)
        self.reload()
