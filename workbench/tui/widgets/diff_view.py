"""Two JSON values side by side, one row per aligned node of a `json_diff` tree.

Unchanged subtrees start collapsed; changed ones open breadth-first until about a screenful
of rows is shown, so the first paint costs the same for 1 KB or 1 MB payloads. Only rows on
screen are rendered (Line API). Each side is prefixed with a mark that reads without colour
(`~` changed, `+` added, `-` removed) for the high-contrast theme and for screen readers.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass

import orjson
from rich.segment import Segment
from rich.style import Style
from textual.binding import Binding
from textual.message import Message
from textual.strip import Strip

from workbench.domain.json_diff import MISSING, Change, DiffNode

from ..formatting import middle, truncate
from .cursor_view import CursorView

FIRST_PAINT_ROWS = 400  # open changed subtrees until about this many rows are visible
Path = tuple[int, ...]


@dataclass(frozen=True, slots=True)
class DiffRow:
    node: DiffNode
    depth: int
    path: Path


def _label(key: object) -> str:
    if key is None:
        return "$"
    if isinstance(key, int):
        return f"[{key}]"
    return str(key)


def _summary(value: object) -> str:
    if isinstance(value, dict):
        return f"{{{len(value)} keys}}" if value else "{}"
    if isinstance(value, list):
        return f"[{len(value)} items]" if value else "[]"
    return orjson.dumps(value).decode()


def changes_after(root: DiffNode, path: Path, forward: bool) -> tuple[DiffNode, Path] | None:
    """The first change after (or the last before) `path` in document order."""
    found: tuple[DiffNode, Path] | None = None
    for node, node_path in _changes(root, ()):
        if forward and node_path > path:
            return node, node_path
        if not forward:
            if node_path >= path:
                break
            found = (node, node_path)
    return found


def _changes(node: DiffNode, path: Path) -> Iterator[tuple[DiffNode, Path]]:
    if node.change is Change.SAME:
        return
    if node.change is Change.CHANGED and node.expandable:
        for index, child in enumerate(node.children):
            yield from _changes(child, path + (index,))
    else:
        yield node, path


class DiffView(CursorView):
    HEADER_LINES = 1
    BINDINGS = [
        Binding("enter,space", "fold", "Fold", show=True),
        Binding("right,l", "open", show=False),
        Binding("left,h", "close", show=False),
        Binding("n", "next_change(1)", "Next change"),
        Binding("N", "next_change(-1)", "Prev change"),
    ]

    COMPONENT_CLASSES = {"diff--header", "diff--cursor", "diff--same", "diff--changed", "diff--added",
                         "diff--removed", "diff--folded", "diff--gutter"}

    class Moved(Message):
        def __init__(self, view: DiffView, row: DiffRow | None) -> None:
            super().__init__()
            self.view = view
            self.row = row

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.root: DiffNode | None = None
        self.titles: tuple[tuple[str, str], tuple[str, str]] = (("", ""), ("", ""))
        self.rows: list[DiffRow] = []
        self.expanded: set[int] = set()  # id() of expanded nodes: nodes live as long as the tree

    # ----------------------------------------------------------------- model

    def set_diff(self, root: DiffNode, left: tuple[str, str], right: tuple[str, str],
                 rows: list[DiffRow] | None = None, expanded: set[int] | None = None) -> None:
        """Show a tree under two headings, each (title, ID); `rows`/`expanded` from
        `first_layout` (made off the UI thread) if given."""
        self.root = root
        self.titles = (left, right)
        if rows is None or expanded is None:
            rows, expanded = first_layout(root)
        self.rows, self.expanded = rows, expanded
        self.cursor = 0
        self.update_virtual_size()
        self.scroll_to(0, 0, animate=False, immediate=True)
        self.refresh()

    @property
    def row_count(self) -> int:
        return len(self.rows)

    def _rebuild(self) -> None:
        assert self.root is not None
        self.rows = list(_flatten(self.root, 0, (), self.expanded))
        self.update_virtual_size()

    def _toggle(self, index: int, open_: bool | None = None) -> None:
        row = self.rows[index]
        if not row.node.expandable:
            return
        is_open = id(row.node) in self.expanded
        if open_ is not None and open_ == is_open:
            return
        if is_open:
            self.expanded.discard(id(row.node))
            end = index + 1
            while end < len(self.rows) and self.rows[end].depth > row.depth:
                end += 1
            del self.rows[index + 1:end]
        else:
            self.expanded.add(id(row.node))
            below = [shown for i, child in enumerate(row.node.children)
                     for shown in _flatten(child, row.depth + 1, row.path + (i,), self.expanded)]
            self.rows[index + 1:index + 1] = below
        self.update_virtual_size()
        self.refresh()

    def reveal(self, path: Path) -> None:
        """Open every ancestor of `path` and put the cursor on it."""
        assert self.root is not None
        node = self.root
        for index in path:
            self.expanded.add(id(node))
            node = node.children[index]
        self._rebuild()
        target = next((i for i, row in enumerate(self.rows) if row.path == path), 0)
        self.move_to(target)

    # ----------------------------------------------------------------- actions

    def cursor_moved(self) -> None:
        self.post_message(self.Moved(self, self.rows[self.cursor] if self.rows else None))

    def activate(self) -> None:
        self.action_fold()

    def action_fold(self) -> None:
        if self.rows:
            self._toggle(self.cursor)

    def action_open(self) -> None:
        if not self.rows:
            return
        row = self.rows[self.cursor]
        if row.node.expandable and id(row.node) not in self.expanded:
            self._toggle(self.cursor, True)
        elif row.node.expandable:
            self.move_to(self.cursor + 1)

    def action_close(self) -> None:
        if not self.rows:
            return
        row = self.rows[self.cursor]
        if id(row.node) in self.expanded:
            self._toggle(self.cursor, False)
            return
        for index in range(self.cursor - 1, -1, -1):  # to the parent
            if self.rows[index].depth < row.depth:
                self.move_to(index)
                return

    def action_next_change(self, direction: int) -> None:
        if self.root is None or not self.rows:
            return
        found = changes_after(self.root, self.rows[self.cursor].path, direction > 0)
        if found is None:
            self.app.bell()
            return
        self.reveal(found[1])

    # ----------------------------------------------------------------- rendering

    def _style(self, name: str) -> Style:
        return self.get_component_rich_style(name)

    def _side(self, row: DiffRow, value: object, key: object, mark: str, width: int) -> str:
        if value is MISSING:
            return " " * width
        node = row.node
        fold = ""
        if node.expandable:
            fold = "▼ " if id(node) in self.expanded else "▶ "
        text = f"{mark}{'  ' * row.depth}{fold}{_label(key)}: {_summary(value)}"
        if node.change is Change.CHANGED and node.expandable and id(node) not in self.expanded:
            if node.changes_known:
                text += f"  ({node.changes} changed)"
        return truncate(text, width).ljust(width)

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width
        left_width = (width - 1) // 2
        right_width = width - 1 - left_width
        base = self.rich_style
        gutter = base + self._style("diff--gutter")
        if y == 0:
            style = base + self._style("diff--header")
            return Strip([Segment(_heading(*self.titles[0], left_width), style), Segment("│", gutter),
                          Segment(_heading(*self.titles[1], right_width), style)], width)
        index = int(self.scroll_y) + y - 1
        if index >= len(self.rows):
            return Strip([Segment(" " * left_width, base), Segment("│", gutter),
                          Segment(" " * right_width, base)], width)
        row = self.rows[index]
        node = row.node
        change = node.change
        if change is Change.SAME:
            folded = node.expandable and id(node) not in self.expanded
            style = base + self._style("diff--folded" if folded else "diff--same")
            left_style = right_style = style
            left_mark = right_mark = " "
        elif change is Change.CHANGED:
            left_style = right_style = base + self._style("diff--changed")
            left_mark = right_mark = "~"
        elif change is Change.ADDED:
            left_style, right_style = base, base + self._style("diff--added")
            left_mark, right_mark = " ", "+"
        else:
            left_style, right_style = base + self._style("diff--removed"), base
            left_mark, right_mark = "-", " "
        if index == self.cursor and self.has_focus:
            cursor = self._style("diff--cursor")
            left_style, right_style = left_style + cursor, right_style + cursor
        return Strip([
            Segment(self._side(row, node.left, node.left_key, left_mark, left_width), left_style),
            Segment("│", gutter),
            Segment(self._side(row, node.right, node.right_key, right_mark, right_width), right_style),
        ], width)

    def on_focus(self) -> None:
        self.refresh()

    def on_blur(self) -> None:
        self.refresh()


def _heading(title: str, ref: str, width: int) -> str:
    """The title, then as much of the ID as fits (cut in the middle: prefix and tail)."""
    room = width - len(title) - 1
    text = f"{title} {middle(ref, room)}" if ref and room >= 12 else title
    return truncate(text, width).ljust(width)


def _flatten(node: DiffNode, depth: int, path: Path, expanded: set[int]) -> Iterator[DiffRow]:
    yield DiffRow(node, depth, path)
    if id(node) in expanded:
        for index, child in enumerate(node.children):
            yield from _flatten(child, depth + 1, path + (index,), expanded)


def first_layout(root: DiffNode, budget: int = FIRST_PAINT_ROWS) -> tuple[list[DiffRow], set[int]]:
    """Rows for the first paint: the root open, then changed subtrees opened breadth-first
    while the rows stay within `budget`. Safe to call off the UI thread."""
    expanded: set[int] = set()
    visible = 1
    queue: deque[DiffNode] = deque([root])
    while queue:
        node = queue.popleft()
        if not node.expandable:
            continue
        children = node.children
        if node is not root and visible + len(children) > budget:
            continue
        expanded.add(id(node))
        visible += len(children)
        queue.extend(child for child in children if child.change is Change.CHANGED and child.expandable)
    return list(_flatten(root, 0, (), expanded)), expanded
