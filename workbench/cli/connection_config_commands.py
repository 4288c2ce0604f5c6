"""`workbench connection show|diff|export|import` and `connection secret add|list|retire`:
versioned configuration and secret references (the values live in the vault, never here).

These are subcommands of `connection` (connection_commands.py adds them to its group)."""

from __future__ import annotations

import sys
from datetime import datetime
from typing import Any

import click
import orjson

from workbench.domain.connection_config import SecretRef
from workbench.domain.field_changes import FieldChange
from workbench.domain.redaction import redact, redact_text
from workbench.services import connection_config, secret_refs, vault as vault_service
from workbench.services.context import utc_now
from workbench.services.errors import InvalidArgument, ServiceError

from .output import atomic_output, json_array, json_value, table
from .support import State, pass_state

# The vault commands' own ways to ask for a passphrase and a value: one behaviour for both.
from .vault_commands import _passphrase, _value


def _on_terminal() -> bool:
    return sys.stdin.isatty()


def _when(value: datetime | None) -> str:
    return value.isoformat(timespec="seconds") if value else "-"


def _flat(value: Any, prefix: str) -> list[tuple[str, str]]:
    """`path = value` pairs of a settings tree, values as JSON."""
    if isinstance(value, dict) and value:
        return [pair for key, child in value.items() for pair in _flat(child, f"{prefix}.{key}" if prefix else key)]
    return [(prefix, orjson.dumps(value).decode())]


def _changes_text(changes: list[FieldChange]) -> None:
    for change in changes:
        click.echo(change.as_line())


# -- show, diff --------------------------------------------------------------------------------------


@click.command("show")
@click.argument("name")
@click.option("--history", "with_history", is_flag=True, help="Every version: who changed what, when and why.")
@click.option("--json", "as_json", is_flag=True)
@pass_state
def connection_show(state: State, name: str, with_history: bool, as_json: bool) -> None:
    """A connection's current configuration (settings redacted; secrets by reference)."""
    view = connection_config.show(state.ctx, name)
    entries = connection_config.history(state.ctx, name) if with_history else []
    if as_json:
        document = view.as_json()
        if with_history:
            document["history"] = [entry.as_json() for entry in entries]
        json_value(document)
        return
    info = view.info
    click.echo(f"{info.name}  {info.provider}  {info.environment}  {'paused' if info.paused else 'active'}  "
               f"version {info.version}")
    settings = {k: v for k, v in view.settings.items() if k != "secrets"}
    for path, value in _flat(settings, "settings") if settings else []:
        click.echo(f"  {path} = {value}")
    refs = secret_refs.references(info)
    if refs:
        click.echo("secrets:")
        _secret_table(refs, utc_now())
    if with_history:
        click.echo("history:")
        table(((e.version, e.at[:19], e.actor, e.reason or "-",
                "(created)" if e.version == 1 else ", ".join(c.dotted for c in e.changes) or "-")
               for e in entries), ("version", "at", "actor", "reason", "changed"))


@click.command("diff")
@click.argument("name")
@click.argument("v1", type=click.IntRange(min=1))
@click.argument("v2", type=click.IntRange(min=1))
@click.option("--json", "as_json", is_flag=True)
@pass_state
def connection_diff(state: State, name: str, v1: int, v2: int, as_json: bool) -> None:
    """The fields that differ between versions V1 and V2 (`~` changed, `+` added, `-` removed)."""
    result = connection_config.diff_versions(state.ctx, name, v1, v2)
    if as_json:
        json_value(result.as_json())
        return
    left, right = result.left, result.right
    click.echo(f"{name}: version {left.version} ({left.at[:19]}, {left.actor}) -> version {right.version} "
               f"({right.at[:19]}, {right.actor}, reason: {right.reason or '-'})")
    if not result.changes:
        click.echo("no differences")
    _changes_text(result.changes)


# -- export, import ----------------------------------------------------------------------------------


@click.command("export")
@click.argument("name")
@click.option("-o", "--output", "path", required=True, metavar="FILE.toml", help="Where to write (`-` for stdout).")
@pass_state
def connection_export(state: State, name: str, path: str) -> None:
    """Write NAME's configuration as TOML (secret references only, never values)."""
    exported = connection_config.export_toml(state.ctx, name)
    try:
        with atomic_output(None if path == "-" else path) as out:
            out.write(exported.text)
    except OSError as exc:  # atomic_output left nothing behind
        raise ServiceError(f"cannot write {path}: {exc.strerror or type(exc).__name__}; nothing was written") from None
    if exported.masked:
        click.echo(f"warning: redaction masked {', '.join(exported.masked)}: importing this file would store the mask",
                   err=True)
    if path != "-":
        click.echo(f"exported {name} to {path}")


