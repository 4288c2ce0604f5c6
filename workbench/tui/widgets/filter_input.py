"""The one-line filter above a list (`/` focuses it). While it has focus, printable keys are
text, so the screen's letter keys step aside; its own footer keys say how to get out."""

from __future__ import annotations

from textual.binding import Binding
from textual.widgets import Input


class FilterInput(Input):
    BINDINGS = [
        Binding("enter", "submit", "Apply"),
        Binding("escape", "screen.back", "To list"),
        Binding("down", "screen.back", show=False),
    ]

    def __init__(self, value: str = "", *, placeholder: str = "", id: str | None = None) -> None:
        super().__init__(value, placeholder=placeholder, id=id, classes="filter")

    def on_mount(self) -> None:
        # Tests turn blinking off so screenshots do not depend on timing.
        self.cursor_blink = bool(getattr(self.app, "cursor_blink", True))
