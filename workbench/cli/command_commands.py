"""`workbench command submit`: queue a command (and its record) for the engine to dispatch."""

from __future__ import annotations

import click

from workbench.services import command_submit

from .output import json_value
from .support import State, pass_state


@click.group("command")
def command() -> None:
    """Commands to providers (the outbox the engine dispatches)."""


@command.command("submit")
@click.argument("connection")
@click.argument("intent")
@click.option("--data", "data", required=True, metavar="JSON", help='The payload, a JSON object: \'{"amount": 1250}\'.')
@click.option("--record", "record_id", metavar="ID",
              help="An existing record the command is about (confirm, cancel...); default: a new record.")
@click.option("--idempotency-key", metavar="KEY",
              help="Your key for this command: submitting it again returns the first command (default: new).")
@click.option("--json", "as_json", is_flag=True)
@pass_state
def command_submit_cmd(state: State, connection: str, intent: str, data: str, record_id: str | None,
                       idempotency_key: str | None, as_json: bool) -> None:
    """Queue INTENT (payment.create, payroll_run.submit, ...) for CONNECTION; prints the
    command's and the record's IDs."""
    payload = command_submit.parse_data(data)
    result = command_submit.submit(state.ctx, connection, intent, payload, record_id=record_id,
                                   idempotency_key=idempotency_key)
    if as_json:
        json_value({"command": result.command, "record": result.record, "created": result.created})
        return
    note = "" if result.created else " (submitted before with this key: nothing new queued)"
    click.echo(f"command {result.command} record {result.record}{note}")


COMMANDS = (command,)
