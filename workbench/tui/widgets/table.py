"""A virtual table: only the rows on screen are rendered, so 10,000 timeline entries paint as
fast as ten. Fixed header line, a cursor, optional marks (space), row tones styled from .tcss.

Textual's DataTable measures every cell when rows are added, which costs most of a second at
10,000 rows; this widget keeps rows as plain tuples and renders lines on demand.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from ..formatting import middle, truncate

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


class VirtualTable(ScrollView, can_focus=True):
    """Rows of cells and a cursor. Screens bind Enter (their own label in the footer) and call
    `action_select`; a click on the cursor row (or a double click) selects too."""

    BINDINGS = [
        Binding("up", "cursor(-1)", "Up", show=False),
        Binding("down", "cursor(1)", "Down", show=False),
        Binding("k", "cursor(-1)", show=False),
        Binding("j", "cursor(1)", show=False),
        Binding("pageup", "page(-1)", show=False),
        Binding("pagedown", "page(1)", show=False),
        Binding("home", "edge(-1)", show=False),
        Binding("end", "edge(1)", show=False),
    ]

    COMPONENT_CLASSES = {
        "vtable--header", "vtable--cursor", "vtable--marked", "vtable--empty",
        *(f"vtable--tone-{tone}" for tone in TONES),
    }

    class Highlighted(Message):
        def __init__(self, table: VirtualTable, row: Row | None) -> None:
            super().__init__()
            self.table = table
            self.row = row

        @property
        def control(self) -> VirtualTable:
            return self.table

    class Selected(Message):
        def __init__(self, table: VirtualTable, row: Row) -> None:
            super().__init__()
            self.table = table
            self.row = row

        @property
        def control(self) -> VirtualTable:
            return self.table

    class Edge(Message):
        """The cursor tried to move past the first (-1) or last (+1) row: the screen may page."""

        def __init__(self, table: VirtualTable, direction: int) -> None:
            super().__init__()
            self.table = table
            self.direction = direction

        @property
        def control(self) -> VirtualTable:
            return self.table

    def __init__(self, columns: Sequence[Column], *, markable: bool = False, empty: str = "nothing here",
                 name: str | None = None, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.columns = list(columns)
        self.markable = markable
        self.empty_text = empty
        self.rows: list[Row] = []
        self.marked: set[str] = set()
        self.cursor = 0
        self._columns_cache: tuple[int, list[tuple[int, Column, int]]] | None = None

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
        self.virtual_size = Size(self.size.width, len(self.rows) + 1)
        self._set_cursor(max(0, min(index, len(self.rows) - 1)))
        self.refresh()

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

    def _set_cursor(self, index: int) -> None:
        self.cursor = index
        self._scroll_cursor_into_view()
        self.post_message(self.Highlighted(self, self.current_row))

    def move_to(self, index: int) -> None:
        if self.rows:
            self._set_cursor(max(0, min(index, len(self.rows) - 1)))
            self.refresh()

    def _scroll_cursor_into_view(self) -> None:
        visible = max(1, self.scrollable_content_region.height - 1)
        top = int(self.scroll_y)
        if self.cursor < top:
            self.scroll_to(y=self.cursor, animate=False, immediate=True)
        elif self.cursor >= top + visible:
            self.scroll_to(y=self.cursor - visible + 1, animate=False, immediate=True)

    def action_cursor(self, delta: int) -> None:
        target = self.cursor + delta
        if target < 0 or target >= len(self.rows):
            self.post_message(self.Edge(self, -1 if target < 0 else 1))
            return
        self.move_to(target)

    def action_page(self, direction: int) -> None:
        page = max(1, self.scrollable_content_region.height - 2)
        target = self.cursor + direction * page
        if (direction < 0 and self.cursor == 0) or (direction > 0 and self.cursor >= len(self.rows) - 1):
            self.post_message(self.Edge(self, direction))
            return
        self.move_to(target)

    def action_edge(self, direction: int) -> None:
        self.move_to(0 if direction < 0 else len(self.rows) - 1)

    def action_select(self) -> None:
        row = self.current_row
        if row is not None:
            self.post_message(self.Selected(self, row))

    def on_click(self, event: events.Click) -> None:
        if event.y == 0:
            return
        index = int(self.scroll_y) + event.y - 1
        if 0 <= index < len(self.rows):
            again = index == self.cursor
            self.move_to(index)
            if again or event.chain > 1:
                self.action_select()

    def on_resize(self, _: events.Resize) -> None:
        self._columns_cache = None
        self.virtual_size = Size(self.size.width, len(self.rows) + 1)
        self._scroll_cursor_into_view()

    # ----------------------------------------------------------------- rendering

    def _layout(self, width: int) -> list[tuple[int, Column, int]]:
        """(column index, column, width) for the columns that fit `width`."""
        if self._columns_cache and self._columns_cache[0] == width:
            return self._columns_cache[1]
        shown = [(i, c) for i, c in enumerate(self.columns) if width >= c.drop_below]
        gutter = 2 if self.markable else 1
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
        self._columns_cache = (width, layout)
        return layout

    def _fit(self, text: str, column: Column, width: int) -> str:
        text = middle(text, width) if column.cut == "middle" else truncate(text, width)
        return text.rjust(width) if column.align == "right" else text.ljust(width)

    def _style(self, *names: str) -> Style:
        return self.get_component_rich_style(*names)

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width
        layout = self._layout(width)
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
