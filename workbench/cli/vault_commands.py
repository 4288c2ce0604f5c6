"""`workbench vault ...`: the credential vault. Values come from standard input or a hidden
prompt, never from the command line (where `ps` and shell history would keep them); only
`reveal` prints one, and it is audited. Every change is audited too, so the commands that
change the vault open the store first: a store that is missing or refuses the change is said
before any passphrase or value is asked for."""

from __future__ import annotations

import os
import sys

import click

from workbench.services import vault as vault_service
from workbench.services.context import ServiceContext
from workbench.services.errors import InvalidArgument, ServiceError
from workbench.vault import ENVIRONMENTS, UnlockedVault

from .output import json_array, table
from .support import State, pass_state

PASSPHRASE_ENV = "WORKBENCH_VAULT_PASSPHRASE"
NEW_PASSPHRASE_ENV = "WORKBENCH_VAULT_NEW_PASSPHRASE"

environment_option = click.option("--environment", "-e", type=click.Choice(ENVIRONMENTS), default="sandbox",
                                  show_default=True, help="Which environment's vault.")


def _on_terminal() -> bool:
    return sys.stdin.isatty()


def _passphrase(environment: str) -> str:
    given = os.environ.get(PASSPHRASE_ENV)
    if given:
        return given
    if _on_terminal():
        return str(click.prompt(f"Passphrase for the {environment} vault", hide_input=True))
    raise ServiceError(f"the {environment} vault needs its passphrase: set {PASSPHRASE_ENV}, or run on a "
                       "terminal to be asked")


def _new_passphrase(environment: str, env_var: str) -> str:
    given = os.environ.get(env_var)
    if given:
        return given
    if _on_terminal():
        return str(click.prompt(f"New passphrase for the {environment} vault", hide_input=True,
                                confirmation_prompt=True))
    raise ServiceError(f"a new passphrase is needed: set {env_var}, or run on a terminal to be asked (twice)")


def _value(name: str) -> str:
    """The secret's value: standard input when it is not a terminal (one trailing newline
    dropped, as `echo` and here-strings add it), else a hidden prompt, asked twice."""
    if _on_terminal():
        return str(click.prompt(f"Value for {name}", hide_input=True, confirmation_prompt=True))
    raw = sys.stdin.buffer.read(vault_service.MAX_VALUE_BYTES + 3)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidArgument("the value on standard input is not UTF-8 text") from None
    return text[:-2] if text.endswith("\r\n") else text.removesuffix("\n")


def _unlocked(environment: str) -> UnlockedVault:
    return vault_service.unlock_vault(environment, _passphrase(environment))


def _changing(state: State) -> ServiceContext:
    """The store, checked to take this change's audit entry, before a passphrase or value is asked."""
    ctx = state.ctx
    vault_service.may_change(ctx)
    return ctx


@click.group()
def vault() -> None:
    """The credential vault: one encrypted file per environment (docs/vault.md)."""


@vault.command("init")
@environment_option
@pass_state
def vault_init(state: State, environment: str) -> None:
    """Create an empty vault (passphrase from WORKBENCH_VAULT_PASSPHRASE or asked twice)."""
    path = vault_service.location(environment)
    if path.exists():  # before asking for a passphrase that could not be used
        raise vault_service.VaultFailure(f"the {environment} vault at {path} already exists; it was left as it is")
    ctx = _changing(state)
    passphrase = _new_passphrase(environment, PASSPHRASE_ENV)
    vault_service.init_vault(ctx, environment, passphrase)
    click.echo(f"created the {environment} vault at {path}")


@vault.command("set")
@click.argument("name")
@environment_option
@pass_state
def vault_set(state: State, name: str, environment: str) -> None:
    """Add secret NAME; its value is read from standard input or a hidden prompt."""
    ctx = _changing(state)
    unlocked = _unlocked(environment)
    summary = vault_service.set_secret(ctx, unlocked, name, _value(name))
    click.echo(f"stored {summary.name} (version {summary.version}) in the {environment} vault")


@vault.command("rotate")
@click.argument("name")
@environment_option
@pass_state
def vault_rotate(state: State, name: str, environment: str) -> None:
    """Give NAME a new value (standard input or a hidden prompt); older versions are kept."""
    ctx = _changing(state)
    unlocked = _unlocked(environment)
    summary = vault_service.rotate_secret(ctx, unlocked, name, _value(name))
    click.echo(f"rotated {summary.name} to version {summary.version} in the {environment} vault")


@vault.command("list")
@environment_option
@click.option("--json", "as_json", is_flag=True)
def vault_list(environment: str, as_json: bool) -> None:
    """Names, versions and times; never a value."""
    secrets = vault_service.list_secrets(_unlocked(environment))
    if as_json:
        json_array(s.as_json() for s in secrets)
        return
    table(((s.name, s.version, s.created_at.isoformat(timespec="seconds"),
            s.rotated_at.isoformat(timespec="seconds") if s.rotated_at else "-") for s in secrets),
          ("name", "version", "created_at", "rotated_at"))


@vault.command("reveal")
@click.argument("name")
@environment_option
@pass_state
def vault_reveal(state: State, name: str, environment: str) -> None:
    """Print NAME's current value (written to the audit trail first)."""
    ctx = state.ctx  # the store first: no reveal that could not be audited
    value = vault_service.reveal_secret(ctx, _unlocked(environment), name)
    click.echo(value)


@vault.command("remove")
@click.argument("name")
@environment_option
@click.option("--force", is_flag=True, help="Remove a connection's payload data key too (its bodies become unreadable).")
@pass_state
def vault_remove(state: State, name: str, environment: str, force: bool) -> None:
    """Remove NAME and all its versions."""
    ctx = _changing(state)
    versions = vault_service.remove_secret(ctx, _unlocked(environment), name, force=force)
    click.echo(f"removed {name} ({versions} version{'s' if versions != 1 else ''}) from the {environment} vault")


@vault.command("rekey")
@environment_option
@pass_state
def vault_rekey(state: State, environment: str) -> None:
    """Re-encrypt under a new passphrase (WORKBENCH_VAULT_NEW_PASSPHRASE or asked twice)."""
    ctx = _changing(state)
    unlocked = _unlocked(environment)
    vault_service.rekey_vault(ctx, unlocked, _new_passphrase(environment, NEW_PASSPHRASE_ENV))
    click.echo(f"the {environment} vault has a new passphrase; the old one no longer opens it")


COMMANDS = (vault,)
