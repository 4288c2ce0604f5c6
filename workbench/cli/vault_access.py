"""The vaults a command may read encrypted payloads with: unlocked only when a use case needs
one (a plain connection never asks for a passphrase)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Mapping

import click

from workbench.services import vault as vault_service
from workbench.vault import ENVIRONMENTS, UnlockedVault

PASSPHRASE_ENV = "WORKBENCH_VAULT_PASSPHRASE"  # the same variable as `workbench vault ...` reads


class CommandVaults(Mapping[str, UnlockedVault]):
    """Environment -> unlocked vault, unlocked on first use with WORKBENCH_VAULT_PASSPHRASE or,
    on a terminal, a hidden prompt. Without either the environment is missing (locked), and the
    use case says what it cannot do; a wrong passphrase or a missing vault is a one-line error."""

    def __init__(self) -> None:
        self._unlocked: dict[str, UnlockedVault] = {}

    def __getitem__(self, environment: str) -> UnlockedVault:
        found = self._unlocked.get(environment)
        if found is not None:
            return found
        if environment not in ENVIRONMENTS:
            raise KeyError(environment)
        passphrase = os.environ.get(PASSPHRASE_ENV) or None
        if passphrase is None and sys.stdin.isatty():
            passphrase = str(click.prompt(f"Passphrase for the {environment} vault", hide_input=True, err=True))
        if passphrase is None:
            raise KeyError(environment)  # locked: the use case explains
        vault = self._unlocked[environment] = vault_service.unlock_vault(environment, passphrase)
        return vault

    def __iter__(self) -> Iterator[str]:
        return iter(self._unlocked)

    def __len__(self) -> int:
        return len(self._unlocked)
