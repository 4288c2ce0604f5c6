"""Vault: the secrets of one environment's vault (names, versions, ages; never a value), and
what an operator does to them: unlock and lock, add, rotate, remove, rekey (and create a vault
where there is none). Unlocked once per process: the app keeps the unlocked vault until `l`
locks it again.

Every key derivation (~0.4 s) and every write runs in a worker thread, never on the UI thread.
A value or passphrase lives only in its password field and in the worker's call: it is never
put on screen, in a notification, or in an attribute of this screen."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from rich.markup import escape
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import Static

from workbench.services import vault as vault_service
from workbench.services.vault import SecretSummary
from workbench.vault import ENVIRONMENTS, UnlockedVault

from ..errors import describe_error
from ..formatting import age
from ..widgets import Column, Row
from .dialogs import ConfirmScreen, FormField, FormScreen, PromptScreen
from .table_screen import TableScreen

COLUMNS = [
    Column("Name", None, min_width=16),
    Column("Version", 7, align="right"),
    Column("Created", 8, align="right"),
    Column("Rotated", 8, align="right"),
]

# What each change asks for; values and passphrases in password fields only.
NAME = FormField("name", "Name (letters, digits, '.', '_', '-')", placeholder="e.g. stripe-live-key")
VALUE = FormField("value", "Value (hidden; never shown again here)", password=True)
CURRENT = FormField("current", "Current passphrase", password=True)
NEW = FormField("new", f"New passphrase (at least {vault_service.MIN_PASSPHRASE_CHARS} characters)", password=True)
AGAIN = FormField("again", "New passphrase again", password=True)

# The screen's own actions that change the vault, and the access action each needs.
CHANGES = ("init", "add", "rotate", "remove", "rekey")


@dataclass(frozen=True)
class VaultView:
    environment: str
    exists: bool
    unlocked: bool
    secrets: list[SecretSummary] = field(default_factory=list)


@dataclass(frozen=True)
class Failed:
    message: str  # one line: what failed and why


Outcome = str | Failed  # what a change's worker says when it is done


class VaultScreen(TableScreen[VaultView]):
    WHERE = "Vault"
    NAME = "vault"
    CSS_PATH = Path(__file__).with_name("vault.tcss")
    COLUMNS = COLUMNS
    EMPTY = "no secrets to show"
    # Changes are audited: a read-only store cannot take their entries.
    WRITES = frozenset(CHANGES)
    # The access action (services.access.LEAST_ROLE) each change needs, for the role check of
    # the base screen; unlocking and listing only read names.
    NEEDS: ClassVar[dict[str, str]] = {action: "vault" for action in CHANGES}
    HELP = """The credential vault of one environment (sandbox or live): each secret's name, current
version, and how long ago it was created and last rotated. Values are never shown here
(`workbench vault reveal NAME` prints one, and is audited).

u unlocks the vault with its passphrase (once: it stays unlocked until l locks it or the
workbench closes); e switches between the sandbox and live vaults; i creates a vault where
there is none.

