"""Subcommands. Each is thin: parse arguments, call one service, print."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from store.database import open_store, resolve_url
from workbench.services import audit, connections, queries, replay as replay_service, triage
from workbench.services.captures import CaptureReader
from workbench.services.ingest_run import run_ingest
from workbench.services.timeline import load_timeline

from .main import EXIT_AUDIT_BROKEN, EXIT_PARTIAL, State, cli, fail, handles_errors, pass_state
from .output import end_progress, json_array, json_value, progress_line, table

# -- store -------------------------------------------------------------------------------------

@cli.group()
def db() -> None:
    """Store administration."""


@db.command("upgrade")
@pass_state
@handles_errors
def db_upgrade(state: State) -> None:
    """Create or migrate the store's schema to the current version."""
    open_store(state.db, auto_upgrade=True)
    click.echo(f"store at {_display_url(resolve_url(state.db))} is up to date")


def _display_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


# -- connections -------------------------------------------------------------------------------

@cli.group()
def connection() -> None:
    """Connections: one provider for one tenant in one environment."""


@connection.command("add")
@click.argument("name")
@click.option("--provider", required=True)
@click.option("--environment", type=click.Choice(["sandbox", "live"]), default="sandbox", show_default=True)
@click.option("--reason", help="Why (kept in the connection's history and the audit trail).")
@pass_state
@handles_errors
def connection_add(state: State, name: str, provider: str, environment: str, reason: str | None) -> None:
    """Add a connection."""
    info = connections.add_connection(state.ctx, name, provider, environment, reason)
    click.echo(f"added connection {info.name} ({info.provider}, {info.environment}) as {info.id}")


@connection.command("list")
@click.option("--json", "as_json", is_flag=True)
@pass_state
@handles_errors
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
@handles_errors
def connection_pause(state: State, name: str, reason: str) -> None:
    """Pause a connection's sync (obeyed by every engine on this store)."""
    info = connections.set_paused(state.ctx, name, True, reason)
    click.echo(f"{info.name} paused (version {info.version})")


@connection.command("resume")
@click.argument("name")
@click.option("--reason", required=True)
@pass_state
@handles_errors
def connection_resume(state: State, name: str, reason: str) -> None:
    """Resume a paused connection."""
    info = connections.set_paused(state.ctx, name, False, reason)
    click.echo(f"{info.name} resumed (version {info.version})")


# -- ingest ------------------------------------------------------------------------------------

@cli.command()
@click.argument("name")
@click.argument("file")
@click.option("--batch-size", type=click.IntRange(1, 100_000),
              help="Deliveries per transaction (default: the pipeline's own, 20,000).")
@pass_state
@handles_errors
def ingest(state: State, name: str, file: str, batch_size: int | None) -> None:
    """Ingest a capture file (JSON lines; - for stdin) into connection NAME."""
    ctx = state.ctx
    connections.get_connection(ctx, name)  # unknown connection: one line, nothing written
    if file == "-":
        stream = sys.stdin.buffer
    else:
        try:
            stream = Path(file).open("rb")
        except OSError as exc:
            fail(f"cannot read {file}: {exc.strerror or exc}")
    with stream:
        try:
            run = run_ingest(ctx, name, CaptureReader(stream), source="stdin" if file == "-" else str(Path(file).resolve()),
                             batch_size=batch_size,
                             progress=lambda r: progress_line(f"ingested {r.total:,} deliveries"))
        finally:
            end_progress()
    for verdict, count in sorted(run.report.counts.items()):
        click.echo(f"{verdict}\t{count}")
    click.echo(f"total\t{run.report.total}")
    if run.paused:
        click.echo(f"connection {name} is paused: {run.held} deliveries stored, they will be applied on resume",
                   err=True)
    for bad in run.bad_lines[:50]:
        click.echo(f"line {bad.line_no}: skipped: {bad.reason}", err=True)
    if len(run.bad_lines) > 50:
        click.echo(f"... and {len(run.bad_lines) - 50} more skipped lines", err=True)
    if run.bad_lines:
        sys.exit(EXIT_PARTIAL)


# -- lists -------------------------------------------------------------------------------------

