"""Keyboard navigation, help, the palette, paging, themes and live refresh."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from store.database import open_store
from tests.support import make_context
from tests.tui.conftest import make_app, settle
from tests.tui.test_snapshots import deliveries_of
from workbench.services import audit, connections, triage, views
from workbench.services.context import ServiceContext
from workbench.tui.commands import WorkbenchCommands
from workbench.tui.screens.audit import AuditScreen
from workbench.tui.screens.dialogs import PromptScreen
from workbench.tui.screens.diff import DiffScreen
from workbench.tui.screens.help import HelpScreen
from workbench.tui.screens.payload import PayloadScreen
from workbench.tui.screens.providers import ProvidersScreen
from workbench.tui.screens.records import RecordsScreen
from workbench.tui.screens.timeline import TimelineScreen
from workbench.tui.settings import load_settings
from workbench.tui.widgets import DiffView, FilterInput, TextLines, VirtualTable

pytestmark = pytest.mark.asyncio


def keys_of(screen: Any) -> list[str]:
    return [row.key for row in screen.query_one(VirtualTable).rows]


async def test_escape_goes_back_and_home(store: ServiceContext) -> None:
    app = make_app(store)
    async with app.run_test() as pilot:
        await settle(pilot)
        await pilot.press("2")
        await settle(pilot)
        records = app.screen
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, TimelineScreen)
        await pilot.press("escape")
        assert app.screen is records
        await pilot.press("escape")
        assert isinstance(app.screen, ProvidersScreen)


async def test_slash_focuses_the_filter_and_escape_returns_to_the_list(store: ServiceContext) -> None:
    app = make_app(store)
    async with app.run_test() as pilot:
        await settle(pilot)
        await pilot.press("2")
        await settle(pilot)
        await pilot.press("slash", *"globex")
        await settle(pilot)
        screen = app.screen
        assert isinstance(app.focused, FilterInput)
        assert [row.data.connection for row in screen.query_one(VirtualTable).rows] == [  # type: ignore[attr-defined]  # row data is Any
            "globex", "globex"]
        await pilot.press("escape")
        assert isinstance(app.focused, VirtualTable)
        assert isinstance(app.screen, RecordsScreen)  # escape left the filter, not the screen


async def test_records_pages_forward_and_back(store: ServiceContext, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(RecordsScreen, "page_size", 3)
    app = make_app(store)
    async with app.run_test() as pilot:
        await settle(pilot)
        await pilot.press("2")
        await settle(pilot)
        screen = app.screen
        first = keys_of(screen)
        assert len(first) == 3
        await pilot.press("right_square_bracket")
        await settle(pilot)
        second = keys_of(screen)
        assert len(second) == 3 and second[0] > first[-1]
        await pilot.press("end", "down")  # past the last row: the next page
        await settle(pilot)
        third = keys_of(screen)
        assert len(third) == 1 and third[0] > second[-1]
        await pilot.press("left_square_bracket")
        await settle(pilot)
        assert keys_of(screen) == second
        await pilot.press("home", "up")
        await settle(pilot)
        assert keys_of(screen) == first


async def test_help_lists_the_screen_keys(store: ServiceContext) -> None:
    app = make_app(store)
    async with app.run_test() as pilot:
        await settle(pilot)
        app.open_group(triage.groups(store)[0])
        await settle(pilot)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        text = " ".join(str(widget.render()) for widget in app.screen.query(".help-keys"))
        for description in ("Retry", "Replay", "Resolve", "Ignore", "Assign", "Mark", "ctrl+p"):
            assert description in text
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)


async def test_palette_reaches_screens_themes_and_actions(store: ServiceContext) -> None:
    app = make_app(store)
    async with app.run_test() as pilot:
        await settle(pilot)
        provider = WorkbenchCommands(app.screen)
        names = [name for name, _, _ in provider._commands()]
        for expected in ("Go to Providers", "Go to Records", "Go to Error queue", "Go to Audit",
                         "Theme: workbench-dark", "Theme: workbench-light", "Theme: workbench-high-contrast",
                         "Help for this screen", "Providers: Pause/resume", "Providers: Failures"):
            assert expected in names
        await pilot.press("ctrl+p", *"go to audit")
        await pilot.pause(0.5)
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, AuditScreen)
        await pilot.press("ctrl+p", *"high-contrast")
        await pilot.pause(0.5)
        await pilot.press("enter")
        await pilot.pause()
        assert app.theme == "workbench-high-contrast"


async def test_theme_is_remembered_across_runs(store: ServiceContext, config_dir: Path) -> None:
    first = make_app(store, theme=None, remember_theme=True)
    async with first.run_test() as pilot:
        await settle(pilot)
        assert first.theme == "workbench-dark"
        first.set_theme("workbench-light")
        await pilot.pause()
    assert load_settings() == {"theme": "workbench-light"}
    assert json.loads((config_dir / "tui.json").read_text())["theme"] == "workbench-light"
    second = make_app(store, theme=None, remember_theme=True)
    async with second.run_test() as pilot:
        await settle(pilot)
        assert second.theme == "workbench-light"


async def test_a_bad_settings_file_falls_back_to_the_default_theme(store: ServiceContext, config_dir: Path) -> None:
    config_dir.mkdir(parents=True)
    (config_dir / "tui.json").write_text("{not json")
    app = make_app(store, theme=None)
    async with app.run_test() as pilot:
        await settle(pilot)
        assert app.theme == "workbench-dark"
    (config_dir / "tui.json").write_text('{"theme": "no-such-theme"}')
    app = make_app(store, theme=None)
    async with app.run_test() as pilot:
        await settle(pilot)
        assert app.theme == "workbench-dark"


async def test_live_refresh_follows_other_writers(store: ServiceContext) -> None:
    app = make_app(store, refresh_interval=0.2)
    # Another process: its own engine on the same file.
    other_engine = open_store(str(store.engine.url))
    other = make_context(other_engine)
    try:
        async with app.run_test() as pilot:
            await settle(pilot)
            assert keys_of(app.screen) == ["acme", "globex"]
            await asyncio.to_thread(connections.add_connection, other, "initech", "stripe", "live")
            for _ in range(50):
                await pilot.pause(0.1)
                if "initech" in keys_of(app.screen):
                    break
            assert keys_of(app.screen) == ["acme", "globex", "initech"]
            assert "refreshed 13:00:00" in str(app.screen.query_one(".status-refreshed").render())
    finally:
        other_engine.dispose()


async def test_pause_a_connection_with_a_reason(store: ServiceContext) -> None:
    app = make_app(store)
    async with app.run_test() as pilot:
        await settle(pilot)
        await pilot.press("p")
        assert isinstance(app.screen, PromptScreen)
        await pilot.press(*"incident", "enter")
        await settle(pilot)
        assert connections.get_connection(store, "acme").paused
        assert audit.search(store, "connection.pause")[0]["reason"] == "incident"
        assert app.screen.query_one(VirtualTable).rows[0].cells[6] == ("paused", "warn")


async def test_timeline_opens_a_redacted_payload_with_its_mapping(store: ServiceContext) -> None:
    app = make_app(store)
    async with app.run_test() as pilot:
        await settle(pilot)
        app.open_timeline("pi_3AcmeAAA")
        await settle(pilot)
        screen = app.screen
        table = screen.query_one(VirtualTable)
        table.move_to(0)
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, PayloadScreen)
        lines = app.screen.query_one(TextLines).lines
        assert '      "client_secret": "[redacted]",' in lines
        assert not any("_secret_abcdefgh" in line for line in lines)
        summary = str(app.screen.query_one(".document-summary").render())
        assert "verdict applied" in summary and "(new) -> submitted (v1)" in summary


async def test_mark_two_deliveries_and_diff_them(store: ServiceContext) -> None:
    record_id, deliveries = deliveries_of(store, "pi_3AcmeCCC")
    app = make_app(store)
    async with app.run_test() as pilot:
        await settle(pilot)
        app.open_timeline(record_id)
        await settle(pilot)
        table = app.screen.query_one(VirtualTable)
        rows = [row.key for row in table.rows]
        table.move_to(rows.index(deliveries[1]))
        await pilot.press("space")
        table.move_to(rows.index(deliveries[2]))
        await pilot.press("space", "d")
        await settle(pilot)
        assert isinstance(app.screen, DiffScreen)
        view = app.screen.query_one(DiffView)
        assert [title for title, _ in view.titles] == ["payment_intent.processing [applied]",
                                                      "payment_intent.updated [failed]"]
        assert [ref for _, ref in view.titles] == [deliveries[1], deliveries[2]]
        await pilot.press("n")
        assert view.rows[view.cursor].node.key == "id"  # the first change: the event IDs
        await pilot.press("n", "n", "n")
        assert view.rows[view.cursor].node.key == "status"
        await pilot.press("N")
        assert view.rows[view.cursor].node.key == "created"
        assert "5 change(s)" in str(app.screen.query_one(".status-info").render())


async def test_diff_of_a_delivery_against_the_record_state(store: ServiceContext) -> None:
    record_id, deliveries = deliveries_of(store, "pi_3AcmeAAA")
    pair = views.delivery_against_state(store, deliveries[0], record_id)
    assert pair.left.value["status"] == "submitted" and pair.right.value["status"] == "completed"
    app = make_app(store)
    async with app.run_test() as pilot:
        await settle(pilot)
        app.open_timeline(record_id)
        await settle(pilot)
        app.screen.query_one(VirtualTable).move_to(0)
        await pilot.press("d")
        await settle(pilot)
        assert isinstance(app.screen, DiffScreen)
        assert app.screen.query_one(DiffView).titles[1] == ("record now (v3)", record_id)



async def test_providers_open_the_connection_records_and_failures(store: ServiceContext) -> None:
    app = make_app(store)
    async with app.run_test() as pilot:
        await settle(pilot)
        await pilot.press("down", "enter")  # globex
        await settle(pilot)
        assert isinstance(app.screen, RecordsScreen)
        assert app.screen.query_one(FilterInput).value == "conn:globex"
        assert {row.data.connection for row in app.screen.query_one(VirtualTable).rows} == {"globex"}  # type: ignore[attr-defined]  # row data is Any
        await pilot.press("1")
        await settle(pilot)
        await pilot.press("f")
        await settle(pilot)
        assert app.screen.query_one(FilterInput).value == "globex"
        assert [row.cells[2] for row in app.screen.query_one(VirtualTable).rows] == ["globex"]
