"""A store opened read-only (`ServiceContext.read_only`): every screen says so in a banner,
the writes (triage actions, pause/resume) are gone from the footer and the palette, and a
write's key is refused with one line. Reading works as before.

The store underneath stays writable here on purpose: nothing changing proves the TUI itself
refused, not the database."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from tests.tui.conftest import make_app, notices, palette_search, settle
from workbench.services import audit, triage
from workbench.services.context import ServiceContext
from workbench.services.health import ConnectionHealth
from workbench.tui.app import WorkbenchApp
from workbench.tui.screens.base import READ_ONLY_BANNER
from workbench.tui.screens.failures import FailuresScreen
from workbench.tui.screens.help import screen_keys
from workbench.tui.screens.providers import ProvidersScreen

pytestmark = pytest.mark.asyncio


def read_only(ctx: ServiceContext) -> ServiceContext:
    return dataclasses.replace(ctx, read_only=True)


def footer_actions(app: WorkbenchApp) -> set[str]:
    return {active.binding.action.split("(")[0] for active in app.screen.active_bindings.values()
            if active.binding.show}


async def palette_commands(pilot: Any) -> list[str]:
    shown = await palette_search(pilot)
    await pilot.press("escape")
    return shown


async def test_failures_screen_reads_but_does_not_write(db_ctx: ServiceContext) -> None:
    group = next(g for g in triage.groups(db_ctx) if g.category == "contract_mismatch")
    app = make_app(read_only(db_ctx))
    async with app.run_test(notifications=True) as pilot:
        await settle(pilot)
        app.open_group(group)
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, FailuresScreen) and screen.table.rows
        assert str(screen.query_one(".read-only-banner").render()) == READ_ONLY_BANNER
        assert "act" not in footer_actions(app) and "mark" in footer_actions(app)
        palette = await palette_commands(pilot)
        assert "Failures: Open" in palette
        assert not [c for c in palette if c.split(": ")[-1] in {"Retry", "Replay", "Resolve", "Ignore", "Assign"}]
        described = {what for _, what in screen_keys(screen)}
        assert "Open" in described and not described & {"Retry", "Replay", "Resolve", "Ignore", "Assign"}
        before = [triage.failure_detail(db_ctx, row.key) for row in screen.table.rows]
        for key in ("r", "p", "d", "i", "a"):
            await pilot.press(key)
            await settle(pilot)
            assert screen.is_current  # no prompt, no confirmation
        refusals = [text for text in notices(app) if "read-only" in text]
        assert refusals == [f"{verb} is off: the store is read-only (this process cannot write to it)"
                            for verb in ("Retry", "Replay", "Resolve", "Ignore", "Assign")]
        # Reached any other way (the palette remembered from before, a script), still refused.
        screen.action_act("resolve")
        await pilot.pause()
        assert notices(app)[-1].startswith("Resolve is off")
        assert [triage.failure_detail(db_ctx, row.key) for row in screen.table.rows] == before
        assert not [e for e in audit.search(db_ctx, "failure.") if e["action"].startswith("failure.")]


async def test_pause_is_hidden_and_refused(db_ctx: ServiceContext) -> None:
    app = make_app(read_only(db_ctx))
    async with app.run_test(notifications=True) as pilot:
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, ProvidersScreen) and screen.table.rows
        assert "pause" not in footer_actions(app) and "records" in footer_actions(app)
        assert "Providers: Pause/resume" not in await palette_commands(pilot)
        await pilot.press("p")
        await settle(pilot)
        assert screen.is_current
        assert notices(app) == ["Pause/resume is off: the store is read-only (this process cannot write to it)"]
        await pilot.press("ctrl+r")
        await settle(pilot)
        assert all(isinstance(row.data, ConnectionHealth) and not row.data.paused for row in screen.table.rows)
        # Reading goes on: Enter opens the connection's records, with the banner there too.
        await pilot.press("enter")
        await settle(pilot)
        assert app.screen.query(".read-only-banner")


async def test_a_writable_store_has_no_banner_and_keeps_its_writes(db_ctx: ServiceContext) -> None:
    app = make_app(db_ctx)
    async with app.run_test() as pilot:
        await settle(pilot)
        assert not app.screen.query(".read-only-banner")
        assert "pause" in footer_actions(app)
