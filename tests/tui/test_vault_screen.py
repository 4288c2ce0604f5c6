"""The Vault screen (key 5): names, versions and ages of one environment's secrets, never a
value; unlocked once with the passphrase (in a worker), locked again with `l`; secrets added,
rotated and removed, the vault rekeyed, each in a worker, audited, with one-line errors. A
value typed here shows nowhere: not on screen, in a notification, in the store or a snapshot."""

from __future__ import annotations

import fcntl
import html
import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from textual.binding import Binding
from textual.pilot import Pilot
from textual.widgets import Label, Static

from tests.tui.conftest import make_app, notices, palette_search, screen_text, settle, type_text
from tests.tui.fixture_store import DISPLAY_NOW
from workbench.services import access, audit
from workbench.services.context import ServiceContext
from workbench.tui.app import WorkbenchApp
from workbench.tui.screens.dialogs import ConfirmScreen, FormScreen
from workbench.tui.screens.vault import VaultScreen
from workbench.vault import Contents, KdfParams, create, unlock as open_vault, vault_path

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
        shot = screen_text(app)
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


# -- changes -----------------------------------------------------------------------------------------

# Shaped like no provider key, so that redaction could not hide a leak from these tests.
CANARY = "CANARYtui4f9e2b7c1d"
CANARY2 = "CANARYtuiRot8a3c5e"
NEW_PASS = "the next passphrase"


def secret_rows(app: WorkbenchApp) -> dict[str, str]:
    screen = app.screen
    assert isinstance(screen, VaultScreen)
    return {row.key: str(row.cells[1]) for row in screen.table.rows}


async def open_unlocked(pilot: Pilot[Any]) -> None:
    await settle(pilot)
    await pilot.press("5")
    await settle(pilot)
    await unlock(pilot, PASS)


async def fill(pilot: Pilot[Any], *fields: str) -> None:
    """Type each field of the open form and Enter after each (the last Enter submits)."""
    assert isinstance(pilot.app.screen, FormScreen)
    for text in fields:
        await type_text(pilot, text)
        await pilot.press("enter")
    await settle(pilot)


def everything_shown(app: WorkbenchApp, shots: list[str]) -> str:
    return "\n".join([*shots, *notices(app)])


@pytest.mark.asyncio
async def test_add_then_rotate_a_secret_never_showing_its_value(store: ServiceContext, sandbox_vault: Path):
    app = make_app(store)
    shots: list[str] = []
    async with app.run_test(size=(80, 24), notifications=True) as pilot:
        await open_unlocked(pilot)
        await pilot.press("a")
        await type_text(pilot, "new-key")
        await pilot.press("enter")
        await type_text(pilot, CANARY)
        shots.append(screen_text(app))  # the value typed, not yet stored: dots only
        shots.append(str(app.export_screenshot()))
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, VaultScreen)
        assert secret_rows(app)["new-key"] == "1"
        assert "stored new-key (version 1) in the sandbox vault" in notices(app)
        shots.append(screen_text(app))
        shots.append(str(app.export_screenshot()))

        app.screen.table.move_to(list(secret_rows(app)).index("new-key"))
        await pilot.press("r")
        assert "Rotate new-key" in screen_text(app)
        await fill(pilot, CANARY2)
        assert secret_rows(app)["new-key"] == "2"
        assert "rotated new-key to version 2 in the sandbox vault" in notices(app)
        shots.append(screen_text(app))

    assert "CANARY" not in everything_shown(app, shots) and "•" * len(CANARY) in shots[0]
    versions = open_vault(sandbox_vault, "sandbox", PASS).read().secrets["new-key"]
    assert [v.value for v in versions] == [CANARY, CANARY2]
    entries = [(e["action"], e["target_id"], e["after"]) for e in reversed(audit.search(store, "vault."))]
    assert entries == [("vault.set", "sandbox/new-key", {"environment": "sandbox", "name": "new-key", "version": 1}),
                       ("vault.rotate", "sandbox/new-key",
                        {"environment": "sandbox", "name": "new-key", "version": 2})]
    assert audit.verify(store).ok


@pytest.mark.asyncio
async def test_a_taken_name_and_an_empty_value_are_one_line_and_change_nothing(store: ServiceContext,
                                                                               sandbox_vault: Path):
    app = make_app(store)
    before = sandbox_vault.read_bytes()
    async with app.run_test(size=(80, 24), notifications=True) as pilot:
        await open_unlocked(pilot)
        await pilot.press("a")
        await type_text(pilot, "stripe-api-key")
        await pilot.press("enter", "enter")  # no value yet: the form says so and stays
        assert isinstance(app.screen, FormScreen)
        assert str(app.screen.query_one(".dialog-hint", Label).render()).startswith(
            "Value (hidden; never shown again here) is required")
        await fill(pilot, CANARY)
        [error] = [n for n in notices(app) if n.startswith("Could not add")]
        assert "already has 'stripe-api-key'" in error and "\n" not in error
        assert secret_rows(app)["stripe-api-key"] == "1"
    assert sandbox_vault.read_bytes() == before
    assert audit.search(store, "vault.") == []


