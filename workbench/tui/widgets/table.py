"""A virtual table: only the rows on screen are rendered, so 10,000 timeline entries paint as
fast as ten. Fixed header line, a cursor, optional marks (space), row tones styled from .tcss.

Textual's DataTable measures every cell when rows are added, which costs most of a second at
10,000 rows; this widget keeps rows as plain tuples and renders lines on demand.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache

from rich.segment import Segment
from rich.style import Style
from textual.message import Message
from textual.strip import Strip

from ..formatting import middle, truncate
from .cursor_view import CursorView

TONES = ("ok", "warn", "error", "dim", "accent", "added", "removed", "changed")


@dataclass(frozen=True)
class Column:
    label: str
    width: int | None = None  # None: share the space left over
    min_width: int = 6
    align: str = "left"
    cut: str = "end"  # "end" or "middle" (IDs)
    drop_below: int = 0  # hide the column when the table is narrower than this


Cell = str | tuple[str, str]  # text, or (text, tone)


@dataclass(frozen=True)
class Row:
    key: str
    cells: tuple[Cell, ...]
    tone: str | None = None
    data: object = field(default=None, compare=False)


class TableMessage(Message):
    """From a VirtualTable; `control` lets a handler pick its table by selector."""

    def __init__(self, table: VirtualTable) -> None:
        super().__init__()
        self.table = table

    @property
    def control(self) -> VirtualTable:
        return self.table


@lru_cache(maxsize=256)
def column_layout(columns: tuple[Column, ...], markable: bool, width: int) -> tuple[tuple[int, Column, int], ...]:
    """(column index, column, width) for the columns that fit `width`: asked for every line
    painted, so computed once per table shape and width."""
    shown = [(i, c) for i, c in enumerate(columns) if width >= c.drop_below]
    gutter = 2 if markable else 1
    fixed = sum(c.width or 0 for _, c in shown) + len(shown) - 1 + gutter
    flex = [c for _, c in shown if c.width is None]
    spare = max(0, width - fixed)
    share = spare // len(flex) if flex else 0
    extra = spare - share * len(flex) if flex else 0
    layout = []
    for i, column in shown:
        if column.width is not None:
            layout.append((i, column, column.width))
        else:
            size = max(column.min_width, share + extra)
            extra = 0
            layout.append((i, column, size))
    return tuple(layout)


class VirtualTable(CursorView):
    """Rows of cells and a cursor. Screens bind Enter (their own label in the footer) and call
    `action_select`; a click on the cursor row (or a double click) selects too."""

    HEADER_LINES = 1

    COMPONENT_CLASSES = {
        "vtable--header", "vtable--cursor", "vtable--marked", "vtable--empty",
        *(f"vtable--tone-{tone}" for tone in TONES),
    }

    class Highlighted(TableMessage):
        def __init__(self, table: VirtualTable, row: Row | None) -> None:
            super().__init__(table)
            self.row = row

    class Selected(TableMessage):
        def __init__(self, table: VirtualTable, row: Row) -> None:
            super().__init__(table)
            self.row = row

    class Edge(TableMessage):
        """The cursor tried to move past the first (-1) or last (+1) row: the screen may page."""

        def __init__(self, table: VirtualTable, direction: int) -> None:
            super().__init__(table)
            self.direction = direction

    def __init__(self, columns: Sequence[Column], *, markable: bool = False, empty: str = "nothing here",
                 name: str | None = None, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.columns = tuple(columns)
        self.markable = markable
        self.empty_text = empty
        self.rows: list[Row] = []
        self.marked: set[str] = set()

    # ----------------------------------------------------------------- data

    def set_rows(self, rows: Sequence[Row], *, keep: str | None = None, cursor: int | None = None) -> None:
        """Replace the rows; the cursor stays on the row keyed `keep` (or the current row's
        key) when it is still there, else at `cursor`, else where it was."""
        current = self.current_row
        wanted = keep if keep is not None else (current.key if current else None)
        self.rows = list(rows)
        keys = {row.key for row in self.rows}
        self.marked &= keys
        index = None
        if wanted is not None and cursor is None:
            index = next((i for i, row in enumerate(self.rows) if row.key == wanted), None)
        if index is None:
            index = cursor if cursor is not None else self.cursor
        self.update_virtual_size()
        self.place_cursor(max(0, min(index, len(self.rows) - 1)))
        self.refresh()

    @property
    def row_count(self) -> int:
        return len(self.rows)

    @property
    def current_row(self) -> Row | None:
        if 0 <= self.cursor < len(self.rows):
            return self.rows[self.cursor]
        return None

    @property
    def marked_rows(self) -> list[Row]:
        return [row for row in self.rows if row.key in self.marked]

    def toggle_mark(self) -> None:
        row = self.current_row
        if row is None or not self.markable:
            return
        self.marked.symmetric_difference_update({row.key})
        self.refresh()

    def mark_all(self) -> None:
        self.marked = set() if len(self.marked) == len(self.rows) else {row.key for row in self.rows}
        self.refresh()

    def clear_marks(self) -> None:
        self.marked.clear()
        self.refresh()

    # ----------------------------------------------------------------- cursor

    def cursor_moved(self) -> None:
        self.post_message(self.Highlighted(self, self.current_row))

    def overrun(self, direction: int) -> None:
        self.post_message(self.Edge(self, direction))

    def activate(self) -> None:
        self.action_select()

    def action_select(self) -> None:
        row = self.current_row
        if row is not None:
            self.post_message(self.Selected(self, row))

    # ----------------------------------------------------------------- rendering

    def _fit(self, text: str, column: Column, width: int) -> str:
        text = middle(text, width) if column.cut == "middle" else truncate(text, width)
        return text.rjust(width) if column.align == "right" else text.ljust(width)

    def _style(self, *names: str) -> Style:
        return self.get_component_rich_style(*names)

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width
        layout = column_layout(self.columns, self.markable, width)
        base = self.rich_style
        gutter = "  " if self.markable else " "
        if y == 0:
            style = base + self._style("vtable--header")
            text = gutter + " ".join(self._fit(c.label, c, w) for _, c, w in layout)
            return Strip([Segment(truncate(text, width).ljust(width), style)], width)
        index = int(self.scroll_y) + y - 1
        if not self.rows:
            if y == 1:
                style = base + self._style("vtable--empty")
                return Strip([Segment(truncate(gutter + self.empty_text, width).ljust(width), style)], width)
            return Strip.blank(width, base)
        if index >= len(self.rows):
            return Strip.blank(width, base)
        row = self.rows[index]
        line_style = base
        if row.tone in TONES:
            line_style += self._style(f"vtable--tone-{row.tone}")
        is_marked = row.key in self.marked
        if is_marked:
            line_style += self._style("vtable--marked")
        cursor_style = None
        if index == self.cursor:
            cursor_style = self._style("vtable--cursor")
            line_style += cursor_style
        segments = [Segment(("•" if is_marked else " ") + " " if self.markable else " ", line_style)]
        for n, (i, column, size) in enumerate(layout):
            cell = row.cells[i] if i < len(row.cells) else ""
            style = line_style
            if isinstance(cell, tuple):
                text, tone = cell
                if tone in TONES:
                    style = line_style + self._style(f"vtable--tone-{tone}")
                    if cursor_style is not None:
                        style += cursor_style
            else:
                text = cell
            if n:
                segments.append(Segment(" ", line_style))
            segments.append(Segment(self._fit(text, column, size), style))
        strip = Strip(segments).adjust_cell_length(width, line_style)
        return strip