Once unlocked: a adds a secret (a name and a hidden value), r gives the secret under the
cursor a new value (older versions are kept), x removes it with all its versions (asked
first), K (shift+k) rekeys the vault (the current passphrase, then the new one twice; the old one stops
working). Each change is written to the audit trail (never a value) and needs the admin role."""

    BINDINGS = [
        Binding("u", "unlock", "Unlock"),
        Binding("l", "lock", "Lock"),
        Binding("e", "switch_environment", "Environment"),
        Binding("i", "init", "Create vault"),
        Binding("a", "add", "Add"),
        Binding("r", "rotate", "Rotate"),
        Binding("x", "remove", "Remove"),
        Binding("K", "rekey", "Rekey"),
    ]

    def __init__(self, environment: str = "sandbox") -> None:
        super().__init__()
        self.environment = environment
        self._busy = False  # a derivation or a write under way: one at a time
        self._view: VaultView | None = None

    @property
    def unlocked(self) -> dict[str, UnlockedVault]:
        """The app's unlocked vaults, by environment (kept when this screen closes)."""
        return self.wb.unlocked_vaults

    def compose_above(self) -> ComposeResult:
        yield Static("", id="vault-state", classes="verify-line")

    # ----------------------------------------------------------------- loading

    def request(self) -> tuple[str, UnlockedVault | None]:
        return self.environment, self.unlocked.get(self.environment)

    def fetch(self, request: tuple[str, UnlockedVault | None]) -> VaultView:
        environment, opened = request
        if opened is None:
            return VaultView(environment, vault_service.exists(environment), unlocked=False)
        return VaultView(environment, True, True, vault_service.list_secrets(opened))

    def refresh_due(self, interval: float) -> bool:
        # Not while a change is under way: a rekey would have the refresh read with a stale key.
        return not self._busy and super().refresh_due(interval)

    def show(self, data: VaultView) -> None:
        self._view = data
        now = self.wb.now()
        self.table.set_rows([
            Row(s.name, (s.name, str(s.version), age(now - s.created_at),
                         age(now - s.rotated_at) if s.rotated_at else "-"), data=s)
            for s in data.secrets])
        if data.environment != self.environment:  # switched meanwhile; the next load shows it
            return
        if not data.exists:
            state = f"no {data.environment} vault yet: i creates one (or `workbench vault init -e {data.environment}`)"
        elif not data.unlocked:
            state = f"{data.environment} vault: locked · u unlock · e other environment"
        else:
            state = f"{data.environment} vault: unlocked · a add · r rotate · x remove · K rekey · l lock"
        if not self._busy:
            self._set_state(state, broken=not data.unlocked)
        self.status.set_info(f"{len(data.secrets)} secret{'s' if len(data.secrets) != 1 else ''}"
                             if data.unlocked else "locked")
        self.refresh_bindings()

    def _set_state(self, text: str, *, broken: bool = False) -> None:
        line = self.query_one("#vault-state", Static)
        line.update(escape(text))
        line.set_class(broken, "-broken")

    # ----------------------------------------------------------------- which keys apply

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        allowed = super().check_action(action, parameters)
        if not allowed:
            return allowed
        view = self._view if self._view is not None and self._view.environment == self.environment else None
        is_open = self.environment in self.unlocked
        exists = view.exists if view is not None else True
        applies = {
            "unlock": exists and not is_open,
            "init": view is not None and not view.exists,
            "lock": is_open,
            "add": is_open,
            "rotate": is_open,
            "remove": is_open,
            "rekey": is_open,
        }.get(action, True)
        return True if applies else False

    # ----------------------------------------------------------------- actions

    def action_switch_environment(self) -> None:
        self.environment = ENVIRONMENTS[(ENVIRONMENTS.index(self.environment) + 1) % len(ENVIRONMENTS)]
        self.refresh_bindings()
        self.reload()

    def action_lock(self) -> None:
        if self.unlocked.pop(self.environment, None) is not None:
            self.notify(f"{self.environment} vault locked", markup=False)
        self.refresh_bindings()
        self.reload()

    def action_unlock(self) -> None:
        if self._busy or self.environment in self.unlocked:
            return
        environment = self.environment

        def given(passphrase: str | None) -> None:
            if passphrase:
                self._start(environment, "unlocking", "Could not unlock", lambda: self._unlock(environment, passphrase))

        self.app.push_screen(PromptScreen("Unlock the vault", f"Passphrase for the {environment} vault",
                                          required=True, password=True), given)

    def _unlock(self, environment: str, passphrase: str) -> str:
        self._hand_over(environment, vault_service.unlock_vault(environment, passphrase))
        return f"{environment} vault unlocked"

    def _hand_over(self, environment: str, vault: UnlockedVault) -> None:
        """From a worker: give the app an unlocked vault (on the UI thread)."""
        self._post(self.unlocked.__setitem__, environment, vault)

    def action_init(self) -> None:
        if self._busy or self.refused("Create vault"):
            return
        environment = self.environment

        def given(form: dict[str, str] | None) -> None:
            if form:
                new = form["new"]
                self._start(environment, "creating", "Could not create the vault", lambda: self._init(environment, new))

        self.app.push_screen(FormScreen(f"Create the {environment} vault", [NEW, AGAIN], same=("new", "again"),
                                        differ="The two passphrases differ",
                                        message="Keep the passphrase safe: nothing opens the vault without it."),
                             given)

    def _init(self, environment: str, passphrase: str) -> str:
        self._hand_over(environment, vault_service.init_vault(self.ctx, environment, passphrase))
        return f"created the {environment} vault (unlocked)"

    def _open_vault(self, what: str) -> tuple[str, UnlockedVault] | None:
        """The environment and its unlocked vault for a change, or None (then said why)."""
        if self._busy:
            self.notify(f"{what}: the last change is still under way; try again when it is done", severity="warning",
                        markup=False)
            return None
        if self.refused(what):
            return None
        opened = self.unlocked.get(self.environment)
        if opened is None:
            self.notify(f"{what}: unlock the {self.environment} vault first (u)", severity="warning", markup=False)
            return None
        return self.environment, opened

    def action_add(self) -> None:
        target = self._open_vault("Add")
        if target is None:
            return
        environment, opened = target

        def given(form: dict[str, str] | None) -> None:
            if form:
                name, value = form["name"], form["value"]
                self._start(environment, "storing", f"Could not add {name}", lambda: self._add(opened, name, value))

        self.app.push_screen(FormScreen(f"Add a secret to the {environment} vault", [NAME, VALUE]), given)

    def _add(self, opened: UnlockedVault, name: str, value: str) -> str:
        summary = vault_service.set_secret(self.ctx, opened, name, value)
        return f"stored {summary.name} (version {summary.version}) in the {opened.environment} vault"

    def _selected(self, what: str) -> SecretSummary | None:
        secret = self.current(SecretSummary)
        if secret is None:
            self.notify(f"{what}: no secret under the cursor", severity="warning", markup=False)
        return secret

    def action_rotate(self) -> None:
        target = self._open_vault("Rotate")
        secret = self._selected("Rotate") if target is not None else None
        if target is None or secret is None:
            return
        environment, opened = target
        name = secret.name

        def given(form: dict[str, str] | None) -> None:
            if form:
                value = form["value"]
                self._start(environment, "rotating", f"Could not rotate {name}",
                            lambda: self._rotate(opened, name, value))

        self.app.push_screen(FormScreen(f"Rotate {name}", [VALUE],
                                        message=f"Version {secret.version + 1} replaces version {secret.version}; "
                                                "older versions stay in the vault."), given)

    def _rotate(self, opened: UnlockedVault, name: str, value: str) -> str:
        summary = vault_service.rotate_secret(self.ctx, opened, name, value)
        return f"rotated {summary.name} to version {summary.version} in the {opened.environment} vault"

    def action_remove(self) -> None:
        target = self._open_vault("Remove")
        secret = self._selected("Remove") if target is not None else None
        if target is None or secret is None:
            return
        environment, opened = target
        name = secret.name
        versions = f"{secret.version} version{'s' if secret.version != 1 else ''}"

        def given(yes: bool | None) -> None:
            if yes:
                self._start(environment, "removing", f"Could not remove {name}", lambda: self._remove(opened, name))

        self.app.push_screen(ConfirmScreen(f"Remove {name}?", f"{name} and all its versions ({versions}) leave the "
                                           f"{environment} vault. This cannot be undone.", confirm="Remove"), given)

    def _remove(self, opened: UnlockedVault, name: str) -> str:
        versions = vault_service.remove_secret(self.ctx, opened, name)
        return f"removed {name} ({versions} version{'s' if versions != 1 else ''}) from the {opened.environment} vault"

    def action_rekey(self) -> None:
        target = self._open_vault("Rekey")
        if target is None:
            return
        environment, _ = target

        def given(form: dict[str, str] | None) -> None:
            if form:
                current, new = form["current"], form["new"]
                self._start(environment, "rekeying", "Could not rekey", lambda: self._rekey(environment, current, new))

        self.app.push_screen(FormScreen(f"Rekey the {environment} vault", [CURRENT, NEW, AGAIN], same=("new", "again"),
                                        differ="The two new passphrases differ",
                                        message="The old passphrase stops opening the vault."), given)

    def _rekey(self, environment: str, current: str, new: str) -> str:
        # The current passphrase again, though the vault is open: whoever finds the workbench
        # unlocked must not be able to lock its owner out.
        vault_service.check_new_passphrase(new)
        opened = vault_service.unlock_vault(environment, current)
        vault_service.rekey_vault(self.ctx, opened, new)
        self._hand_over(environment, opened)  # the app's copy holds the old passphrase
        return f"the {environment} vault has a new passphrase; the old one no longer opens it"

    # ----------------------------------------------------------------- running a change

    def _start(self, environment: str, doing: str, failed: str, work: Callable[[], str]) -> None:
        """Run `work` (services only) in a worker; `failed` heads the one line if it raises."""
        if self._busy:
            return
        self._busy = True
        self._set_state(f"{environment} vault: {doing}…")
        self.run_worker(lambda: self._run(failed, work), thread=True, group="vault-change", exit_on_error=False,
                        name=f"vault {doing}")

    def _run(self, failed: str, work: Callable[[], str]) -> None:
        try:
            outcome: Outcome = work()
        except Exception as exc:  # one line on screen; the app keeps running
            outcome = Failed(f"{failed}: {describe_error(exc)}")
        self._post(self._finished, outcome)

    def _finished(self, outcome: Outcome) -> None:
        self._busy = False
        if isinstance(outcome, Failed):
            self.notify(outcome.message, severity="error", markup=False)
        else:
            self.notify(outcome, markup=False)
        self.refresh_bindings()
        if self.is_attached:
            self.reload()
