"""Payload diff: two JSON values side by side, aligned by structure.

The service call and the first layout run in a worker; the total number of changes is
counted afterwards in a second worker, so the first paint never waits for a full walk of two
large documents.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from textual.app import ComposeResult
from textual.widget import Widget

from workbench.domain.json_diff import Change, DiffNode, diff
from workbench.services.context import ServiceContext
from workbench.services.views import DiffPair

from ..widgets import DiffView
from ..widgets.diff_view import DiffRow, first_layout
from .base import WorkbenchScreen


@dataclass
class DiffData:
    pair: DiffPair
    root: DiffNode
    rows: list[DiffRow]
    expanded: set[int]


class DiffScreen(WorkbenchScreen[DiffData]):
    WHERE = "Diff"
    LIVE = False  # stored payloads do not change
    HELP = """Two payloads side by side, aligned by JSON structure: object members by key, array
elements by their `id` (or by content). ~ changed, + added (right only), - removed (left only).
Unchanged subtrees are folded; changed ones open until about a screenful is shown.

Enter/space folds or unfolds; Right opens, Left closes (or goes to the parent);
n / N jump to the next / previous change (opening what hides it)."""

    def __init__(self, loader: Callable[[ServiceContext], DiffPair]) -> None:
        super().__init__()
        self.loader = loader
        self._root: DiffNode | None = None

    def compose_body(self) -> ComposeResult:
        yield DiffView(id="diff-view")

    def main_widget(self) -> Widget:
        return self.query_one(DiffView)

    def on_mount(self) -> None:
        self.query_one(DiffView).focus()
        super().on_mount()

    def fetch(self, request: object) -> DiffData:
        pair = self.loader(self.ctx)
        root = diff(pair.left.value, pair.right.value)
        rows, expanded = first_layout(root)
        return DiffData(pair, root, rows, expanded)

    def show(self, data: DiffData) -> None:
        self._root = data.root
        view = self.query_one(DiffView)
        left, right = data.pair.left, data.pair.right
        view.set_diff(data.root, (left.title, left.ref), (right.title, right.ref), data.rows, data.expanded)
        if data.root.change is Change.SAME:
            self.status.set_info("identical")
        else:
            self.status.set_info("counting changes…")
            root = data.root
            # After the first paint: counting walks both documents and would compete with it.
            self.call_after_refresh(lambda: self.run_worker(lambda: self._count(root), thread=True, group="count",
                                                            exit_on_error=False))

    def _count(self, root: DiffNode) -> None:
        total = root.changes  # walks the changed part of both documents
        self._post(self._counted, root, total)

    def _counted(self, root: DiffNode, total: int) -> None:
        if root is self._root and self.is_attached:
            self.status.set_info(f"{total:,} change(s) · n/N next/prev")
            self.query_one(DiffView).refresh()
