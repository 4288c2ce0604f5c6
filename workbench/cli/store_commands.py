"""Store administration and the demo: the only commands that create a store on purpose."""

from __future__ import annotations

import click

from workbench.domain.taxonomy import TriageState
from workbench.services import vault as vault_service
from workbench.services.store_admin import upgrade_store

from .output import end_progress, progress_line
from .support import State, pass_state


@click.group()
def db() -> None:
    """Store administration."""


@db.command("upgrade")
@pass_state
def db_upgrade(state: State) -> None:
    """Create or migrate the store's schema to the current version."""
    click.echo(f"store at {upgrade_store(state.db)} is up to date")


@click.command()
@click.option("--records", "records_total", default=6000, show_default=True, type=click.IntRange(1))
@click.option("--deliveries", "deliveries_total", type=click.IntRange(1),
              help="Total deliveries to aim for (extra ones are provider redeliveries).")
@click.option("--open-failures", "open_failures_total", type=click.IntRange(0),
              help="Add failing commands until this many failures are unresolved.")
@click.option("--seed", default=7, show_default=True)
@click.option("--if-empty", is_flag=True, help="Do nothing (successfully) when the store already has data.")
@pass_state
def demo(state: State, records_total: int, deliveries_total: int | None, open_failures_total: int | None,
         seed: int, if_empty: bool) -> None:
    """Fill an empty store with realistic demo data (creating the store if there is none)."""
    from workbench.services import demo as demo_service

    ctx = state.context(create=True)
    if if_empty and demo_service.has_data(ctx):
        click.echo("store already has data; leaving it as it is")
        return
    summary = demo_service.build_demo(ctx, records_total=records_total, deliveries_total=deliveries_total,
                                      open_failures_total=open_failures_total, seed=seed, progress=progress_line)
    end_progress()
    click.echo(f"connections: {summary.connections}")
    click.echo(f"records: {summary.records:,}")
    click.echo("deliveries: " + ", ".join(f"{v} {k}" for k, v in sorted(summary.deliveries.items())))
    click.echo(f"commands: {summary.commands:,}")
    by_state = summary.failures_by_state
    click.echo("failures: " + ", ".join(f"{by_state[s]} {s}" for s in map(str, TriageState) if by_state[s])
               + f" ({sum(summary.open_failures.values())} unresolved: `workbench failures --state unresolved`)")
    click.echo("unresolved failures by category: "
               + ", ".join(f"{v} {k}" for k, v in sorted(summary.open_failures.items())))
    if vault_service.ensure_demo_vault():
        click.echo(f"vault: a sandbox vault with one demo secret, passphrase {vault_service.DEMO_PASSPHRASE!r} "
                   f"(`WORKBENCH_VAULT_PASSPHRASE={vault_service.DEMO_PASSPHRASE} workbench vault list`)")


COMMANDS = (db, demo)
