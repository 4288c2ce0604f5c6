"""`?`: what the current screen shows and every key that works on it."""

from __future__ import annotations

from typing import Any

from rich.markup import escape
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Label, Static

GLOBAL_KEYS = [
    ("1 2 3 4 6 7 8", "Providers, Records, Error queue, Audit, Configuration, Drift, Alerts"),
    ("5", "Vault: secrets, unlock, add, rotate, rekey"),
    ("ctrl+p", "command palette: every screen, action and theme"),
    ("?", "this help"),
    ("/", "filter or search (where the screen has one)"),
    ("escape", "leave the filter, then go back"),
    ("ctrl+r", "refresh now (screens also follow the store by themselves)"),
    ("ctrl+q", "quit"),
]


def reflow(text: str) -> str:
    """Join the hard-wrapped lines of each paragraph so the text wraps to the dialog; keep
    paragraphs with indented lines (small tables) as they are."""
    paragraphs = []
    for paragraph in text.strip().split("\n\n"):
        lines = paragraph.splitlines()
        if any(line.startswith(" ") for line in lines):
            paragraphs.append(paragraph)
        else:
            paragraphs.append(" ".join(line.strip() for line in lines))
    return "\n\n".join(paragraphs)


def key_display(key: str) -> str:
    names = {"question_mark": "?", "slash": "/", "asterisk": "*", "space": "space",
             "left_square_bracket": "[", "right_square_bracket": "]"}
    return ", ".join(names.get(k.strip(), k.strip()) for k in key.split(","))


def key_table(keys: list[tuple[str, str]]) -> Text:
    # Built as Text, not markup: keys such as "[" would read as markup.
    return Text("\n").join(Text.assemble((key.rjust(10), "bold"), "  ", what) for key, what in keys)


def screen_keys(screen: Screen[Any]) -> list[tuple[str, str]]:
    """The keys a screen defines (in the footer or not), then the visible keys of the focused
    widget; not the focus and scrolling plumbing every Textual widget inherits, nor the writes
    a read-only store has switched off."""
    keys: list[tuple[str, str]] = []
    seen: set[str] = set()

    def add(bindings: object) -> None:
        for binding in bindings if isinstance(bindings, list) else []:
            if (isinstance(binding, Binding) and binding.description and binding.action not in seen
                    and screen.check_action(binding.action.split("(")[0], ()) is not False):
                seen.add(binding.action)
                keys.append((key_display(binding.key), binding.description))

    for cls in type(screen).__mro__:
        if cls.__module__.startswith("workbench."):
            add(cls.__dict__.get("BINDINGS"))
    focused = screen.focused
    if focused is not None:
        add([b for b in getattr(type(focused), "BINDINGS", []) if isinstance(b, Binding) and b.show])
    return keys


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,question_mark", "close", "Close")]

    def __init__(self, where: str, text: str, keys: list[tuple[str, str]]) -> None:
        super().__init__(classes="dialog-screen")
        self._where = where
        self._text = text
        self._keys = keys

    def compose(self) -> ComposeResult:
        with VerticalScroll(classes="help"):
            yield Label(f"Help · {self._where}", classes="dialog-title")
            yield Static(escape(reflow(self._text)), classes="help-text")
            yield Label("Keys on this screen", classes="help-heading")
            yield Static(key_table(self._keys), classes="help-keys")
            yield Label("Everywhere", classes="help-heading")
            yield Static(key_table(GLOBAL_KEYS), classes="help-keys")
            yield Label("escape closes", classes="dialog-hint")

    def on_mount(self) -> None:
        self.query_one(VerticalScroll).focus()

    def action_close(self) -> None:
        self.dismiss(None)