@pytest.mark.asyncio
async def test_remove_asks_first(store: ServiceContext, sandbox_vault: Path):
    app = make_app(store)
    async with app.run_test(size=(80, 24), notifications=True) as pilot:
        await open_unlocked(pilot)
        screen = app.screen
        assert isinstance(screen, VaultScreen)
        screen.table.move_to(list(secret_rows(app)).index("stripe-webhook-secret"))
        await pilot.press("x")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")
        await settle(pilot)
        assert "stripe-webhook-secret" in secret_rows(app)
        await pilot.press("x", "y")
        await settle(pilot)
        assert list(secret_rows(app)) == ["stripe-api-key"]
        assert "removed stripe-webhook-secret (2 versions) from the sandbox vault" in notices(app)
    [entry] = audit.search(store, "vault.remove")
    assert entry["before"] == {"environment": "sandbox", "name": "stripe-webhook-secret", "version": 2}


@pytest.mark.asyncio
async def test_rekey_then_the_old_passphrase_fails_and_stays_locked(store: ServiceContext, sandbox_vault: Path):
    app = make_app(store)
    async with app.run_test(size=(80, 24), notifications=True) as pilot:
        await open_unlocked(pilot)
        await pilot.press("K")
        await fill(pilot, "not the passphrase", NEW_PASS, NEW_PASS)
        assert any(n.startswith("Could not rekey: wrong passphrase") for n in notices(app)), notices(app)
        await pilot.press("K")
        await type_text(pilot, PASS)
        await pilot.press("enter")
        await type_text(pilot, NEW_PASS)
        await pilot.press("enter")
        await type_text(pilot, "a typo in the second")
        await pilot.press("enter")
        assert isinstance(app.screen, FormScreen)  # the two new ones differ: asked again
        assert str(app.screen.query_one(".dialog-hint", Label).render()).startswith("The two new passphrases differ")
        await fill(pilot, NEW_PASS)
        assert "the sandbox vault has a new passphrase; the old one no longer opens it" in notices(app)
        assert len(secret_rows(app)) == 2  # still unlocked, with the new key
        await pilot.press("l")
        await settle(pilot)
        await unlock(pilot, PASS)
        assert any(n.startswith("Could not unlock: wrong passphrase") for n in notices(app))
        assert state_line(app).startswith("sandbox vault: locked") and secret_rows(app) == {}
        await unlock(pilot, NEW_PASS)
        assert len(secret_rows(app)) == 2
        shown = everything_shown(app, [screen_text(app)])
    assert PASS not in shown and NEW_PASS not in shown
    assert [e["action"] for e in audit.search(store, "vault.")] == ["vault.rekey"]


@pytest.mark.asyncio
async def test_changes_wait_for_unlock_and_a_vault_can_be_created(store: ServiceContext):
    app = make_app(store)
    async with app.run_test(size=(80, 24), notifications=True) as pilot:
        await settle(pilot)
        await pilot.press("5")
        await settle(pilot)
        assert state_line(app).startswith("no sandbox vault yet")
        await pilot.press("a", "u")  # neither applies to a vault that does not exist
        await settle(pilot)
        assert isinstance(app.screen, VaultScreen)
        await pilot.press("i")
        await fill(pilot, NEW_PASS, NEW_PASS)
        assert "created the sandbox vault (unlocked)" in notices(app)
        assert state_line(app).startswith("sandbox vault: unlocked")
        await pilot.press("a")
        await fill(pilot, "first", CANARY)
        assert secret_rows(app) == {"first": "1"}
    assert [e["action"] for e in reversed(audit.search(store, "vault."))] == ["vault.init", "vault.set"]


@pytest.mark.asyncio
async def test_a_read_only_store_offers_no_change(store: ServiceContext, sandbox_vault: Path):
    import dataclasses

    app = make_app(dataclasses.replace(store, read_only=True))
    before = sandbox_vault.read_bytes()
    async with app.run_test(size=(80, 24), notifications=True) as pilot:
        await open_unlocked(pilot)
        shown = {active.binding.action for active in app.screen.active_bindings.values() if active.binding.show}
        assert "lock" in shown and not shown & {"add", "rotate", "remove", "rekey"}
        await pilot.press("a")
        await settle(pilot)
        assert isinstance(app.screen, VaultScreen)
        assert any("Add is off: the store is read-only" in n for n in notices(app))
    assert sandbox_vault.read_bytes() == before


