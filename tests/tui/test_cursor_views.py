"""The keys and clicks the table, the diff view and the text view share (widgets/cursor_view):
each view moves the same way, and each does its own thing at the edges and on a second click."""

from __future__ import annotations

import pytest

from tests.tui.conftest import make_app, settle
from tests.tui.test_snapshots import deliveries_of
from workbench.services import views
from workbench.services.context import ServiceContext
from workbench.tui.screens.payload import PayloadScreen
from workbench.tui.screens.records import RecordsScreen
from workbench.tui.screens.timeline import TimelineScreen
from workbench.tui.widgets import DiffView, TextLines, VirtualTable

pytestmark = pytest.mark.asyncio


async def test_the_table_moves_by_row_page_and_edge_and_a_second_click_opens(store: ServiceContext) -> None:
    app = make_app(store)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("2")
        await settle(pilot)
        table = app.screen.query_one(VirtualTable)
        last = len(table.rows) - 1
        assert table.cursor == 0 and last >= 3
        await pilot.press("down", "j")
        assert table.cursor == 2
        await pilot.press("k")
        assert table.cursor == 1
        await pilot.press("end")
        assert table.cursor == last
        await pilot.press("pageup")
        assert table.cursor == max(0, last - (table.scrollable_content_region.height - 2))
        await pilot.press("home", "up")  # past the first row: the cursor stays (Records pages)
        assert table.cursor == 0
        await pilot.click(table, offset=(3, 3))  # the header is line 0: the third row
        assert table.cursor == 2 and isinstance(app.screen, RecordsScreen)
        selected = table.rows[2].key
        await pilot.click(table, offset=(3, 3))
        await settle(pilot)
        assert isinstance(app.screen, TimelineScreen) and app.screen.record_ref == selected


async def test_the_diff_moves_its_cursor_and_a_second_click_folds(store: ServiceContext) -> None:
    _, deliveries = deliveries_of(store, "pi_3AcmeCCC")
    app = make_app(store)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        app.open_diff(lambda c: views.deliveries_pair(c, deliveries[1], deliveries[2]))
        await settle(pilot)
        view = app.screen.query_one(DiffView)
        await pilot.press("down", "down", "up")
        assert view.cursor == 1
        await pilot.press("end")
        assert view.cursor == len(view.rows) - 1
        await pilot.press("home")
        assert view.cursor == 0
        shown = len(view.rows)
        await pilot.click(view, offset=(3, 1))  # the root row, already under the cursor: folds
        assert view.cursor == 0 and len(view.rows) == 1 < shown


async def test_the_text_view_scrolls_with_the_same_keys(store: ServiceContext) -> None:
    record_id, deliveries = deliveries_of(store, "pi_3AcmeCCC")
    app = make_app(store)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        app.open_payload(deliveries[1], record_id)
        await settle(pilot)
        assert isinstance(app.screen, PayloadScreen)
        text = app.screen.query_one(TextLines)
        assert text.max_scroll_y > 0
        await pilot.press("end")
        await pilot.wait_for_scheduled_animations()
        assert text.scroll_y == text.max_scroll_y
        await pilot.press("home", "j", "down")
        await pilot.wait_for_scheduled_animations()
        assert text.scroll_y == 2
        await pilot.press("pagedown")
        await pilot.wait_for_scheduled_animations()
        assert text.scroll_y > 2
