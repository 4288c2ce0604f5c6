"""What the workbench's long views share: lines rendered on demand (Line API), a header line
or none, and the same keys everywhere: up/down (k/j), PageUp/PageDown, Home/End.

A view with a cursor (the table, the diff) moves it with those keys and keeps it on screen;
a click on a row moves the cursor there, a second click (or a double click) activates it.
A view without one (`TextLines`) scrolls with the same keys instead.
"""

from __future__ import annotations

from typing import ClassVar

from textual import events
from textual.binding import Binding, BindingType
from textual.geometry import Size
from textual.scroll_view import ScrollView


class CursorView(ScrollView, can_focus=True):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up,k", "cursor(-1)", show=False),
        Binding("down,j", "cursor(1)", show=False),
        Binding("pageup", "page(-1)", show=False),
        Binding("pagedown", "page(1)", show=False),
        Binding("home", "edge(-1)", show=False),
        Binding("end", "edge(1)", show=False),
    ]

    HEADER_LINES: ClassVar[int] = 0  # lines above the first row (a column header)

    def __init__(self, *, name: str | None = None, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.cursor = 0

    # ----------------------------------------------------------------- what subclasses say

    @property
    def row_count(self) -> int:
        raise NotImplementedError

    def content_width(self) -> int:
        """How wide the content is (wider than the view scrolls sideways)."""
        return self.size.width

    def cursor_moved(self) -> None:
        """After every placement of the cursor: tell the screen (a message)."""

    def overrun(self, direction: int) -> None:
        """The cursor was asked past the first (-1) or last (+1) row; by default it stays."""

    def activate(self) -> None:
        """A second click on the cursor row (or a double click)."""

    # ----------------------------------------------------------------- the cursor

    def update_virtual_size(self) -> None:
        self.virtual_size = Size(self.content_width(), self.row_count + self.HEADER_LINES)

    def place_cursor(self, index: int) -> None:
        """Put the cursor on `index` (already in range), scroll it into view, and say so."""
        self.cursor = index
        self.scroll_cursor_into_view()
        self.cursor_moved()

    def move_to(self, index: int) -> None:
        if self.row_count:
            self.place_cursor(max(0, min(index, self.row_count - 1)))
            self.refresh()

    def scroll_cursor_into_view(self) -> None:
        visible = max(1, self.scrollable_content_region.height - self.HEADER_LINES)
        top = int(self.scroll_y)
        if self.cursor < top:
            self.scroll_to(y=self.cursor, animate=False, immediate=True)
        elif self.cursor >= top + visible:
            self.scroll_to(y=self.cursor - visible + 1, animate=False, immediate=True)

    def action_cursor(self, delta: int) -> None:
        target = self.cursor + delta
        if target < 0 or target >= self.row_count:
            self.overrun(-1 if target < 0 else 1)
            return
        self.move_to(target)

    def action_page(self, direction: int) -> None:
        if (direction < 0 and self.cursor == 0) or (direction > 0 and self.cursor >= self.row_count - 1):
            self.overrun(direction)
            return
        page = max(1, self.scrollable_content_region.height - 1 - self.HEADER_LINES)
        self.move_to(self.cursor + direction * page)

    def action_edge(self, direction: int) -> None:
        self.move_to(0 if direction < 0 else self.row_count - 1)

    def on_click(self, event: events.Click) -> None:
        index = int(self.scroll_y) + event.y - self.HEADER_LINES
        if event.y < self.HEADER_LINES or not 0 <= index < self.row_count:
            return
        again = index == self.cursor or event.chain > 1
        self.move_to(index)
        if again:
            self.activate()

    def on_resize(self, _: events.Resize) -> None:
        self.update_virtual_size()
        self.scroll_cursor_into_view()
