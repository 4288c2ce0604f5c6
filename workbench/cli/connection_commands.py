"""Connections: add, list, pause, resume."""

from __future__ import annotations

import click

from workbench.services import connections

from .connection_config_commands import CONNECTION_COMMANDS
from .output import json_array, table
from .support import State, pass_state


@click.group()
def connection() -> None:
    """Connections: one provider for one tenant in one environment."""


@connection.command("add")
@click.argument("name")
@click.option("--provider", required=True)
@click.option("--environment", type=click.Choice(["sandbox", "live"]), default="sandbox", show_default=True)
@click.option("--reason", help="Why (kept in the connection's history and the audit trail).")
@pass_state
def connection_add(state: State, name: str, provider: str, environment: str, reason: str | None) -> None:
    """Add a connection (NAME: 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit)."""
    info = connections.add_connection(state.ctx, name, provider, environment, reason)
    click.echo(f"added connection {info.name} ({info.provider}, {info.environment}) as {info.id}")


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
    change = connections.change_paused(state.ctx, name, False, reason)
    info = change.connection
    click.echo(f"{info.name} resumed (version {info.version})")
    if change.applied:
        applied = ", ".join(f"{count} {verdict}" for verdict, count in sorted(change.applied.items()))
        click.echo(f"applied {sum(change.applied.values())} deliveries held while paused: {applied}")


for _command in CONNECTION_COMMANDS:  # show, diff, export, import, secret ...
    connection.add_command(_command)

COMMANDS = (connection,)
