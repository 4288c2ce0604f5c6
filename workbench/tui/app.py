"""The workbench TUI: an App over a `ServiceContext`.

Five top-level screens, each its own mode (its own stack, kept while you visit the others):
Providers (home), Records, Error queue, Audit, Configuration, Drift, Alerts. Timelines, payloads, diffs and failure lists
are pushed on top of the mode they were opened from; Escape pops back.

A timer asks the visible screen to re-read the store every `refresh_interval` seconds; the
screen does so in a worker thread (see screens/base.py), so other processes' writes appear
without the UI ever waiting on the database.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Callable
from concurrent.futures import Future
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from rich.markup import escape
from textual.app import App
from textual.binding import Binding
from textual.screen import Screen

from workbench.services.access import Role
from workbench.services.context import ServiceContext

from .commands import WorkbenchCommands
from .screens.base import WorkbenchScreen
from .screens.providers import ProvidersScreen
from .settings import load_settings, save_settings
from .theming import default_theme, shipped_themes

if TYPE_CHECKING:
    from workbench.services.triage import FailureGroup
    from workbench.services.views import DiffPair
    from workbench.vault import UnlockedVault

    from .screens.document import Document

DEFAULT_REFRESH_SECONDS = 2.0


def prefetch(query: Callable[[ServiceContext], Any], ctx: ServiceContext) -> Future[Any]:
    future: Future[Any] = Future()

    def run() -> None:
        try:
            future.set_result(query(ctx))
        except BaseException as exc:  # handed to whoever waits for the result
            future.set_exception(exc)

    threading.Thread(target=run, name="workbench-prefetch", daemon=True).start()
    return future


# Only the home screen is imported up front: the others (and the services behind them) load
# when first opened, which keeps start-up to the Providers screen short.
def _records() -> Screen[Any]:
    from .screens.records import RecordsScreen

    return RecordsScreen()


def _errors() -> Screen[Any]:
    from .screens.errors import ErrorsScreen

    return ErrorsScreen()


def _audit() -> Screen[Any]:
    from .screens.audit import AuditScreen

    return AuditScreen()


def _configuration() -> Screen[Any]:
    from .screens.configuration import ConfigurationScreen

    return ConfigurationScreen()


def _drift() -> Screen[Any]:
    from .screens.drift import DriftScreen

    return DriftScreen()


def _alerts() -> Screen[Any]:
    from .screens.alerts import AlertsScreen

    return AlertsScreen()


class WorkbenchApp(App[None]):
    CSS_PATH = Path(__file__).with_name("app.tcss")  # absolute: subclasses live elsewhere
    TITLE = "Integration Workbench"
    # One provider (it has themes and quit too): hits from several providers arrive in a racing
    # order, so equal scores would list differently from one opening to the next.
    COMMANDS = {WorkbenchCommands}
    MODES = {"providers": ProvidersScreen, "records": _records, "errors": _errors, "audit": _audit,
             "configuration": _configuration, "drift": _drift, "alerts": _alerts}
    MODE_TITLES: ClassVar[dict[str, str]] = {"providers": "Providers", "records": "Records",
                                             "errors": "Error queue", "audit": "Audit",
                                             "configuration": "Configuration", "drift": "Drift",
                                             "alerts": "Alerts"}
    BINDINGS = [
        Binding("1", "go_to('providers')", "Providers", show=False),
        Binding("2", "go_to('records')", "Records", show=False),
        Binding("3", "go_to('errors')", "Errors", show=False),
        Binding("4", "go_to('audit')", "Audit", show=False),
        Binding("5", "open_vault", "Vault", show=False),
        Binding("6", "go_to('configuration')", "Configuration", show=False),
        Binding("7", "go_to('drift')", "Drift", show=False),
        Binding("8", "go_to('alerts')", "Alerts", show=False),
    ]

    def __init__(self, ctx: ServiceContext, *, refresh_interval: float | None = DEFAULT_REFRESH_SECONDS,
                 clock: Callable[[], datetime] | None = None, theme: str | None = None,
                 remember_theme: bool = True, cursor_blink: bool = True, start: str = "providers") -> None:
        """`refresh_interval` None or 0 turns live refresh off; `clock` is what the screens
        show as "now" (default: the context's clock, in local time); `cursor_blink=False` and
        a fixed `clock` make screenshots reproducible."""
        super().__init__()
        self.ctx = ctx
        # The actor's role as the screens last looked it up (in their fetch workers): what
        # the footer and the palette offer. None until the first fetch: nothing beyond reading.
        self.role: Role | None = None
        self.refresh_interval = refresh_interval
        self._clock = clock or (lambda: ctx.clock().astimezone())
        self.cursor_blink = cursor_blink
        self.remember_theme = False  # not while choosing the initial theme
        self.start_mode = start
        # The vaults unlocked in this session, by environment: unlocked once (Vault screen, `u`),
        # kept until locked (`l`) or the app closes; what decrypts secrets and payloads.
        self.unlocked_vaults: dict[str, UnlockedVault] = {}
        themes = shipped_themes()
        for item in themes:
            self.register_theme(item)
        self.shipped_theme_names = [item.name for item in themes]
        # The home screen's query starts now, in a thread, while Textual starts up (SQLite
        # does its work outside the GIL): the first screen shows real figures sooner.
        self.prefetched: Future[Any] | None = (prefetch(lambda c: ProvidersScreen.load_health(c, self.now()), ctx)
                                               if start == "providers" else None)
        wanted = theme or load_settings().get("theme") or default_theme()
        self.theme = wanted if wanted in self.available_themes else default_theme()
        self.remember_theme = remember_theme

    # ----------------------------------------------------------------- lifecycle

    def now(self) -> datetime:
        return self._clock()

    def on_mount(self) -> None:
        self.switch_mode(self.start_mode)
        if self.refresh_interval:
            self.set_interval(self.refresh_interval, self._tick, name="live-refresh")

    def _tick(self) -> None:
        screen = self.screen
        if isinstance(screen, WorkbenchScreen) and screen.LIVE and screen.refresh_due(self.refresh_interval or 0):
            screen.reload()

    def watch_theme(self, theme: str) -> None:
        if self.remember_theme:
            save_settings({"theme": theme})

    def set_theme(self, name: str) -> None:
        self.theme = name

    # ----------------------------------------------------------------- navigation

    def action_go_to(self, mode: str) -> None:
        self.go_to(mode)

    def go_to(self, mode: str) -> None:
        self.switch_mode(mode)

    def go_back(self) -> None:
        if len(self.screen_stack) > 1:
            self.pop_screen()
        elif self.current_mode != "providers":
            self.switch_mode("providers")

    async def _open_mode_root(self, mode: str) -> WorkbenchScreen[Any]:
        await self.switch_mode(mode)
        while len(self.screen_stack) > 1:
            await self.pop_screen()
        screen = self.screen
        assert isinstance(screen, WorkbenchScreen)
        return screen

    def open_records(self, text: str) -> None:
        self._open_filtered("records", text)

    def open_errors(self, text: str) -> None:
        self._open_filtered("errors", text)

    def _open_filtered(self, mode: str, text: str) -> None:
        """A top-level screen, back at its root, showing what matches `text`."""
        async def go() -> None:
            screen = await self._open_mode_root(mode)
            set_filter = getattr(screen, "set_filter", None)
            if set_filter is not None:
                set_filter(text)

        self.call_later(go)

    def action_open_vault(self) -> None:
        from .screens.vault import VaultScreen

        if not isinstance(self.screen, VaultScreen):
            self.push_screen(VaultScreen())

    def open_timeline(self, record_ref: str) -> None:
        from .screens.timeline import TimelineScreen

        self.push_screen(TimelineScreen(record_ref))

    def open_payload(self, delivery_id: str, record_id: str | None = None) -> None:
        from .screens.payload import PayloadScreen

        self.push_screen(PayloadScreen(delivery_id, record_id))

    def open_diff(self, loader: Callable[[ServiceContext], DiffPair]) -> None:
        from .screens.diff import DiffScreen

        self.push_screen(DiffScreen(loader))

    def open_state_diff(self, delivery_id: str, record_id: str) -> None:
        from workbench.services.views import delivery_against_state

        from .vaults import unlocked_vaults

        self.open_diff(lambda ctx: delivery_against_state(ctx, delivery_id, record_id, unlocked_vaults(self)))

    def open_group(self, group: FailureGroup, record_id: str | None = None) -> None:
        """The open failures of a group (only one record's, when `record_id` is given)."""
        from .screens.failures import FailuresScreen

        self.push_screen(FailuresScreen(group, record_id))

    def open_document(self, title: str, document: Document) -> None:
        from .screens.document import DocumentScreen

        self.push_screen(DocumentScreen(title, lambda ctx: document))

    def open_detail(self, title: str, value: Any) -> None:
        from .screens.document import json_document

        self.open_document(title, json_document(escape(title), value))

    def open_detail_loader(self, title: str, loader: Callable[[ServiceContext], Any]) -> None:
        from .screens.document import DocumentScreen, json_document

        self.push_screen(DocumentScreen(title, lambda ctx: json_document(escape(title), loader(ctx))))

    # ----------------------------------------------------------------- app-wide actions

    def action_help(self) -> None:
        from .screens.help import HelpScreen, screen_keys

        screen = self.screen
        if isinstance(screen, WorkbenchScreen):
            self.push_screen(HelpScreen(screen.WHERE, screen.HELP, screen_keys(screen)))

    def action_refresh(self) -> None:
        if isinstance(self.screen, WorkbenchScreen):
            self.screen.reload()

    def action_prompt_records(self) -> None:
        from .screens.dialogs import PromptScreen

        self.push_screen(PromptScreen("Records", "Filter (id, external id, status, kind, connection)"),
                         lambda text: self.open_records(text) if text is not None else None)

    def action_prompt_timeline(self) -> None:
        from .screens.dialogs import PromptScreen

        self.push_screen(PromptScreen("Timeline", "Record: internal or external ID", required=True),
                         lambda ref: self.open_timeline(ref) if ref else None)


def tune_gc() -> None:
    """Keep the cyclic garbage collector's pauses short in a long-lived UI holding large read
    models (10,000-entry timelines, two parsed 1 MB payloads): everything imported so far is
    frozen out of its scans, and collections run less often, so a full collection does not
    stall a keystroke for a third of a second. Measured in benchmarks/tui_bench.py."""
    gc.freeze()
    gc.set_threshold(5_000, 20, 20)


def run_tui(ctx: ServiceContext) -> None:
    """Run the workbench in this terminal until the operator quits."""
    tune_gc()
    WorkbenchApp(ctx).run()