@cli.command()
@click.option("--connection", "connection_name")
@click.option("--status")
@click.option("--json", "as_json", is_flag=True)
@pass_state
@handles_errors
def records(state: State, connection_name: str | None, status: str | None, as_json: bool) -> None:
    """Records, with their provider references."""
    items = queries.iter_records(state.ctx, connection=connection_name, status=status)
    if as_json:
        json_array(items)
        return
    table(((r["id"], r["connection"], r["kind"], r["status"], r["version"],
            ",".join(ref["external_id"] for ref in r["provider_refs"]), r["updated_at"]) for r in items),
          ["id", "connection", "kind", "status", "v", "external id", "updated"], [32, 20, 8, 12, 3, 30, 32])


@cli.command()
@click.option("--connection", "connection_name")
@click.option("--record", "record_id")
@click.option("--json", "as_json", is_flag=True)
@pass_state
@handles_errors
def events(state: State, connection_name: str | None, record_id: str | None, as_json: bool) -> None:
    """Stored deliveries and their verdicts."""
    items = queries.iter_events(state.ctx, connection=connection_name, record_id=record_id)
    if as_json:
        json_array(items)
        return
    table(((e["id"], e["source"], e["event_type"], e["verdict"], e["record_id"], e["received_at"]) for e in items),
          ["id", "source", "type", "verdict", "record", "received"], [32, 8, 34, 9, 32, 32])


@cli.group(invoke_without_command=True)
@click.option("--state", "state_filter", help="open, retrying, needs_review, resolved or ignored")
@click.option("--category")
@click.option("--connection", "connection_name")
@click.option("--fingerprint")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handles_errors
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
@handles_errors
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
@handles_errors
def failures_resolve(state: State, failure_ids: tuple[str, ...], note: str) -> None:
    """Resolve failures with a note."""
    _report(triage.resolve(state.ctx, list(failure_ids), note, _progress))


@failures.command("ignore")
@click.argument("failure_ids", nargs=-1, required=True)
@click.option("--note", required=True)
@pass_state
@handles_errors
def failures_ignore(state: State, failure_ids: tuple[str, ...], note: str) -> None:
    """Ignore failures with a note."""
    _report(triage.ignore(state.ctx, list(failure_ids), note, _progress))


@failures.command("reopen")
@click.argument("failure_ids", nargs=-1, required=True)
@click.option("--note", required=True)
@pass_state
@handles_errors
def failures_reopen(state: State, failure_ids: tuple[str, ...], note: str) -> None:
    """Reopen resolved or ignored failures."""
    _report(triage.reopen(state.ctx, list(failure_ids), note, _progress))


@failures.command("retry")
@click.argument("failure_ids", nargs=-1, required=True)
@click.option("--note")
@pass_state
@handles_errors
def failures_retry(state: State, failure_ids: tuple[str, ...], note: str | None) -> None:
    """Re-run each failure's event through ingest."""
    _report(triage.retry(state.ctx, list(failure_ids), note, _progress))


@failures.command("replay")
@click.argument("failure_ids", nargs=-1, required=True)
@click.option("--note")
@pass_state
@handles_errors
def failures_replay(state: State, failure_ids: tuple[str, ...], note: str | None) -> None:
    """Replay each failure's record through the current mapping."""
    _report(triage.replay_records(state.ctx, list(failure_ids), note, _progress))


@failures.command("assign")
@click.argument("failure_ids", nargs=-1, required=True)
@click.option("--to", "assignee", required=True)
@click.option("--note")
@pass_state
@handles_errors
def failures_assign(state: State, failure_ids: tuple[str, ...], assignee: str, note: str | None) -> None:
    """Assign failures to someone."""
    _report(triage.assign(state.ctx, list(failure_ids), assignee, note, _progress))


@failures.command("note")
@click.argument("failure_id")
@click.argument("text")
@pass_state
@handles_errors
def failures_note(state: State, failure_id: str, text: str) -> None:
    """Add a note to a failure."""
    triage.add_note(state.ctx, failure_id, text)
    click.echo(f"{failure_id}: noted")


@failures.command("show")
@click.argument("failure_id")
@pass_state
@handles_errors
def failures_show(state: State, failure_id: str) -> None:
    """One failure with its policy and notes (JSON)."""
    json_value(triage.failure_detail(state.ctx, failure_id))


# -- timeline and replay -----------------------------------------------------------------------

