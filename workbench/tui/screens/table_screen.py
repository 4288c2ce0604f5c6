"""The shape most workbench screens have: one table, a filter above it when the screen has
one, and panels above or below. The table has focus on arrival, Enter selects its row, and
Enter in the filter goes back to the table."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar, TypeVar

from textual import on
from textual.app import ComposeResult
from textual.widget import Widget
from textual.widgets import Input

from ..widgets import Column, FilterInput, VirtualTable
from .base import Data, WorkbenchScreen

T = TypeVar("T")


class TableScreen(WorkbenchScreen[Data]):
    NAME: ClassVar[str]  # widget IDs: "<NAME>-table", "<NAME>-filter"
    COLUMNS: ClassVar[Sequence[Column]]
    EMPTY: ClassVar[str] = "nothing here"
    MARKABLE: ClassVar[bool] = False
    FILTER: ClassVar[str | None] = None  # the filter's placeholder; None: no filter

    def __init__(self, text: str = "") -> None:
        super().__init__()
        self._initial_filter = text

    # ----------------------------------------------------------------- layout

    def compose_body(self) -> ComposeResult:
        yield from self.compose_above()
        if self.FILTER is not None:
            yield FilterInput(self._initial_filter, placeholder=self.FILTER, id=f"{self.NAME}-filter")
        yield VirtualTable(self.COLUMNS, markable=self.MARKABLE, empty=self.EMPTY, id=f"{self.NAME}-table")
        yield from self.compose_below()

    def compose_above(self) -> ComposeResult:
        yield from ()

    def compose_below(self) -> ComposeResult:
        yield from ()

    @property
    def table(self) -> VirtualTable:
        return self.query_one(VirtualTable)

    def main_widget(self) -> Widget:
        return self.table

    def on_mount(self) -> None:
        self.table.focus()
        super().on_mount()

    def current(self, kind: type[T]) -> T | None:
        """What the cursor row shows, when it is a `kind`."""
        row = self.table.current_row
        return row.data if row is not None and isinstance(row.data, kind) else None

    def action_open(self) -> None:
        self.table.action_select()

    # ----------------------------------------------------------------- filter

    @property
    def filter_text(self) -> str:
        return self.query_one(FilterInput).value if self.FILTER is not None else ""

    def set_filter(self, text: str) -> None:
        """Show what matches `text` (from another screen or the palette)."""
        self.query_one(FilterInput).value = text  # Input.Changed applies it

    def filter_changed(self) -> None:
        """The filter text changed: by default the store is asked again."""
        self.reload()

    @on(Input.Changed, "FilterInput")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.filter_changed()

    @on(Input.Submitted, "FilterInput")
    def _filter_submitted(self, event: Input.Submitted) -> None:
        self.table.focus()
