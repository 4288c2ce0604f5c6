"""`workbench retention run`: purge raw bodies past each connection's retention."""

from __future__ import annotations

import click

from workbench.services.retention import run_retention

from .output import end_progress, json_value, progress_line
from .support import State, pass_state


@click.group()
def retention() -> None:
    """Retention of raw bodies (`connection set NAME --retain-raw DAYS` sets it per connection)."""


@retention.command("run")
@click.option("--dry-run", is_flag=True, help="Say what would be purged; write nothing.")
@click.option("--json", "as_json", is_flag=True)
@pass_state
def retention_run(state: State, dry_run: bool, as_json: bool) -> None:
    """Empty the raw bodies older than each connection keeps them (IDs, hashes, verdicts and
    timelines stay)."""
    try:
        report = run_retention(state.ctx, dry_run=dry_run,
                               progress=lambda name, n: progress_line(f"{name}: purged {n:,} bodies"))
    finally:
        end_progress()
    if as_json:
        json_value({"dry_run": dry_run, "connections": [c.as_json() for c in report.connections]})
        return
    verb = "would purge" if dry_run else "purged"
    for item in report.connections:
        click.echo(f"{item.connection}: {verb} {item.bodies:,} raw bodies received before "
                   f"{item.cutoff.isoformat(sep=' ', timespec='seconds')} (kept {item.raw_days} days)")
    if not report.connections:
        click.echo("no connection has a retention for raw bodies (`connection set NAME --retain-raw DAYS`)")
    elif dry_run:
        click.echo("dry run: nothing written")


COMMANDS = (retention,)
