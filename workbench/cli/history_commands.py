"""History: a record's timeline, replay through the current mapping, the audit trail."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from workbench.services import audit, replay as replay_service
from workbench.services.errors import ServiceError
from workbench.services.timeline import load_timeline

from .output import atomic_output, end_progress, json_value, progress_line
from .support import EXIT_AUDIT_BROKEN, State, pass_state
from .vault_access import CommandVaults


@click.command()
@click.argument("record_ref", metavar="ID")
@click.option("--json", "as_json", is_flag=True)
@pass_state
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


@click.command()
@click.option("--connection", "connection_name")
@click.option("--record", "record_ref")
@click.option("--dry-run", is_flag=True, help="Print what would change; write nothing.")
@click.option("--json", "as_json", is_flag=True)
@pass_state
def replay(state: State, connection_name: str | None, record_ref: str | None, dry_run: bool, as_json: bool) -> None:
    """Re-run stored raw events through the current mapping."""
    try:
        report = replay_service.replay(state.ctx, connection=connection_name, record=record_ref, dry_run=dry_run,
                                       progress=lambda n: progress_line(f"examined {n:,} records"),
                                       vaults=CommandVaults())
    finally:
        end_progress()
    if as_json:
        json_value({"dry_run": dry_run, "examined": report.examined,
                    "changes": [c.as_dict() for c in report.changes],
                    "skipped": [{"record_id": record_id, "why": why} for record_id, why in report.skipped]})
        return
    for record_id, why in report.skipped:
        click.echo(f"{record_id}: not replayed: {why}", err=True)
    verb = "would change" if dry_run else "changed"
    for change in map(replay_service.ReplayChange.as_dict, report.changes):  # as_dict: redacted
        fields = change["changed_fields"]
        click.echo(f"{change['record_id']} ({change['external_id']}): {change['from']} -> {change['to']}"
                   f"{' fields ' + ','.join(fields) if fields else ''}  why: {change['reason']}")
    click.echo(f"{report.examined} record(s) examined, {len(report.changes)} {verb}"
               + (" (dry run: nothing written)" if dry_run else ""))


@click.group("audit")
def audit_group() -> None:
    """The tamper-evident audit trail."""


@audit_group.command("verify")
@click.option("--file", "export_file", type=click.Path(dir_okay=False), metavar="EXPORT",
              help="Verify an exported trail (from `audit export`) on its own, with the audit key.")
@click.option("--key", "key_file", type=click.Path(dir_okay=False), metavar="FILE",
              help="With --file: the audit key to check it with (default: this store's key).")
@pass_state
def audit_verify(state: State, export_file: str | None, key_file: str | None) -> None:
    """Check the chain (keyed MACs, the head row, the checkpoint outside the store); names the
    first broken entry and the cause."""
    if key_file and not export_file:
        raise click.UsageError("--key goes with --file")
    if export_file:
        key = Path(key_file) if key_file else audit.key_file(state.ctx)
        try:
            with open(export_file, "rb") as source:
                result = audit.verify_export(source, key)
        except OSError as exc:
            raise ServiceError(f"cannot read the export {export_file}: {exc.strerror}") from None
    else:
        result = audit.verify(state.ctx)
    if result.ok:
        click.echo(f"audit chain intact: {result.checked} entries"
                   + ("" if result.anchored else " (no checkpoint for this store on this machine: a cut-off "
                      "tail could not be detected)"))
        return
    where = f" at entry {result.broken_seq}" if result.broken_seq is not None else ""
    click.echo(f"audit chain broken{where}: {result.problem}", err=True)
    sys.exit(EXIT_AUDIT_BROKEN)


@audit_group.command("export")
@click.option("--output", "-o", type=click.Path(dir_okay=False, writable=True), help="File (default: stdout).")
@pass_state
def audit_export(state: State, output: str | None) -> None:
    """Write the trail as JSON lines (payloads redacted)."""
    with atomic_output(output) as out:  # whole trail or nothing: an error mid-way leaves no partial file
        count = audit.export(state.ctx, out)
    if output:
        click.echo(f"wrote {count} entries to {output}", err=True)


COMMANDS = (timeline, replay, audit_group)
