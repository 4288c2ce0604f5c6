"""Connections: add, list, pause, resume, set."""

from __future__ import annotations

import click

from workbench.services import connections, provider_calls
from workbench.services.payload_settings import (
    MAX_RAW_DAYS,
    PayloadChange,
    add_with_payload_settings,
    rotate_payload_key,
    set_payload_settings,
)

from .connection_config_commands import CONNECTION_COMMANDS
from .connection_rewind_command import connection_rewind
from .output import json_array, table
from .support import State, pass_state
from .vault_access import CommandVaults

retain_raw_option = click.option(
    "--retain-raw", "retain_raw", type=click.IntRange(1, MAX_RAW_DAYS), metavar="DAYS",
    help="Purge raw bodies older than DAYS when `workbench retention run` runs (default: keep forever).")


base_url_option = click.option(
    "--base-url", metavar="URL",
    help="Call the provider's API at URL (http or https; e.g. a local Stripe-compatible server) "
         "instead of its real API.")


def _where_calls_go(url: str | None) -> str:
    return f"API calls go to {url}" if url else "API calls go to the provider's real API"


@click.group()
def connection() -> None:
    """Connections: one provider for one tenant in one environment."""


@connection.command("add")
@click.argument("name")
@click.option("--provider", required=True)
@click.option("--environment", type=click.Choice(["sandbox", "live"]), default="sandbox", show_default=True)
@click.option("--reason", help="Why (kept in the connection's history and the audit trail).")
@click.option("--encrypt-payloads", is_flag=True,
              help="Encrypt raw bodies at rest with a data key kept in the environment's vault.")
@retain_raw_option
@base_url_option
@pass_state
def connection_add(state: State, name: str, provider: str, environment: str, reason: str | None,
                   encrypt_payloads: bool, retain_raw: int | None, base_url: str | None) -> None:
    """Add a connection (NAME: 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit)."""
    change = PayloadChange(encrypt=True if encrypt_payloads else None, raw_days=retain_raw)
    settings = provider_calls.with_base_url({}, base_url) if base_url is not None else {}
    info = add_with_payload_settings(state.ctx, name, provider, environment, reason, change, CommandVaults(),
                                     settings=settings)
    click.echo(f"added connection {info.name} ({info.provider}, {info.environment}) as {info.id}")
    if base_url is not None:
        click.echo(_where_calls_go(provider_calls.base_url(info.settings)))


@connection.command("list")
@click.option("--json", "as_json", is_flag=True)
@pass_state
def connection_list(state: State, as_json: bool) -> None:
    """List connections."""
    items = connections.list_connections(state.ctx)
    if as_json:
        json_array({"id": c.id, "name": c.name, "provider": c.provider, "environment": c.environment,
                    "paused": c.paused, "version": c.version} for c in items)
        return
    table(((c.name, c.provider, c.environment, "paused" if c.paused else "active", c.version) for c in items),
          ["name", "provider", "environment", "state", "version"])


@connection.command("pause")
@click.argument("name")
@click.option("--reason", required=True)
@pass_state
def connection_pause(state: State, name: str, reason: str) -> None:
    """Pause a connection's sync (obeyed by every engine on this store)."""
    info = connections.set_paused(state.ctx, name, True, reason)
    click.echo(f"{info.name} paused (version {info.version})")


@connection.command("resume")
@click.argument("name")
@click.option("--reason", required=True)
@pass_state
def connection_resume(state: State, name: str, reason: str) -> None:
    """Resume a paused connection."""
    change = connections.change_paused(state.ctx, name, False, reason, CommandVaults())
    info = change.connection
    click.echo(f"{info.name} resumed (version {info.version})")
    if change.applied:
        applied = ", ".join(f"{count} {verdict}" for verdict, count in sorted(change.applied.items()))
        click.echo(f"applied {sum(change.applied.values())} deliveries held while paused: {applied}")


@connection.command("set")
@click.argument("name")
@click.option("--encrypt-payloads/--no-encrypt-payloads", "encrypt", default=None,
              help="Encrypt new raw bodies at rest (the data key goes into the environment's vault), or stop.")
@retain_raw_option
@click.option("--keep-raw-forever", is_flag=True, help="Never purge raw bodies (the default).")
@base_url_option
@click.option("--real-api", is_flag=True, help="Call the provider's real API again (forget --base-url).")
@click.option("--reason", required=True, help="Why (kept in the connection's history and the audit trail).")
@pass_state
def connection_set(state: State, name: str, encrypt: bool | None, retain_raw: int | None, keep_raw_forever: bool,
                   base_url: str | None, real_api: bool, reason: str) -> None:
    """Change how connection NAME keeps its raw bodies, or where it calls its provider (a new version each)."""
    if base_url is not None and real_api:
        raise click.UsageError("give either --base-url URL or --real-api, not both")
    if base_url is not None:
        provider_calls.validated_base_url(base_url)  # refused before any other change is made
    change = PayloadChange(encrypt=encrypt, raw_days=retain_raw, keep_forever=keep_raw_forever)
    if change.empty and (base_url is not None or real_api):
        before = connections.get_connection(state.ctx, name)
        info = provider_calls.set_base_url(state.ctx, name, base_url, reason)
        unchanged = "unchanged" if info.version == before.version else "set"
        click.echo(f"{info.name} {unchanged} (version {info.version}): "
                   f"{_where_calls_go(provider_calls.base_url(info.settings))}")
        return
    before = connections.get_connection(state.ctx, name)
    info = set_payload_settings(state.ctx, name, change, reason, CommandVaults())
    if info.version == before.version:
        click.echo(f"{info.name} unchanged (version {info.version})")
    else:
        payloads, retention = info.settings.get("payloads", {}), info.settings.get("retention", {})
        days = retention.get("raw_days") if isinstance(retention, dict) else None
        click.echo(f"{info.name} set (version {info.version}): payloads "
                   f"{'encrypted' if isinstance(payloads, dict) and payloads.get('encrypt') else 'plain'}, raw bodies "
                   f"{f'kept {days} days' if days else 'kept forever'}")
    if base_url is not None or real_api:  # asked together with a payload change: its own version
        info = provider_calls.set_base_url(state.ctx, name, base_url, reason)
        click.echo(f"{info.name} set (version {info.version}): {_where_calls_go(provider_calls.base_url(info.settings))}")


@connection.command("rotate-payload-key")
@click.argument("name")
@click.option("--reason", required=True, help="Why (kept in the audit trail).")
@pass_state
def connection_rotate_payload_key(state: State, name: str, reason: str) -> None:
    """Give NAME's payload data key a new version: new bodies use it, older ones keep theirs."""
    version = rotate_payload_key(state.ctx, name, reason, CommandVaults())
    click.echo(f"{name}: new raw bodies are encrypted under version {version} of its data key")

for _command in (*CONNECTION_COMMANDS, connection_rewind):  # show, diff, export, import, secret, rewind ...
    connection.add_command(_command)

COMMANDS = (connection,)
