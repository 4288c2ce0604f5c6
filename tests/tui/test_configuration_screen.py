"""The Configuration screen (key 6): connections with their current settings (redacted), one
connection's history (version, when, who, why, the settings of each) and the diff between any
two versions. The history is made by the real use cases (connections.update_settings and
set_paused), on SQLite and PostgreSQL alike."""

from __future__ import annotations

from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import Static

from tests.tui.conftest import make_app, notices, palette_search, screen_text, settle
from workbench.services import connections
from workbench.services.context import ServiceContext
from workbench.tui.app import WorkbenchApp
from workbench.tui.screens.configuration import (
    ConfigurationScreen,
    ConnectionHistoryScreen,
    VersionDiffScreen,
    changed_paths,
    setting_lines,
)
from workbench.tui.screens.diff import DiffScreen
from workbench.tui.screens.document import DocumentScreen
from workbench.tui.widgets import DiffView

TOKEN = "Bearer CONFIGtoken0123456789abcdefXYZ"


def change_acme(ctx: ServiceContext) -> ServiceContext:
    """Versions 2-4 of acme: a settings change, a pause, a secret reference (and a credential
    pasted where it should not be, which the screen must show redacted)."""
    def faster(settings: dict[str, Any]) -> dict[str, Any]:
        settings["sync"]["interval_s"] = 60
        return settings

    def with_reference(settings: dict[str, Any]) -> dict[str, Any]:
        settings["secrets"] = [{"name": "stripe-api-key", "kind": "api_key", "environment": "sandbox",
                                "added_at": "2026-01-01T00:00:00+00:00", "expires_at": None, "retired_at": None}]
        settings["note"] = TOKEN
        return settings

    connections.update_settings(ctx, "acme", faster, "connection.set", reason="sync every minute for the launch")
    connections.set_paused(ctx, "acme", True, reason="provider incident INC-42")
    connections.update_settings(ctx, "acme", with_reference, "connection.secret.add", reason="api key added")
    return ctx


def panel(app: WorkbenchApp, selector: str) -> str:
    return str(app.screen.query_one(selector, Static).render())


async def open_history(pilot: Pilot[Any]) -> None:
    await settle(pilot)
    await pilot.press("6")
    await settle(pilot)
    await pilot.press("enter")
    await settle(pilot)


def test_settings_read_as_path_value_lines():
    assert setting_lines({"sync": {"interval_s": 60}, "secrets": [{"name": "k"}], "empty": {}}) == [
        "sync.interval_s: 60", "secrets[0].name: \"k\"", "empty: {}"]


def test_what_a_version_changed_in_short():
    before = {"paused": False, "settings": {"sync": {"interval_s": 300}, "retention": {"raw_days": None},
                                            "secrets": [{"name": "a", "retired_at": None}]}}
    after = {"paused": False, "settings": {"sync": {"interval_s": 60}, "retention": {"raw_days": None},
                                           "secrets": [{"name": "a", "retired_at": "2026"}, {"name": "b"}],
                                           "payloads": {"encrypt": True}}}
    assert changed_paths(before, after) == ["payloads.encrypt", "secrets", "sync.interval_s"]
    assert changed_paths(after, after) == []
    assert changed_paths({"settings": {"x": None}}, {"settings": {}}) == ["x"]


@pytest.mark.asyncio
async def test_connections_with_their_current_settings_redacted(db_ctx: ServiceContext):
    app = make_app(change_acme(db_ctx))
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("6")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, ConfigurationScreen)
        assert [(r.key, r.cells[3], r.cells[4]) for r in screen.table.rows] == [
            ("acme", "4", ("paused", "warn")), ("globex", "1", ("active", "ok"))]
        settings = panel(app, "#configuration-settings")
        assert "acme · version 4 · current settings" in settings
        assert "note: \"Bearer [redacted]\"" in settings
        await pilot.press("down")
        assert "globex · version 1" in panel(app, "#configuration-settings")
        assert "sync.interval_s: 300" in panel(app, "#configuration-settings")
        assert "CONFIGtoken" not in screen_text(app)


