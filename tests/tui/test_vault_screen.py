"""The Vault screen (key 5): names, versions and ages of one environment's secrets, never a
value; unlocked once with the passphrase (in a worker), locked again with `l`."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import Static

from tests.tui.conftest import make_app, notices, palette_search, settle, type_text
from tests.tui.fixture_store import DISPLAY_NOW
from workbench.services.context import ServiceContext
from workbench.tui.screens.vault import VaultScreen
from workbench.vault import Contents, KdfParams, create, vault_path

PASS = "tui passphrase"
VALUE = "sk_test_TUIVAULTvalue"
# The file records its parameters; cheap ones keep the pilot quick (the CLI uses the tuned ones).
CHEAP = KdfParams(memory_kib=1024, iterations=1, lanes=1)


@pytest.fixture
def sandbox_vault() -> Path:
    path = vault_path("sandbox", Path(os.environ["WORKBENCH_VAULT_DIR"]))
    contents = (Contents("sandbox")
                .with_new("stripe-api-key", VALUE, DISPLAY_NOW - timedelta(days=40))
                .with_new("stripe-webhook-secret", "whsec_TUIVAULTfirst", DISPLAY_NOW - timedelta(days=12))
                .with_rotated("stripe-webhook-secret", "whsec_TUIVAULTsecond", DISPLAY_NOW - timedelta(hours=5)))
    create(path, "sandbox", PASS, contents, params=CHEAP)
    return path


def state_line(app: Any) -> str:
    return str(app.screen.query_one("#vault-state", Static).render())


async def unlock(pilot: Pilot[Any], passphrase: str) -> None:
    await pilot.press("u")
    await type_text(pilot, passphrase)
    await pilot.press("enter")
    await settle(pilot)


@pytest.mark.asyncio
async def test_unlock_shows_names_versions_and_ages_never_a_value(store: ServiceContext, sandbox_vault: Path):
    app = make_app(store)
    async with app.run_test(size=(80, 24), notifications=True) as pilot:
        await settle(pilot)
        await pilot.press("5")
        await settle(pilot)
        assert isinstance(app.screen, VaultScreen)
        assert app.screen.table.row_count == 0
        assert state_line(app).startswith("sandbox vault: locked")
        await unlock(pilot, "wrong passphrase")
        assert any("wrong passphrase" in n for n in notices(app))
        assert app.screen.table.row_count == 0
        await unlock(pilot, PASS)
        shot = str(app.export_screenshot())
        assert state_line(app).startswith("sandbox vault: unlocked")
        assert "stripe-api-key" in shot and "stripe-webhook-secret" in shot and "40d" in shot and "5h" in shot
        assert "TUIVAULT" not in shot and PASS not in shot
        await pilot.press("l")
        await settle(pilot)
        assert app.screen.table.row_count == 0
        await pilot.press("e")
        await settle(pilot)
        assert state_line(app).startswith("no live vault yet")


@pytest.mark.asyncio
async def test_the_vault_stays_unlocked_for_the_app(store: ServiceContext, sandbox_vault: Path):
    app = make_app(store)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("5")
        await settle(pilot)
        await unlock(pilot, PASS)
        await pilot.press("escape")
        await settle(pilot)
        assert not isinstance(app.screen, VaultScreen)
        assert "Vault: secrets, unlock, lock" in await palette_search(pilot, "vault")
        await pilot.press("escape", "5")
        await settle(pilot)
        assert isinstance(app.screen, VaultScreen) and app.screen.table.row_count == 2


@pytest.mark.parametrize("unlocked", [False, True], ids=["locked", "unlocked"])
def test_snapshot(unlocked: bool, store: ServiceContext, sandbox_vault: Path, snap_compare: Any) -> None:
    app = make_app(store)

    async def run_before(pilot: Pilot[Any]) -> None:
        await settle(pilot)
        await pilot.press("5")
        await settle(pilot)
        if unlocked:
            await unlock(pilot, PASS)

    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)
