"""Vault: the secrets of one environment's vault (names, versions, ages; never a value),
and unlocking and locking it. Unlocked once per process: the app keeps the unlocked vault
until `l` locks it again. Key derivation runs in a worker thread, never on the UI thread."""

from __future__ import annotations

from dataclasses import dataclass, field

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
from .dialogs import PromptScreen
from .table_screen import TableScreen

COLUMNS = [
    Column("Name", None, min_width=16),
    Column("Version", 7, align="right"),
    Column("Created", 8, align="right"),
    Column("Rotated", 8, align="right"),
]


@dataclass(frozen=True)
class VaultView:
    environment: str
    exists: bool
    unlocked: bool
    secrets: list[SecretSummary] = field(default_factory=list)


class VaultScreen(TableScreen[VaultView]):
    WHERE = "Vault"
    NAME = "vault"
    COLUMNS = COLUMNS
    EMPTY = "no secrets to show"
    HELP = """The credential vault of one environment (sandbox or live): each secret's name, current
version, and how long ago it was created and last rotated. Values are never shown here
(`workbench vault reveal NAME` prints one, and is audited).

u unlocks the vault with its passphrase (once: it stays unlocked until l locks it or the
workbench closes); e switches between the sandbox and live vaults. Adding, rotating and
rekeying are `workbench vault set|rotate|rekey` for now."""

    BINDINGS = [
        Binding("u", "unlock", "Unlock"),
        Binding("l", "lock", "Lock"),
        Binding("e", "switch_environment", "Environment"),
    ]

    def __init__(self, environment: str = "sandbox") -> None:
        super().__init__()
        self.environment = environment
        self._unlocking = False

    @property
    def unlocked(self) -> dict[str, UnlockedVault]:
        """The app's unlocked vaults, by environment (kept when this screen closes)."""
        vaults: dict[str, UnlockedVault] | None = getattr(self.app, "unlocked_vaults", None)
        if vaults is None:
            vaults = {}
            self.app.unlocked_vaults = vaults  # type: ignore[attr-defined]  # one dict per app, made on first use
        return vaults

    def compose_above(self) -> ComposeResult:
        yield Static("", id="vault-state", classes="verify-line")

    def request(self) -> tuple[str, UnlockedVault | None]:
        return self.environment, self.unlocked.get(self.environment)

    def fetch(self, request: tuple[str, UnlockedVault | None]) -> VaultView:
        environment, opened = request
        if opened is None:
            return VaultView(environment, vault_service.exists(environment), unlocked=False)
        return VaultView(environment, True, True, vault_service.list_secrets(opened))

    def show(self, data: VaultView) -> None:
        now = self.wb.now()
        self.table.set_rows([
            Row(s.name, (s.name, str(s.version), age(now - s.created_at),
                         age(now - s.rotated_at) if s.rotated_at else "-"), data=s)
            for s in data.secrets])
        if not data.exists:
            state = (f"no {data.environment} vault yet: `workbench vault init --environment {data.environment}` "
                     "creates one")
        elif not data.unlocked:
            state = f"{data.environment} vault: locked · u unlock · e other environment"
        else:
            state = f"{data.environment} vault: unlocked · l lock · e other environment"
        line = self.query_one("#vault-state", Static)
        line.update(escape(state))
        line.set_class(not data.unlocked, "-broken")
        self.status.set_info(f"{len(data.secrets)} secret{'s' if len(data.secrets) != 1 else ''}"
                             if data.unlocked else "locked")

    # ----------------------------------------------------------------- actions

    def action_switch_environment(self) -> None:
        self.environment = ENVIRONMENTS[(ENVIRONMENTS.index(self.environment) + 1) % len(ENVIRONMENTS)]
        self.reload()

    def action_lock(self) -> None:
        if self.unlocked.pop(self.environment, None) is not None:
            self.notify(f"{self.environment} vault locked", markup=False)
        self.reload()

    def action_unlock(self) -> None:
        if self._unlocking or self.environment in self.unlocked:
            return
        environment = self.environment
        self.app.push_screen(
            PromptScreen("Unlock the vault", f"Passphrase for the {environment} vault", required=True,
                         password=True),
            lambda passphrase: self._start_unlock(environment, passphrase) if passphrase else None)

    def _start_unlock(self, environment: str, passphrase: str) -> None:
        self._unlocking = True
        self.query_one("#vault-state", Static).update(f"{environment} vault: unlocking…")
        self.run_worker(lambda: self._unlock(environment, passphrase), thread=True, group="unlock",
                        exit_on_error=False)

    def _unlock(self, environment: str, passphrase: str) -> None:
        try:
            result: UnlockedVault | str = vault_service.unlock_vault(environment, passphrase)
        except Exception as exc:
            result = describe_error(exc)
        self._post(self._unlocked, environment, result)

    def _unlocked(self, environment: str, result: UnlockedVault | str) -> None:
        self._unlocking = False
        if isinstance(result, str):
            self.notify(f"Could not unlock: {result}", severity="error", markup=False)
        else:
            self.unlocked[environment] = result
        if self.is_attached:
            self.reload()
