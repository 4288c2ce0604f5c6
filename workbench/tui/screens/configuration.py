"""Configuration (key 6): every connection with its current version, and for one connection its
history: each version with when, who and why, the settings it had (redacted), and the diff
between any two versions. Read only (every action here only reads, so none NEEDS a role):
everything is read through services in workers; changes are `workbench connection ...`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from rich.markup import escape
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import Static

from workbench.domain.redaction import redact
from workbench.services import connections
from workbench.services.connections import ConnectionInfo
from workbench.services.context import ServiceContext
from workbench.services.errors import NotFound
from workbench.services.views import DiffPair, DiffSide

from ..widgets import Column, Row, VirtualTable
from .diff import DiffScreen
from .document import json_document
from .table_screen import TableScreen

SETTINGS_LINES = 5  # what the settings panel shows before "… N more"

CONNECTION_COLUMNS = [
    Column("Connection", None, min_width=12),
    Column("Provider", 10),
    Column("Env", 7),
    Column("Version", 7, align="right"),
    Column("State", 6),
]

HISTORY_COLUMNS = [
    Column("Ver", 4, align="right"),
    Column("When", 11),
    Column("Actor", 14, drop_below=60),
    Column("Changed", 18),
    Column("Reason", None, min_width=14),
]


def setting_lines(value: Any, path: str = "") -> list[str]:
    """Settings as `path: value` lines (nested keys joined by dots, list items by [i]): a
    panel of a few lines says more this way than as indented JSON."""
    if isinstance(value, dict) and value:
        return [line for key, item in value.items()
                for line in setting_lines(item, f"{path}.{key}" if path else str(key))]
    if isinstance(value, list) and value:
        return [line for index, item in enumerate(value) for line in setting_lines(item, f"{path}[{index}]")]
    return [f"{path or '(settings)'}: {orjson.dumps(value).decode()}"]


_ABSENT = object()  # a path only one side has (None is a value)


def _flat(value: Any, path: str = "") -> dict[str, Any]:
    """Leaf paths and their values; an empty object or list has no leaves (what it gains does)."""
    if isinstance(value, dict):
        return {k: v for key, item in value.items() for k, v in _flat(item, f"{path}.{key}" if path else key).items()}
    if isinstance(value, list):
        return {k: v for index, item in enumerate(value) for k, v in _flat(item, f"{path}[{index}]").items()}
    return {path: value}


def changed_paths(before: Any, after: Any) -> list[str]:
    """What a version changed, as short sorted paths: `settings.` dropped, cut at a list and
    after two names (`sync.interval_s`, `secrets`, `paused`); the diff shows the detail."""
    old, new = _flat(before), _flat(after)
    # Sorted: the stores keep JSON keys in different orders (PostgreSQL's jsonb sorts them).
    return sorted({".".join(path.removeprefix("settings.").split("[")[0].split(".")[:2])
                   for path in old.keys() | new.keys() if old.get(path, _ABSENT) != new.get(path, _ABSENT)})


def settings_panel(title: str, settings: Any) -> str:
    lines = setting_lines(settings)
    shown = lines[:SETTINGS_LINES]
    if len(lines) > len(shown):
        shown.append(f"… {len(lines) - len(shown)} more (Enter shows the whole version)")
    return f"[b]{escape(title)}[/b]\n" + escape("\n".join(shown))


class ConfigurationScreen(TableScreen[list[ConnectionInfo]]):
    WHERE = "Configuration"
    NAME = "configuration"
    CSS_PATH = Path(__file__).with_name("configuration.tcss")
    COLUMNS = CONNECTION_COLUMNS
    EMPTY = "no connections yet: add one with `workbench connection add`"
    HELP = """Every connection's configuration: provider, environment, current version, and whether
it is paused. The panel below shows the current settings of the connection under the cursor
(secrets only ever as references, and anything that looks like a credential redacted).

Enter opens the connection's history: every version with when, who and why, the settings of
each, and the diff between any two. Changes are made with `workbench connection ...`; each is
a new version."""

    BINDINGS = [Binding("enter", "history", "History")]

    def compose_below(self) -> ComposeResult:
        yield Static("", id="configuration-settings", classes="settings-panel")

    def fetch(self, request: object) -> list[ConnectionInfo]:
        return connections.list_connections(self.ctx)

    def show(self, data: list[ConnectionInfo]) -> None:
        self.table.set_rows([
            Row(item.name, (item.name, item.provider, item.environment, str(item.version),
                            ("paused", "warn") if item.paused else ("active", "ok")), data=item)
            for item in data])
        self.status.set_info(f"{len(data)} connection{'s' if len(data) != 1 else ''}")
        self._show_settings(self.table.current_row)

    def on_virtual_table_highlighted(self, event: VirtualTable.Highlighted) -> None:
        self._show_settings(event.row)

    def _show_settings(self, row: Row | None) -> None:
        panel = self.query_one("#configuration-settings", Static)
        if row is None or not isinstance(row.data, ConnectionInfo):
            panel.update("")
            return
        item = row.data
        panel.update(settings_panel(f"{item.name} · version {item.version} · current settings",
                                    redact(item.settings)))

    def on_virtual_table_selected(self, event: VirtualTable.Selected) -> None:
        self.action_history()

    def action_history(self) -> None:
        item = self.current(ConnectionInfo)
        if item is not None:
            self.app.push_screen(ConnectionHistoryScreen(item.name))


@dataclass(frozen=True)
class History:
    connection: ConnectionInfo
    versions: list[dict[str, Any]]  # newest first; each as services.connections.history gives it
    changed: dict[int, list[str]]  # by version: what it changed from the one before


def what_changed(versions: list[dict[str, Any]]) -> dict[int, list[str]]:
    """For each version (oldest first), the paths it changed; the first made the connection."""
    changed: dict[int, list[str]] = {}
    previous: dict[str, Any] | None = None
    for version in versions:
        changed[version["version"]] = (changed_paths(previous, version["snapshot"]) if previous is not None
                                       else ["(created)"])
        previous = version["snapshot"]
    return changed


def _side(version: dict[str, Any]) -> DiffSide:
    return DiffSide(f"v{version['version']} {version['actor']}", version["snapshot"], version["at"][:16])


def versions_pair(ctx: ServiceContext, name: str, older: int, newer: int) -> DiffPair:
    """Two versions of a connection (as redacted snapshots), the older on the left."""
    by_version = {v["version"]: v for v in connections.history(ctx, name)}
    missing = [str(n) for n in (older, newer) if n not in by_version]
    if missing:
        raise NotFound(f"{name} has no version {' or '.join(missing)} in its history")
    return DiffPair(_side(by_version[older]), _side(by_version[newer]))


class ConnectionHistoryScreen(TableScreen[History]):
    WHERE = "History"
    NAME = "history"
    CSS_PATH = Path(__file__).with_name("configuration.tcss")
    COLUMNS = HISTORY_COLUMNS
    EMPTY = "no versions recorded"
    MARKABLE = True
    HELP = """One connection's configuration history, newest first: each version with when it was
