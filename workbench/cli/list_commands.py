"""Lists of records and events (failures have their own module)."""

from __future__ import annotations

import click

from workbench.services import queries

from .output import json_array, table
from .support import State, pass_state


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
@pass_state
def events(state: State, connection_name: str | None, record_id: str | None, as_json: bool) -> None:
    """Stored deliveries and their verdicts."""
    items = queries.iter_events(state.ctx, connection=connection_name, record_id=record_id)
    if as_json:
        json_array(items)
        return
    table(((e["id"], e["source"], e["event_type"], e["verdict"], e["record_id"], e["received_at"]) for e in items),
          ["id", "source", "type", "verdict", "record", "received"], [32, 8, 34, 9, 32, 32])


COMMANDS = (records, events)