@cli.command()
@click.argument("record_ref", metavar="ID")
@click.option("--json", "as_json", is_flag=True)
@pass_state
@handles_errors
def timeline(state: State, record_ref: str, as_json: bool) -> None:
    """The story of one record (internal or external ID), in time order."""
    story = load_timeline(state.ctx, record_ref)
    if as_json:
        json_value(story.as_dict())
        return
    record = story.record
    refs = ", ".join(f"{r['provider']}:{r['external_id']}" for r in record["provider_refs"])
    click.echo(f"{record['id']}  {record['kind']} on {record['connection']}  [{record['status']} v{record['version']}]  {refs}")
    for entry in story.entries:
        click.echo(f"{entry.at.isoformat(sep=' ', timespec='seconds')}  {entry.kind:<10}  {entry.summary}")


@cli.command()
@click.option("--connection", "connection_name")
@click.option("--record", "record_ref")
@click.option("--dry-run", is_flag=True, help="Print what would change; write nothing.")
@click.option("--json", "as_json", is_flag=True)
@pass_state
@handles_errors
def replay(state: State, connection_name: str | None, record_ref: str | None, dry_run: bool, as_json: bool) -> None:
    """Re-run stored raw events through the current mapping."""
    report = replay_service.replay(state.ctx, connection=connection_name, record=record_ref, dry_run=dry_run,
                                   progress=lambda n: progress_line(f"examined {n:,} records"))
    end_progress()
    if as_json:
        json_value({"dry_run": dry_run, "examined": report.examined,
                    "changes": [c.as_dict() for c in report.changes]})
        return
    verb = "would change" if dry_run else "changed"
    for change in report.changes:
        click.echo(f"{change.record_id} ({change.external_id}): {change.from_status} -> {change.to_status}"
                   f"{' fields ' + ','.join(change.changed_fields) if change.changed_fields else ''}  why: {change.reason}")
    click.echo(f"{report.examined} record(s) examined, {len(report.changes)} {verb}"
               + (" (dry run: nothing written)" if dry_run else ""))


# -- audit -------------------------------------------------------------------------------------

@cli.group("audit")
def audit_group() -> None:
    """The tamper-evident audit trail."""


@audit_group.command("verify")
@pass_state
@handles_errors
def audit_verify(state: State) -> None:
    """Check the hash chain; names the first broken entry."""
    result = audit.verify(state.ctx)
    if result.ok:
        click.echo(f"audit chain intact: {result.checked} entries")
        return
    click.echo(f"audit chain broken at entry {result.broken_seq}: {result.problem}", err=True)
    sys.exit(EXIT_AUDIT_BROKEN)


@audit_group.command("export")
@click.option("--output", "-o", type=click.Path(dir_okay=False, writable=True), help="File (default: stdout).")
@pass_state
@handles_errors
def audit_export(state: State, output: str | None) -> None:
    """Write the trail as JSON lines (payloads redacted)."""
    if output:
        with open(output, "wb") as out:
            count = audit.export(state.ctx, out)
        click.echo(f"wrote {count} entries to {output}", err=True)
    else:
        audit.export(state.ctx, sys.stdout.buffer)
        sys.stdout.flush()


# -- demo --------------------------------------------------------------------------------------

@cli.command()
@click.option("--records", "records_total", default=6000, show_default=True, type=click.IntRange(1))
@click.option("--deliveries", "deliveries_total", type=click.IntRange(1),
              help="Total deliveries to aim for (extra ones are provider redeliveries).")
@click.option("--open-failures", "open_failures_total", type=click.IntRange(0),
              help="Add failing commands until this many failures are open.")
@click.option("--seed", default=7, show_default=True)
@click.option("--if-empty", is_flag=True, help="Do nothing (successfully) when the store already has data.")
@pass_state
@handles_errors
def demo(state: State, records_total: int, deliveries_total: int | None, open_failures_total: int | None,
         seed: int, if_empty: bool) -> None:
    """Fill an empty store with realistic demo data."""
    from workbench.services import demo as demo_service

    if if_empty and demo_service.has_data(state.ctx):
        click.echo("store already has data; leaving it as it is")
        return
    summary = demo_service.build_demo(state.ctx, records_total=records_total, deliveries_total=deliveries_total,
                                      open_failures_total=open_failures_total, seed=seed, progress=progress_line)
    end_progress()
    click.echo(f"connections: {summary.connections}")
    click.echo(f"records: {summary.records:,}")
    click.echo("deliveries: " + ", ".join(f"{v} {k}" for k, v in sorted(summary.deliveries.items())))
    click.echo(f"commands: {summary.commands:,}")
    click.echo("open failures: " + ", ".join(f"{v} {k}" for k, v in sorted(summary.open_failures.items())))
