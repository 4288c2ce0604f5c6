"""`workbench connection rewind NAME --since TIME`: move a polling cursor back (a plan first)."""

from __future__ import annotations

import click

from workbench.services import provider_calls, rewind

from .recover_commands import moment
from .support import State, confirm_or_stop, pass_state
from .vault_access import CommandVaults


@click.command("rewind")
@click.argument("name")
@click.option("--since", required=True, help="ISO 8601 (UTC unless a zone is given) or a time ago (2h, 3d).")
@click.option("--reason", help="Why (kept in the audit trail).")
@click.option("--yes", is_flag=True, help="Move it without asking (for scripts).")
@pass_state
def connection_rewind(state: State, name: str, since: str, reason: str | None, yes: bool) -> None:
    """Move NAME's polling cursor back so the engine re-reads its events since a time
    (dedupe keeps what was already stored from being stored twice)."""
    when = moment(state, "--since", since)
    client = provider_calls.open_client(state.ctx, name, CommandVaults())
    try:
        plan = rewind.plan_rewind(state.ctx, name, when, client)
    finally:
        client.close()
    click.echo(f"plan: rewind {plan.connection}'s polling cursor to {plan.since.isoformat()}")
    click.echo(f"  cursor now:   {plan.current or '(start)'}"
               + (f" (last poll {plan.last_poll_at.isoformat(timespec='seconds')})" if plan.last_poll_at else ""))
    click.echo(f"  cursor after: {plan.target or '(start: every event the provider lists)'}")
    click.echo("  the engine re-reads from there at its next poll; events already stored are not stored again")
    confirm_or_stop(yes, "Move the cursor?", "a rewind")
    rewind.apply_rewind(state.ctx, plan, reason)
    click.echo(f"{plan.connection}: cursor rewound to {plan.target or '(start)'}")
