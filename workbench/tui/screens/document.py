"""A read-only document: a summary on top and long text below (a payload, an audit entry, a
record's state). The text is loaded off the UI thread and rendered a screen at a time."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from textual.app import ComposeResult
from textual.widget import Widget
from textual.widgets import Static

from workbench.services.context import ServiceContext
from workbench.services.views import pretty_json

from ..widgets import TextLines
from .base import WorkbenchScreen


@dataclass
class Document:
    summary: str
    lines: list[str] = field(default_factory=list)
    headings: set[int] = field(default_factory=set)

    def section(self, title: str, text: str) -> None:
        if self.lines:
            self.lines.append("")
        self.headings.add(len(self.lines))
        self.lines.append(title)
        self.lines.extend(text.splitlines())


def json_document(summary: str, value: Any) -> Document:
    doc = Document(summary)
    doc.lines = pretty_json(value).splitlines()
    return doc


class DocumentScreen(WorkbenchScreen[Document]):
    WHERE = "Detail"
    LIVE = False  # what it shows does not change
    HELP = """A read-only view. Arrows, PageUp/PageDown, Home/End scroll; Escape goes back."""

    def __init__(self, title: str, loader: Callable[[ServiceContext], Document]) -> None:
        super().__init__()
        self.title_text = title
        self.loader = loader

    def compose_body(self) -> ComposeResult:
        yield Static("", classes="document-summary")
        yield TextLines(classes="document-body")

    def main_widget(self) -> Widget:
        return self.query_one(TextLines)

    def on_mount(self) -> None:
        self.status.set_info(self.title_text)
        self.query_one(TextLines).focus()
        super().on_mount()

    def fetch(self, request: object) -> Document:
        return self.loader(self.ctx)

    def show(self, data: Document) -> None:
        self.query_one(".document-summary", Static).update(data.summary)
        self.query_one(TextLines).set_lines(data.lines, data.headings)