@pytest.mark.asyncio
async def test_a_busy_vault_is_one_line_and_nothing_is_written(store: ServiceContext, sandbox_vault: Path):
    """Another process holds the vault's write lock: the add waits its few seconds, then says
    the vault is busy; the file and the trail are as they were."""
    before = sandbox_vault.read_bytes()
    app = make_app(store)
    async with app.run_test(size=(80, 24), notifications=True) as pilot:
        await open_unlocked(pilot)
        fd = os.open(f"{sandbox_vault}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            await pilot.press("a")
            await fill(pilot, "while-busy", CANARY)
        finally:
            os.close(fd)
        [error] = [n for n in notices(app) if n.startswith("Could not add while-busy")]
        assert "vault busy: another process is writing sandbox.vault; try again" in error
        assert "while-busy" not in secret_rows(app) and CANARY not in error
    assert sandbox_vault.read_bytes() == before
    assert audit.search(store, "vault.") == []


@pytest.mark.asyncio
async def test_a_change_the_trail_could_not_take_is_said_and_shown(store: ServiceContext, sandbox_vault: Path,
                                                                   tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The audit key cannot be read once the vault is written: the vault has the secret (the
    table shows it), and the one line says the trail does not."""
    app = make_app(store)
    async with app.run_test(size=(80, 24), notifications=True) as pilot:
        await open_unlocked(pilot)
        unreadable = tmp_path / "key-is-a-directory"
        unreadable.mkdir()
        monkeypatch.setenv("WORKBENCH_AUDIT_KEY_FILE", str(unreadable))
        await pilot.press("a")
        await fill(pilot, "late-audit", CANARY)
        [error] = [n for n in notices(app) if n.startswith("Could not add late-audit")]
        assert error.startswith("Could not add late-audit: stored late-audit (version 1) in the sandbox vault: the "
                                "vault has the change, the audit trail does not (its entry could not be written")
        assert CANARY not in error
        assert secret_rows(app)["late-audit"] == "1"


@pytest.mark.asyncio
async def test_a_secret_added_here_shows_on_no_screen(store: ServiceContext, sandbox_vault: Path):
    """The canary typed into the Vault screen, then every top-level screen, the audit entry of
    its change and the configuration history: not in any screen's text or notification."""
    app = make_app(store)
    shots: list[str] = []
    async with app.run_test(size=(100, 30), notifications=True) as pilot:
        await open_unlocked(pilot)
        await pilot.press("a")
        await fill(pilot, "canary-key", CANARY)
        assert "canary-key" in secret_rows(app)
        shots.append(screen_text(app))
        for key in ("1", "2", "3", "4", "6"):
            await pilot.press(key)
            await settle(pilot)
            shots.append(screen_text(app))
        await pilot.press("4")
        await settle(pilot)
        await pilot.press("enter")  # the newest entry: vault.set
        await settle(pilot)
        entry = screen_text(app)
        assert "vault.set" in entry and "canary-key" in entry
        shots.append(entry)
        await pilot.press("escape", "6")
        await settle(pilot)
        await pilot.press("enter")
        await settle(pilot)
        shots.append(screen_text(app))
    assert "CANARY" not in everything_shown(app, shots)


def test_every_change_needs_the_vault_action() -> None:
    """What the role check of the base screen reads: each change's binding, and "vault" for it."""
    bound = {binding.action for binding in VaultScreen.BINDINGS if isinstance(binding, Binding)}
    assert VaultScreen.NEEDS == {action: "vault" for action in ("init", "add", "rotate", "remove", "rekey")}
    assert set(VaultScreen.NEEDS) <= bound and set(VaultScreen.NEEDS) == VaultScreen.WRITES
    assert all(needed in access.LEAST_ROLE for needed in VaultScreen.NEEDS.values())


@pytest.mark.parametrize("size", [(80, 24), (100, 30)], ids=["80x24", "100x30"])
def test_snapshot_adding(size: tuple[int, int], store: ServiceContext, sandbox_vault: Path,
                         snap_compare: Any) -> None:
    """The add form with a value typed: dots, never the value."""
    app = make_app(store)

    async def run_before(pilot: Pilot[Any]) -> None:
        await open_unlocked(pilot)
        await pilot.press("a")
        await type_text(pilot, "new-key")
        await pilot.press("enter")
        await type_text(pilot, CANARY)

    assert snap_compare(app, terminal_size=size, run_before=run_before)


def test_snapshot_rekeying(store: ServiceContext, sandbox_vault: Path, snap_compare: Any) -> None:
    app = make_app(store)

    async def run_before(pilot: Pilot[Any]) -> None:
        await open_unlocked(pilot)
        await pilot.press("K")
        await type_text(pilot, PASS)
        await pilot.press("enter")

    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)


def test_no_snapshot_holds_a_value_or_passphrase() -> None:
    """The canary over every stored Vault snapshot (the tests above typed it into the form)."""
    folder = Path(__file__).with_name("__snapshots__") / "test_vault_screen"
    shots = list(folder.glob("*.svg"))
    assert len(shots) >= 5
    for shot in shots:
        text = html.unescape(shot.read_text()).replace("\u00a0", " ")
        assert "CANARY" not in text and PASS not in text, shot.name
