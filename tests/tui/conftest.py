"""Fixtures for the TUI tests: a deterministic store, an app that renders the same way on
every run (fixed clock, no cursor blink, no live refresh unless asked), and `settle`, which
waits until every worker has landed its result on screen."""

from __future__ import annotations

import asyncio
import copy
import io
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from textual import events
from textual.keys import _character_to_key
from textual.pilot import Pilot

from store.database import open_store
from tests.support import make_context
from tests.tui.fixture_store import DISPLAY_NOW, build_store, fill
from workbench.services.context import ServiceContext
from workbench.tui.app import WorkbenchApp


@pytest.fixture(autouse=True)
def config_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Settings (the remembered theme) go to a temporary directory, never the home dir."""
    path = tmp_path / "config"
    monkeypatch.setenv("WORKBENCH_CONFIG_DIR", str(path))
    return path


@pytest.fixture(scope="session")
def template_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ServiceContext]:
    """Built once per session; each test gets a copy (building takes about a second)."""
    path = tmp_path_factory.mktemp("template") / "tui.db"
    key = path.with_name("audit.key")
    # A fixed audit key, so entries' MACs (shown on the entry screen) are the same every run;
    # beside the store, for each copy to take.
    key.write_bytes(bytes(range(32)))
    key.chmod(0o600)
    with pytest.MonkeyPatch.context() as env:
        env.setenv("WORKBENCH_AUDIT_KEY_FILE", str(key))
        ctx = build_store(path)
    ctx.engine.dispose()
    return path, ctx


@pytest.fixture
def store(template_store: tuple[Path, ServiceContext], tmp_path: Path,
          audit_key_file: Path) -> Iterator[ServiceContext]:
    """A private copy of the fixture store (and its audit key), with the clock and ID factory
    exactly where the build left them, so every test sees the same IDs and times."""
    source, built = template_store
    path = tmp_path / "tui.db"
    shutil.copyfile(source, path)
    audit_key_file.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(source.with_name("audit.key"), audit_key_file)
    engine = open_store(f"sqlite:///{path}")
    ctx = ServiceContext(engine=engine, clock=copy.deepcopy(built.clock), ids=copy.deepcopy(built.ids),
                         actor=built.actor)
    yield ctx
    engine.dispose()


@pytest.fixture
def db_ctx(engine: Any) -> ServiceContext:
    """The fixture store's content on each backend (SQLite and PostgreSQL)."""
    return fill(make_context(engine, deterministic=True))


def make_app(ctx: ServiceContext, **options: Any) -> WorkbenchApp:
    settings: dict[str, Any] = {"refresh_interval": None, "clock": lambda: DISPLAY_NOW,
                                "theme": "workbench-dark", "remember_theme": False, "cursor_blink": False}
    settings.update(options)
    return WorkbenchApp(ctx, **settings)


async def settle(pilot: Pilot[Any]) -> None:
    """Wait until no worker runs and the screen has shown what it loaded."""
    app = pilot.app
    for _ in range(100):
        await pilot.pause()
        await app.workers.wait_for_complete()
        await pilot.pause()
        loading = getattr(app.screen, "loading_data", False)
        if not loading and not any(worker.is_running for worker in app.workers):
            return
    raise AssertionError("the app did not settle")


async def until(pilot: Pilot[Any], condition: Callable[[], bool], timeout_s: float = 15.0) -> None:
    """Settle until `condition` holds: an action's worker may start only after a dialog closed,
    so one settle on a loaded machine can come back before it even began."""
    deadline = time.monotonic() + timeout_s
    while True:
        await settle(pilot)
        if condition():
            return
        if time.monotonic() > deadline:
            raise AssertionError("the app never got there")
        await asyncio.sleep(0.02)


def screen_text(app: WorkbenchApp) -> str:
    """What the terminal shows now, as plain text: rendered as `export_screenshot` renders it
    (modal screens over the ones below), exported as text instead of SVG."""
    width, height = app.size
    console = Console(width=width, height=height, file=io.StringIO(), force_terminal=True, record=True,
                      legacy_windows=False, safe_box=False)
    console.print(app.screen._compositor.render_update(full=True, screen_stack=app._background_screens))
    return console.export_text()


def notices(app: WorkbenchApp) -> list[str]:
    """The notifications shown so far (run the app with `notifications=True`)."""
    return [str(n.message) for n in app._notifications]


async def type_text(pilot: Pilot[Any], text: str) -> None:
    """Type `text` into the focused widget: one key event per character, in order, through the
    driver as `pilot.press` sends them, as a fast typist would. `pilot.press` also waits for the
    app to go idle after every key (40-100 ms a key, most of a form test's time); here the app
    handles the whole text, then we wait once."""
    app = pilot.app
    assert app._driver is not None
    for ch in text:
        key = _character_to_key(ch) if not ch.isalnum() else ch
        event = events.Key(key, ch)
        event.set_sender(app)
        app._driver.send_message(event)
    # Twice: the app forwards each key to the focused widget's queue while the first pause runs.
    await pilot.pause()
    await pilot.pause()


async def palette_search(pilot: Pilot[Any], query: str = "") -> list[str]:
    """Open the command palette, type `query`, and return the commands it lists (their names),
    once its search has finished. The palette stays open."""
    from textual.command import CommandList, CommandPalette

    await pilot.press("ctrl+p", *query)
    # pilot.press returns once the palette has handled the last key, so its search for the
    # whole text is under way in a worker: wait for that worker, then for the list it filled.
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()
    palette = pilot.app.screen
    assert isinstance(palette, CommandPalette)
    commands = palette.query_one(CommandList)
    return [str(commands.get_option_at_index(i).prompt).split("\n")[0] for i in range(commands.option_count)]
