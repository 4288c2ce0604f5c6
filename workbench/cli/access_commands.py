"""`workbench access ...`: who may do what on this store (admin only, audited)."""

from __future__ import annotations

import click

from workbench.services import access as access_service, role_bindings

from .output import json_array, table
from .support import State, pass_state


@click.group("access")
def access_group() -> None:
    """Roles: viewer (read), operator (triage, replay, pause, reveal, ingest), admin (everything)."""


@access_group.command("grant")
@click.argument("user")
@click.argument("role", type=click.Choice([str(r) for r in access_service.Role]))
@click.option("--reason", help="Why (kept in the audit trail).")
@pass_state
def access_grant(state: State, user: str, role: str, reason: str | None) -> None:
    """Give USER (an OS user name, or system:NAME for a process) ROLE, replacing any role it had."""
    binding = role_bindings.grant(state.ctx, user, role, reason)
    click.echo(f"{binding.actor} is {binding.role}")


@access_group.command("revoke")
@click.argument("user")
@click.option("--reason", help="Why (kept in the audit trail).")
@pass_state
def access_revoke(state: State, user: str, reason: str | None) -> None:
    """Take USER's role away (the last admin's role cannot be)."""
    actor = role_bindings.actor_for(user)
    role = role_bindings.revoke(state.ctx, user, reason)
    click.echo(f"{actor} is no longer {role}")


@access_group.command("list")
@click.option("--json", "as_json", is_flag=True)
@pass_state
def access_list(state: State, as_json: bool) -> None:
    """Every binding: user, role, who granted it and when."""
    items = role_bindings.list_bindings(state.ctx)
    if as_json:
        json_array(b.as_dict() for b in items)
        return
    table(((b.actor, b.role, b.granted_by, b.granted_at.isoformat(timespec="seconds")) for b in items),
          ["user", "role", "granted by", "granted at"])


@access_group.command("whoami")
@pass_state
def access_whoami(state: State) -> None:
    """Who this workbench acts as here, and with which role."""
    role = access_service.role_of(state.ctx)
    click.echo(f"{state.ctx.actor}: {role if role else 'no role (ask an admin to grant one)'}")


COMMANDS = (access_group,)
