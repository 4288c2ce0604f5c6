"""Lists of records and events (failures have their own module)."""

from __future__ import annotations

import click

from workbench.services import queries
from workbench.services.capture_export import export_captures

from .output import atomic_output, json_array, table
from .support import State, pass_state
from .vault_access import CommandVaults


@click.command()
@click.option("--connection", "connection_name")
@click.option("--status", type=click.Choice(queries.STATUSES))
@click.option("--json", "as_json", is_flag=True)
@pass_state
def records(state: State, connection_name: str | None, status: str | None, as_json: bool) -> None:
    """Records, with their provider references."""
    items = queries.iter_records(state.ctx, connection=connection_name, status=status)
    if as_json:
        json_array(items)
        return
    table(((r["id"], r["connection"], r["kind"], r["status"], r["version"],
            ",".join(ref["external_id"] for ref in r["provider_refs"]), r["updated_at"]) for r in items),
          ["id", "connection", "kind", "status", "v", "external id", "updated"], [32, 20, 8, 12, 3, 30, 32])


@click.command()
@click.option("--connection", "connection_name")
@click.option("--record", "record_id")
@click.option("--json", "as_json", is_flag=True)
@click.option("--captures", is_flag=True,
              help="Write the connection's deliveries as capture lines (re-ingestable), secrets masked.")
@click.option("--exact", is_flag=True, help="With --captures: the exact stored bytes, unredacted (audited).")
@click.option("--output", "-o", type=click.Path(dir_okay=False), help="With --captures: a file (default: stdout).")
@pass_state
def events(state: State, connection_name: str | None, record_id: str | None, as_json: bool, captures: bool,
           exact: bool, output: str | None) -> None:
    """Stored deliveries and their verdicts; with --captures, the deliveries themselves."""
    if captures or exact or output:
        if not captures:
            raise click.UsageError("--exact and --output go with --captures")
        if not connection_name or record_id or as_json:
            raise click.UsageError("--captures needs --connection NAME (and neither --record nor --json)")
        with atomic_output(output) as out:
            count = export_captures(state.ctx, connection_name, out, destination=output or "stdout",
                                    redacted=not exact, vaults=CommandVaults(),
                                    purged=lambda n: click.echo(f"{n} deliveries left out: their bodies were "
                                                                "purged by retention", err=True))
        if output:
            click.echo(f"wrote {count} capture lines to {output}", err=True)
        return
    items = queries.iter_events(state.ctx, connection=connection_name, record_id=record_id)
    if as_json:
        json_array(items)
        return
    table(((e["id"], e["source"], e["event_type"], e["verdict"], e["record_id"], e["received_at"]) for e in items),
          ["id", "source", "type", "verdict", "record", "received"], [32, 8, 34, 9, 32, 32])


COMMANDS = (records, events)
