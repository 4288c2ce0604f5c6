"""Failures: the list, groups, and triage (single and bulk)."""

from __future__ import annotations

import sys

import click

from workbench.services import queries, recovery, triage

from .output import json_array, json_value, progress_line, table
from .recover_commands import plan_and_submit
from .support import EXIT_PARTIAL, EXIT_USAGE, State, fail, pass_state
from .vault_access import CommandVaults


@click.group(invoke_without_command=True)
@click.option("--state", "state_filter", type=click.Choice(queries.STATES),
              help="A triage state, or unresolved: every failure still in the error queue.")
@click.option("--category", type=click.Choice(queries.CATEGORIES))
@click.option("--connection", "connection_name")
@click.option("--fingerprint")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def failures(click_ctx: click.Context, state_filter: str | None, category: str | None,
             connection_name: str | None, fingerprint: str | None, as_json: bool) -> None:
    """Failures; with a subcommand, triage them."""
    if click_ctx.invoked_subcommand is not None:
        return
    state: State = click_ctx.obj
    items = queries.iter_failures(state.ctx, state=state_filter, category=category, connection=connection_name,
                                  fingerprint=fingerprint)
    if as_json:
        json_array(items)
        return
    table(((f["id"], f["category"], f["state"], f["connection"], f["fingerprint"], f["message"]) for f in items),
          ["id", "category", "state", "connection", "fingerprint", "message"], [33, 23, 12, 20, 16, 60])


@failures.command("groups")
@click.option("--all", "include_closed", is_flag=True, help="Include resolved and ignored failures.")
@click.option("--json", "as_json", is_flag=True)
@pass_state
def failures_groups(state: State, include_closed: bool, as_json: bool) -> None:
    """Failures grouped by category, connection and fingerprint."""
    items = triage.groups(state.ctx, open_only=not include_closed)
    if as_json:
        json_array({"category": g.category, "connection": g.connection, "fingerprint": g.fingerprint,
                    "count": g.count, "message": g.sample_message, "oldest": g.oldest.isoformat(),
                    "newest": g.newest.isoformat()} for g in items)
        return
    table(((g.count, g.category, g.connection, g.fingerprint, g.sample_message) for g in items),
          ["count", "category", "connection", "fingerprint", "example"], [6, 23, 20, 16, 60])


def _report(result: triage.TriageResult) -> None:
    for failure_id in result.done:
        click.echo(f"{failure_id}: {result.messages.get(failure_id, 'done')}")
    for failure_id, reason in result.skipped:
        click.echo(f"{failure_id}: skipped: {reason}", err=True)
    if result.skipped:
        sys.exit(EXIT_PARTIAL if result.done else 1)


def _progress(done: int, total: int) -> None:
    progress_line(f"{done}/{total}")


@failures.command("resolve")
@click.argument("failure_ids", nargs=-1, required=True)
@click.option("--note", required=True)
@pass_state
def failures_resolve(state: State, failure_ids: tuple[str, ...], note: str) -> None:
    """Resolve failures with a note."""
    _report(triage.resolve(state.ctx, list(failure_ids), note, _progress))


@failures.command("ignore")
@click.argument("failure_ids", nargs=-1, required=True)
@click.option("--note", required=True)
@pass_state
def failures_ignore(state: State, failure_ids: tuple[str, ...], note: str) -> None:
    """Ignore failures with a note."""
    _report(triage.ignore(state.ctx, list(failure_ids), note, _progress))


@failures.command("reopen")
@click.argument("failure_ids", nargs=-1, required=True)
@click.option("--note", required=True)
@pass_state
def failures_reopen(state: State, failure_ids: tuple[str, ...], note: str) -> None:
    """Reopen resolved or ignored failures."""
    _report(triage.reopen(state.ctx, list(failure_ids), note, _progress))


@failures.command("retry")
@click.argument("failure_ids", nargs=-1)
@click.option("--filter", "filter_text", metavar="FILTER",
              help="Every open failure that matches, not IDs: e.g. 'category=timeout connection=acme since=2h' "
                   "(the Error queue's filter language). Shows the plan, asks, then the engine runs it.")
@click.option("--yes", is_flag=True, help="With --filter: start without asking (for scripts).")
@click.option("--json", "as_json", is_flag=True, help="With --filter: the plan and the recovery as one JSON object.")
@click.option("--note")
@pass_state
def failures_retry(state: State, failure_ids: tuple[str, ...], filter_text: str | None, yes: bool,
                   as_json: bool, note: str | None) -> None:
    """Re-run each failure's event through ingest (a failed command: back to the outbox)."""
    if bool(failure_ids) == (filter_text is not None):
        fail("name failures by ID, or give --filter (not both)", EXIT_USAGE)
    if as_json and filter_text is None:
        fail("--json goes with --filter", EXIT_USAGE)
    if filter_text is not None:
        plan_and_submit(state, recovery.parse_filter(state.ctx, filter_text), yes=yes, note=note, as_json=as_json)
        return
    _report(triage.retry(state.ctx, list(failure_ids), note, _progress, CommandVaults()))


@failures.command("replay")
@click.argument("failure_ids", nargs=-1, required=True)
@click.option("--note")
@pass_state
def failures_replay(state: State, failure_ids: tuple[str, ...], note: str | None) -> None:
    """Replay each failure's record through the current mapping."""
    _report(triage.replay_records(state.ctx, list(failure_ids), note, _progress, CommandVaults()))


@failures.command("assign")
@click.argument("failure_ids", nargs=-1, required=True)
@click.option("--to", "assignee", required=True)
@click.option("--note")
@pass_state
def failures_assign(state: State, failure_ids: tuple[str, ...], assignee: str, note: str | None) -> None:
    """Assign failures to someone."""
    _report(triage.assign(state.ctx, list(failure_ids), assignee, note, _progress))


@failures.command("note")
@click.argument("failure_id")
@click.argument("text")
@pass_state
def failures_note(state: State, failure_id: str, text: str) -> None:
    """Add a note to a failure."""
    triage.add_note(state.ctx, failure_id, text)
    click.echo(f"{failure_id}: noted")


@failures.command("show")
@click.argument("failure_id")
@pass_state
def failures_show(state: State, failure_id: str) -> None:
    """One failure with its policy and notes (JSON)."""
    json_value(triage.failure_detail(state.ctx, failure_id))


COMMANDS = (failures,)
