"""The top line of every screen: where you are, what is shown, and when it was last read."""

from __future__ import annotations

from rich.markup import escape
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Label


class StatusLine(Horizontal):
    def __init__(self, where: str) -> None:
        super().__init__(classes="status-line")
        self._where = where

    def compose(self) -> ComposeResult:
        yield Label(self._where, classes="status-where")
        yield Label("", classes="status-info")
        yield Label("loading…", classes="status-refreshed")

    def set_info(self, text: str) -> None:
        self.query_one(".status-info", Label).update(escape(text))  # may hold what the user typed

    def set_refreshed(self, text: str, *, failed: bool = False) -> None:
        label = self.query_one(".status-refreshed", Label)
        label.update(escape(text))
        label.set_class(failed, "-failed")