@click.command("import")
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--yes", is_flag=True, help="Apply without asking (for scripts).")
@click.option("--reason", help="Why (kept in the connection's history and the audit trail).")
@pass_state
def connection_import(state: State, file: str, yes: bool, reason: str | None) -> None:
    """Apply a configuration file: shows the changes and asks first."""
    if file == "-":
        if not yes:  # standard input is the file: there is nothing left to answer a question with
            raise InvalidArgument("an import from standard input needs --yes")
        data = sys.stdin.buffer.read(connection_config.MAX_IMPORT_BYTES + 1)
    else:
        try:
            with open(file, "rb") as handle:
                data = handle.read(connection_config.MAX_IMPORT_BYTES + 1)
        except OSError as exc:
            raise ServiceError(f"cannot read {file}: {exc.strerror or type(exc).__name__}") from None
    parsed = connection_config.read_import(data, file)
    plan = connection_config.plan_import(state.ctx, parsed, file)
    if plan.unchanged:
        assert plan.current is not None
        click.echo(f"no changes: {plan.current.name} is already as {file} says (version {plan.current.version})")
        return
    if not yes and not _on_terminal():
        raise ServiceError(f"importing {file} needs a confirmation: run it on a terminal to see the changes "
                           "and be asked, or pass --yes")
    if plan.current is None:
        click.echo(f"creates connection {parsed.name} ({parsed.provider}, {parsed.environment})")
    else:
        click.echo(f"{parsed.name}: version {plan.current.version} -> {plan.current.version + 1}")
    _changes_text(plan.changes)
    if not yes and not click.confirm("Apply these changes?", default=False):
        raise ServiceError("nothing was imported")
    info = connection_config.apply_import(state.ctx, plan, reason)
    verb = "created" if plan.current is None else "updated"
    click.echo(f"{verb} connection {info.name} from {file} (version {info.version})")


# -- secret references -------------------------------------------------------------------------------


@click.group("secret")
def secret() -> None:
    """A connection's secret references (values in the vault: docs/vault.md)."""


def _secret_table(refs: list[SecretRef], now: datetime) -> None:
    table(((redact_text(r.name), r.kind, _when(r.added_at), _when(r.expires_at), _when(r.retired_at), r.state(now)) for r in refs),
          ("name", "kind", "added_at", "expires_at", "retired_at", "state"))


@secret.command("add")
@click.argument("name")
@click.option("--kind", required=True, metavar="api_key|webhook_secret")
@click.option("--expires-in", metavar="DURATION", help="90d, 12h, 30m, 2w or ISO 8601 (P30D); default: no expiry.")
@click.option("--reason", help="Why (kept in the connection's history and the audit trail).")
@pass_state
def secret_add(state: State, name: str, kind: str, expires_in: str | None, reason: str | None) -> None:
    """Store a secret for NAME in its environment's vault (value from standard input or a hidden
    prompt, never the command line) and reference it on a new connection version."""
    plan = secret_refs.plan_secret(state.ctx, name, kind, expires_in)
    vault = vault_service.unlock_vault(plan.environment, _passphrase(plan.environment))
    ref = secret_refs.add_secret(state.ctx, vault, plan, _value(f"the {name} {kind}"), reason)
    expiry = f", expires {_when(ref.expires_at)}" if ref.expires_at else ""
    click.echo(f"added {kind} {ref.name} to {name} (stored in the {ref.environment} vault{expiry})")


@secret.command("list")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
@pass_state
def secret_list(state: State, name: str, as_json: bool) -> None:
    """NAME's secret references and their state (active, expired, retired); never a value."""
    refs = secret_refs.list_secrets(state.ctx, name)
    now = utc_now()
    if as_json:
        json_array(redact({**ref.as_settings(), "state": ref.state(now)}) for ref in refs)
        return
    _secret_table(refs, now)


@secret.command("retire")
@click.argument("name")
@click.argument("secret_name", metavar="SECRET")
@click.option("--reason", required=True)
@pass_state
def secret_retire(state: State, name: str, secret_name: str, reason: str) -> None:
    """Stop using SECRET for NAME (kept in the history; `workbench vault remove` deletes the value)."""
    ref = secret_refs.retire_secret(state.ctx, name, secret_name, reason)
    click.echo(redact_text(f"retired {ref.name} of {name} at {_when(ref.retired_at)}"))


CONNECTION_COMMANDS = (connection_show, connection_diff, connection_export, connection_import, secret)
