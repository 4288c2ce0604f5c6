"""Read-only text of any length, rendered a screen at a time (a 1 MB payload is ~50,000 lines).
JSON object keys are tinted so a pretty-printed payload scans easily."""

from __future__ import annotations

import re

from rich.segment import Segment
from textual.binding import Binding
from textual.strip import Strip

from .cursor_view import CursorView

JSON_KEY = re.compile(r'^(\s*)("(?:[^"\\]|\\.)*")(:)')


class TextLines(CursorView):
    """Text to read, not rows to pick: the keys every view shares scroll it (no cursor)."""

    BINDINGS = [
        Binding("left,h", "scroll_left", show=False),
        Binding("right,l", "scroll_right", show=False),
    ]

    COMPONENT_CLASSES = {"lines--key", "lines--heading"}

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.lines: list[str] = []
        self.headings: set[int] = set()
        self._width = 0

    def set_lines(self, lines: list[str], headings: set[int] | None = None) -> None:
        self.lines = lines
        self.headings = headings or set()
        # Width of the longest line decides horizontal scrolling; only scan a bounded sample
        # so a huge payload does not stall (long lines further down are cut, not lost: the
        # view can still scroll right by the sampled width).
        self._width = max((len(line) for line in lines[:5000]), default=0)
        self.update_virtual_size()
        self.scroll_to(0, 0, animate=False, immediate=True)
        self.refresh()

    @property
    def row_count(self) -> int:
        return len(self.lines)

    def content_width(self) -> int:
        return self._width

    def scroll_cursor_into_view(self) -> None:
        pass  # no cursor: the view stays where the reader scrolled it

    def action_cursor(self, delta: int) -> None:
        if delta < 0:
            self.action_scroll_up()
        else:
            self.action_scroll_down()

    def action_page(self, direction: int) -> None:
        if direction < 0:
            self.action_page_up()
        else:
            self.action_page_down()

    def action_edge(self, direction: int) -> None:
        if direction < 0:
            self.action_scroll_home()
        else:
            self.action_scroll_end()

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        index = y + scroll_y
        width = self.scrollable_content_region.width
        base = self.rich_style
        if index >= len(self.lines):
            return Strip.blank(width, base)
        line = self.lines[index]
        if index in self.headings:
            segments = [Segment(line, base + self.get_component_rich_style("lines--heading"))]
        else:
            match = JSON_KEY.match(line)
            if match:
                key_style = base + self.get_component_rich_style("lines--key")
                segments = [Segment(match.group(1), base), Segment(match.group(2), key_style),
                            Segment(line[match.end(2):], base)]
            else:
                segments = [Segment(line, base)]
        return Strip(segments).crop_extend(scroll_x, scroll_x + width, base)
