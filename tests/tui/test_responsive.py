"""The UI thread never waits on the database: while a store call is held (blocked on an event
the test releases), keys are handled and screens change; once released, the data shows.

No sleeps and no clocks: the store call cannot return before the test lets it, so the
assertions hold however busy the machine is."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.tui.conftest import make_app, settle
from workbench.services import health, views
from workbench.services.context import ServiceContext
from workbench.tui.screens.help import HelpScreen
from workbench.tui.screens.providers import ProvidersScreen
from workbench.tui.screens.records import RecordsScreen
from workbench.tui.widgets import FilterInput, VirtualTable

pytestmark = pytest.mark.asyncio
# Only a safety net so a broken test fails instead of hanging; never reached when it passes.
GIVE_UP_SECONDS = 30.0


@dataclass
class Gate:
    """A store call held until `release()`: `entered` is set once a call is waiting at the
    gate, `returned` once a call has come back with the store's answer."""

    entered: threading.Event = field(default_factory=threading.Event)
    opened: threading.Event = field(default_factory=threading.Event)
    returned: threading.Event = field(default_factory=threading.Event)

    def release(self) -> None:
        self.opened.set()

    async def wait_entered(self) -> None:
        assert await asyncio.to_thread(self.entered.wait, GIVE_UP_SECONDS), "the store call never started"


@contextmanager
def held(monkeypatch: pytest.MonkeyPatch, module: Any, name: str) -> Iterator[Gate]:
    """Hold every call of `module.name` until the gate is released (at the latest on exit, so
    no worker thread outlives the test)."""
    original = getattr(module, name)
    gate = Gate()

    def held_call(*args: Any, **kwargs: Any) -> Any:
        gate.entered.set()
        if not gate.opened.wait(GIVE_UP_SECONDS):
            raise TimeoutError("the test never released the store call")
        try:
            return original(*args, **kwargs)
        finally:
            gate.returned.set()

    monkeypatch.setattr(module, name, held_call)
    try:
        yield gate
    finally:
        gate.release()


async def test_keys_work_while_the_providers_query_is_held(store: ServiceContext,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    with held(monkeypatch, health, "connection_health") as gate:
        app = make_app(store)
        async with app.run_test() as pilot:
            await gate.wait_entered()
            assert isinstance(app.screen, ProvidersScreen) and app.screen.loading_data
            await pilot.press("question_mark")
            assert isinstance(app.screen, HelpScreen)
            await pilot.press("escape", "2")
            await pilot.pause()
            assert isinstance(app.screen, RecordsScreen)
            # All of that happened while the Providers query was held.
            assert not gate.returned.is_set()
            gate.release()
            await pilot.press("1")
            await settle(pilot)
            assert gate.returned.is_set()
            providers = app.screen
            assert isinstance(providers, ProvidersScreen) and not providers.loading_data
            assert [row.key for row in providers.query_one(VirtualTable).rows] == ["acme", "globex"]


async def test_typing_in_the_filter_while_the_records_query_is_held(store: ServiceContext,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    app = make_app(store)
    async with app.run_test() as pilot:
        await settle(pilot)
        with held(monkeypatch, views, "records_page") as gate:
            await pilot.press("2")
            await gate.wait_entered()
            await pilot.press("slash", *"pi_3Acme")
            screen = app.screen
            assert isinstance(screen, RecordsScreen)
            assert screen.query_one(FilterInput).value == "pi_3Acme"
            assert screen.loading_data and not gate.returned.is_set()
            gate.release()
            await settle(pilot)
        # One query in flight at a time; the last text typed is what the table shows.
        assert "external pi_3Acme" in str(screen.query_one(".status-info").render())
        rows = screen.query_one(VirtualTable).rows
        assert rows and all(any(ext.startswith("pi_3Acme") for ext in str(row.cells[1]).split(", ")) for row in rows)