made, who made it, what it changed (in short: `sync.interval_s`, `secrets`, `paused`) and why.
The panel below shows the settings of the version under the cursor
(redacted); Enter shows that whole version (settings, paused, provider, environment).

Space marks a version; d diffs the two marked versions (the older on the left), or the version
under the cursor against the one before it."""

    BINDINGS = [
        Binding("enter", "version", "Version"),
        Binding("space", "mark", "Mark"),
        Binding("d", "diff", "Diff"),
    ]

    def __init__(self, name: str) -> None:
        super().__init__()
        self.connection_name = name
        self._history: History | None = None

    def compose_above(self) -> ComposeResult:
        yield Static("", id="history-summary", classes="record-summary")

    def compose_below(self) -> ComposeResult:
        yield Static("", id="history-settings", classes="settings-panel")

    def fetch(self, request: object) -> History:
        info = connections.get_connection(self.ctx, self.connection_name)
        versions = connections.history(self.ctx, self.connection_name)
        return History(info, list(reversed(versions)), what_changed(versions))

    def show(self, data: History) -> None:
        self._history = data
        info = data.connection
        self.query_one("#history-summary", Static).update(
            f"[b]{escape(info.name)}[/b]  {escape(info.provider)} · {escape(info.environment)} · "
            f"{'paused' if info.paused else 'active'} · version {info.version}")
        self.table.set_rows([
            Row(str(v["version"]), (str(v["version"]), v["at"][5:16].replace("T", " "), v["actor"],
                                    ", ".join(data.changed.get(v["version"], [])) or "-", v["reason"] or "-"),
                data=v)
            for v in data.versions], keep=self.table.current_row.key if self.table.current_row else None)
        self._status()
        self._show_settings(self.table.current_row)

    def _status(self) -> None:
        marked = len(self.table.marked)
        count = len(self._history.versions) if self._history else 0
        self.status.set_info(f"{self.connection_name} · {count} version{'s' if count != 1 else ''}"
                             + (f" · {marked} marked" if marked else ""))

    def on_virtual_table_highlighted(self, event: VirtualTable.Highlighted) -> None:
        self._show_settings(event.row)

    def _show_settings(self, row: Row | None) -> None:
        panel = self.query_one("#history-settings", Static)
        if row is None or not isinstance(row.data, dict):
            panel.update("")
            return
        version = row.data
        panel.update(settings_panel(f"settings at version {version['version']}",
                                    version["snapshot"].get("settings", {})))

    def on_virtual_table_selected(self, event: VirtualTable.Selected) -> None:
        self.action_version()

    def action_version(self) -> None:
        version = self.current(dict)
        if version is not None:
            title = f"{self.connection_name} version {version['version']}"
            self.wb.open_document(title, json_document(
                escape(f"{title} · {version['at'][:19]} · {version['actor']} · {version['reason'] or '-'}"),
                version["snapshot"]))

    def action_mark(self) -> None:
        table = self.table
        row = table.current_row
        if row is None:
            return
        if row.key not in table.marked and len(table.marked) >= 2:
            self.notify("Two versions are marked already; unmark one first", severity="warning")
            return
        table.toggle_mark()
        table.action_cursor(1)
        self._status()

    def action_diff(self) -> None:
        marked = sorted(int(row.key) for row in self.table.marked_rows)
        if len(marked) == 2:
            older, newer = marked
        else:
            current = self.table.current_row
            chosen = marked[0] if marked else (int(current.key) if current is not None else None)
            known = sorted(int(row.key) for row in self.table.rows)
            before = [n for n in known if chosen is not None and n < chosen]
            if chosen is None or not before:
                self.notify("Mark two versions (space), or put the cursor on a version after the first to compare "
                            "it with the one before", severity="warning")
                return
            older, newer = before[-1], chosen
        name = self.connection_name
        self.app.push_screen(VersionDiffScreen(lambda ctx: versions_pair(ctx, name, older, newer)))


class VersionDiffScreen(DiffScreen):
    WHERE = "Version diff"
    HELP = """Two versions of a connection side by side, the older on the left, aligned by structure:
~ changed, + added (right only), - removed (left only). Settings are redacted as everywhere;
secrets appear only as references into the vault. Unchanged parts are folded.

Enter/space folds or unfolds; Right opens, Left closes (or goes to the parent);
n / N jump to the next / previous change (opening what hides it)."""
