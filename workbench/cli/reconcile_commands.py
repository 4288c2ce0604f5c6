"""Reconciliation and drift: `workbench reconcile`, `workbench drift`, `workbench drift resolve`."""

from __future__ import annotations

import sys

import click

from workbench.services import drift as drift_service, reconcile as reconcile_service

from .output import end_progress, json_array, json_value, progress_line, table
from .support import EXIT_PARTIAL, EXIT_USAGE, State, fail, pass_state
from .vault_access import CommandVaults


@click.command()
@click.argument("connection")
@click.option("--record", "record_id", help="Compare this one record (our ID) only, fetched from the provider by its ID there.")
@click.option("--dry-run", is_flag=True, help="Count what differs; write no finding.")
@click.option("--now", "later", is_flag=True,
              help="Ask a running engine to do it (records the request and returns).")
@click.option("--json", "as_json", is_flag=True, help="The run's summary as JSON.")
@pass_state
def reconcile(state: State, connection: str, record_id: str | None, dry_run: bool, later: bool, as_json: bool) -> None:
    """Compare CONNECTION's records with its provider now and record what differs (drift)."""
    ctx = state.ctx
    if later:
        # The run, and the mark running engines watch for (within a second): they carry it out.
        run_id = reconcile_service.request_now(ctx, connection, record_id=record_id, dry_run=dry_run)
        if as_json:
            json_value({"run": run_id, "connection": connection, "status": "requested"})
        else:
            click.echo(f"{run_id}: requested; a running engine (`workbench engine`) carries it out within seconds "
                       "(none runs it before one starts: `workbench reconcile` without --now runs it here)")
        return

    def progress(done: int, total: int) -> None:
        progress_line(f"reconciled {done:,}/{total:,} records")

    try:
        report = reconcile_service.reconcile(ctx, connection, record_id=record_id, dry_run=dry_run,
                                             vaults=CommandVaults(), progress=progress)
    finally:
        end_progress()
    if as_json:
        json_value(report.as_dict())
    else:
        verb = "would open" if dry_run else "open"
        click.echo(f"{report.run_id}: {report.records_checked:,} records checked against "
                   f"{report.provider_objects:,} provider objects; {report.findings:,} findings {verb} "
                   f"({report.new_findings:,} new), {report.cleared:,} cleared")
    for line in report.unreadable[:20]:
        click.echo(f"unreadable provider object: {line}", err=True)
    if report.unreadable_total > 20:
        click.echo(f"... {report.unreadable_total - 20:,} more unreadable provider objects", err=True)
    if report.unreadable_total:
        sys.exit(EXIT_PARTIAL)


@click.group(invoke_without_command=True)
@click.option("--connection", "connection_name")
@click.option("--field", "field_name", help="Only findings on this field (status, amount, exists, ...).")
@click.option("--record", "record_id")
@click.option("--resolved", is_flag=True, help="Resolved findings instead of open ones.")
@click.option("--runs", is_flag=True, help="The newest reconciliation runs instead of findings.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def drift(click_ctx: click.Context, connection_name: str | None, field_name: str | None, record_id: str | None,
          resolved: bool, runs: bool, as_json: bool) -> None:
    """Drift findings (open ones); with a subcommand, resolve them."""
    if click_ctx.invoked_subcommand is not None:
        return
    state: State = click_ctx.obj
    if runs:
        items = reconcile_service.latest_runs(state.ctx, connection=connection_name)
        if as_json:
            json_array(items)
            return
        table(((r["id"], r["connection"], r["status"], r["requested_at"], r["records_checked"], r["findings"],
                "dry run" if r["dry_run"] else (r["error"] or "")) for r in items),
              ["run", "connection", "status", "requested", "records", "findings", "note"],
              [33, 20, 10, 32, 8, 8, 40])
        return
    found = drift_service.list_findings(state.ctx, connection=connection_name, field_name=field_name,
                                        record=record_id, state="resolved" if resolved else "open")
    if as_json:
        json_array(found)
        return
    table(((f["id"], f["connection"], f["record"] or f"({f['provider_id']})", f["field"], _short(f["ours"]),
            _short(f["theirs"]), f["since"]) for f in found),
          ["id", "connection", "record", "field", "ours", "theirs", "since"], [33, 16, 33, 16, 20, 20, 32])


def _short(value: object) -> str:
    if isinstance(value, dict):  # an object we have no record of: its status stands for it
        return f"{{status: {value.get('status')}}}"
    return "-" if value is None else str(value)


@drift.command("resolve")
@click.argument("finding_ids", nargs=-1)
@click.option("--accept", "resolution", flag_value="accept", help="Take the provider's value (a transition).")
@click.option("--push", "resolution", flag_value="push", help="Send ours to the provider (a command).")
@click.option("--escalate", "resolution", flag_value="escalate", help="Put the record in review (a failure).")
@click.option("--note", required=True, help="Why: kept on the finding and in the audit trail.")
@click.option("--all", "bulk", is_flag=True, help="Every open finding the filters match (shows the count first).")
@click.option("--connection", "connection_name")
@click.option("--field", "field_name")
@click.option("--record", "record_id")
@click.option("--yes", is_flag=True, help="With --all: do not ask before acting.")
@pass_state
def drift_resolve(state: State, finding_ids: tuple[str, ...], resolution: str | None, note: str, bulk: bool,
                  connection_name: str | None, field_name: str | None, record_id: str | None, yes: bool) -> None:
    """Resolve findings by ID, or with --all every open one the filters match."""
    if resolution is None:
        fail("say how: --accept, --push or --escalate", EXIT_USAGE)
    if bool(finding_ids) == bulk:
        fail("name findings by ID, or use --all with filters (not both)", EXIT_USAGE)
    ids = list(finding_ids)
    if bulk:
        ids = drift_service.matching_ids(state.ctx, connection=connection_name, field_name=field_name,
                                         record=record_id)
        click.echo(f"{len(ids)} open findings match", err=True)
        if not ids:
            return
        if not yes:
            if not sys.stdin.isatty():
                fail("--all acts on many findings: add --yes to confirm when not on a terminal", EXIT_USAGE)
            click.confirm(f"{resolution} all {len(ids)}?", abort=True, err=True)
    try:
        result = drift_service.resolve(state.ctx, ids, resolution, note,
                                       lambda done, total: progress_line(f"{done}/{total}"))
    finally:
        end_progress()
    for finding_id in result.done:
        click.echo(f"{finding_id}: {result.messages[finding_id]}")
    for finding_id, reason in result.skipped:
        click.echo(f"{finding_id}: skipped: {reason}", err=True)
    if result.skipped:
        sys.exit(EXIT_PARTIAL if result.done else 1)


COMMANDS = (reconcile, drift)
