"""Read-only text of any length, rendered a screen at a time (a 1 MB payload is ~50,000 lines).
JSON object keys are tinted so a pretty-printed payload scans easily."""

from __future__ import annotations

import re

from rich.segment import Segment
from textual.binding import Binding
from textual.geometry import Size
from textual.scroll_view import ScrollView
from textual.strip import Strip

JSON_KEY = re.compile(r'^(\s*)("(?:[^"\\]|\\.)*")(:)')


class TextLines(ScrollView, can_focus=True):
    BINDINGS = [
        Binding("up,k", "scroll_up", show=False),
        Binding("down,j", "scroll_down", show=False),
        Binding("pageup", "page_up", show=False),
        Binding("pagedown", "page_down", show=False),
        Binding("home", "scroll_home", show=False),
        Binding("end", "scroll_end", show=False),
        Binding("left,h", "scroll_left", show=False),
        Binding("right,l", "scroll_right", show=False),
    ]

    COMPONENT_CLASSES = {"lines--key", "lines--heading"}

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.lines: list[str] = []
        self.headings: set[int] = set()

    def set_lines(self, lines: list[str], headings: set[int] | None = None) -> None:
        self.lines = lines
        self.headings = headings or set()
        # Width of the longest line decides horizontal scrolling; only scan a bounded sample
        # so a huge payload does not stall (long lines further down are cut, not lost: the
        # view can still scroll right by the sampled width).
        width = max((len(line) for line in lines[:5000]), default=0)
        self.virtual_size = Size(width, len(lines))
        self.scroll_to(0, 0, animate=False, immediate=True)
        self.refresh()

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