@pytest.mark.asyncio
async def test_history_says_when_who_and_why_with_each_versions_settings(db_ctx: ServiceContext):
    app = make_app(change_acme(db_ctx))
    async with app.run_test(size=(80, 24)) as pilot:
        await open_history(pilot)
        screen = app.screen
        assert isinstance(screen, ConnectionHistoryScreen)
        rows = [(r.key, r.cells[2], r.cells[3], r.cells[4]) for r in screen.table.rows]
        assert rows == [("4", "user:tester", "note, secrets", "api key added"),
                        ("3", "user:tester", "paused", "provider incident INC-42"),
                        ("2", "user:tester", "sync.interval_s", "sync every minute for the launch"),
                        ("1", "user:tester", "(created)", "created")]
        assert "paused · version 4" in panel(app, "#history-summary")
        assert "settings at version 4" in panel(app, "#history-settings")
        await pilot.press("down", "down")
        settings = panel(app, "#history-settings")
        assert "settings at version 2" in settings and "sync.interval_s: 60" in settings
        await pilot.press("down")
        assert "sync.interval_s: 300" in panel(app, "#history-settings")
        await pilot.press("home", "enter")
        await settle(pilot)
        assert isinstance(app.screen, DocumentScreen)
        text = screen_text(app)
        assert "acme version 4" in text and "Bearer [redacted]" in text and "CONFIGtoken" not in text


@pytest.mark.asyncio
async def test_choose_two_versions_and_see_the_diff(db_ctx: ServiceContext):
    app = make_app(change_acme(db_ctx))
    async with app.run_test(size=(80, 24), notifications=True) as pilot:
        await open_history(pilot)
        await pilot.press("space", "down", "space")  # versions 4 and 2
        assert "2 marked" in screen_text(app)
        await pilot.press("space")  # a third: refused
        assert any("Two versions are marked already" in n for n in notices(app))
        await pilot.press("d")
        await settle(pilot)
        assert isinstance(app.screen, VersionDiffScreen) and isinstance(app.screen, DiffScreen)
        view = app.screen.query_one(DiffView)
        assert [t[0] for t in view.titles] == ["v2 user:tester", "v4 user:tester"]  # the older on the left
        changed = {str(row.node.left_key or row.node.right_key) for row in view.rows
                   if row.node.change.name != "SAME"}
        assert {"paused", "settings", "note", "secrets"} <= changed and "sync" not in changed
        assert "CONFIGtoken" not in screen_text(app)

        await pilot.press("escape")
        await settle(pilot)
        history = app.screen
        assert isinstance(history, ConnectionHistoryScreen)
        history.table.clear_marks()
        history.table.move_to(1)  # version 3 against the one before it
        await pilot.press("d")
        await settle(pilot)
        view = app.screen.query_one(DiffView)
        assert [t[0] for t in view.titles] == ["v2 user:tester", "v3 user:tester"]
        await pilot.press("escape")
        await settle(pilot)
        assert app.screen is history
        history.table.move_to(3)  # version 1: nothing before it
        await pilot.press("d")
        await settle(pilot)
        assert isinstance(app.screen, ConnectionHistoryScreen)
        assert any("Mark two versions" in n for n in notices(app))


@pytest.mark.asyncio
async def test_reached_by_key_and_palette(store: ServiceContext):
    app = make_app(store)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        assert "Go to Configuration" in await palette_search(pilot, "configuration")
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, ConfigurationScreen)
        await pilot.press("question_mark")
        await settle(pilot)
        assert "Help · Configuration" in screen_text(app)


async def _configuration(pilot: Pilot[Any]) -> None:
    await settle(pilot)
    await pilot.press("6")


async def _history_marked(pilot: Pilot[Any]) -> None:
    await open_history(pilot)
    await pilot.press("space", "down", "space")


async def _versions_diff(pilot: Pilot[Any]) -> None:
    await _history_marked(pilot)
    await pilot.press("d")


SCREENS = {"configuration": _configuration, "history": _history_marked, "diff": _versions_diff}


@pytest.mark.parametrize("size", [(80, 24), (100, 30)], ids=["80x24", "100x30"])
@pytest.mark.parametrize("screen", list(SCREENS))
def test_snapshot(screen: str, size: tuple[int, int], store: ServiceContext, snap_compare: Any) -> None:
    app = make_app(change_acme(store))

    async def run_before(pilot: Pilot[Any]) -> None:
        await SCREENS[screen](pilot)
        await settle(pilot)

    assert snap_compare(app, terminal_size=size, run_before=run_before)
