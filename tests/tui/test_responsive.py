"""The UI thread never waits on the database: with a store that takes two seconds to answer,
keys are handled and screens change before the slow call returns."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from tests.tui.conftest import make_app, settle
from workbench.services import health, views
from workbench.services.context import ServiceContext
from workbench.tui.screens.help import HelpScreen
from workbench.tui.screens.providers import ProvidersScreen
from workbench.tui.screens.records import RecordsScreen
from workbench.tui.widgets import FilterInput

pytestmark = pytest.mark.asyncio
SLOW_SECONDS = 3.0


def slow(monkeypatch: pytest.MonkeyPatch, module: Any, name: str) -> threading.Event:
    """Make `module.name` take SLOW_SECONDS; the event is set once a call has returned."""
    original = getattr(module, name)
    returned = threading.Event()

    def slow_call(*args: Any, **kwargs: Any) -> Any:
        time.sleep(SLOW_SECONDS)
        try:
            return original(*args, **kwargs)
        finally:
            returned.set()

    monkeypatch.setattr(module, name, slow_call)
    return returned


async def test_keys_work_while_the_providers_query_is_slow(store: ServiceContext,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    returned = slow(monkeypatch, health, "connection_health")
    app = make_app(store)
    started = time.monotonic()
    async with app.run_test() as pilot:
        await pilot.pause()
        assert isinstance(app.screen, ProvidersScreen) and app.screen.loading_data
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape", "2")
        await pilot.pause()
        assert isinstance(app.screen, RecordsScreen)
        # All of that happened while the Providers query was still running.
        assert not returned.is_set()
        assert time.monotonic() - started < SLOW_SECONDS
        await settle(pilot)
        assert returned.is_set()


async def test_typing_in_the_filter_while_the_records_query_is_slow(store: ServiceContext,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    app = make_app(store)
    async with app.run_test() as pilot:
        await settle(pilot)
        returned = slow(monkeypatch, views, "records_page")
        started = time.monotonic()
        await pilot.press("2", "slash", *"pi_3Acme")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, RecordsScreen)
        assert screen.query_one(FilterInput).value == "pi_3Acme"
        assert screen.loading_data and not returned.is_set()
        assert time.monotonic() - started < SLOW_SECONDS
        await settle(pilot)
        # One query in flight at a time; the last text typed is what the table shows.
        assert "external pi_3Acme" in str(screen.query_one(".status-info").render())
