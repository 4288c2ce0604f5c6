"""Ingest a capture file."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from workbench.domain.redaction import redact_text
from workbench.services import connections
from workbench.services.captures import CaptureReader
from workbench.services.ingest_run import run_ingest

from .output import end_progress, progress_line
from .settings import reader_process_wanted
from .support import EXIT_PARTIAL, State, fail, pass_state
from .vault_access import CommandVaults


@click.command()
@click.argument("name")
@click.argument("file")
@click.option("--batch-size", type=click.IntRange(1, 100_000),
              help="Deliveries per transaction (default: the pipeline's own, 20,000).")
@pass_state
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
                             batch_size=batch_size, reader_process=reader_process_wanted(), vaults=CommandVaults(),
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
        click.echo(f"line {bad.line_no}: skipped: {redact_text(bad.reason)}", err=True)
    if len(run.bad_lines) > 50:
        click.echo(f"... and {len(run.bad_lines) - 50} more skipped lines", err=True)
    if run.bad_lines:
        sys.exit(EXIT_PARTIAL)


COMMANDS = (ingest,)
