"""Ingest a capture file."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from workbench.services import connections
from workbench.services.captures import CaptureReader
from workbench.services.ingest import DEFAULT_BATCH, ingest as ingest_service, record_ingest_run

from .output import end_progress, progress_line
from .settings import reader_process_wanted
from .support import EXIT_PARTIAL, State, fail, pass_state


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
        reader = CaptureReader(stream)
        report = ingest_service(ctx, name, reader, progress=lambda r: progress_line(f"ingested {r.total:,} deliveries"),
                                batch_size=batch_size or DEFAULT_BATCH, reader_process=reader_process_wanted())
        end_progress()
    record_ingest_run(ctx, name, report, source="stdin" if file == "-" else str(Path(file).resolve()),
                      skipped_lines=len(reader.bad_lines))
    for verdict, count in sorted(report.counts.items()):
        click.echo(f"{verdict}\t{count}")
    click.echo(f"total\t{report.total}")
    for bad in reader.bad_lines[:50]:
        click.echo(f"line {bad.line_no}: skipped: {bad.reason}", err=True)
    if len(reader.bad_lines) > 50:
        click.echo(f"... and {len(reader.bad_lines) - 50} more skipped lines", err=True)
    if reader.bad_lines:
        sys.exit(EXIT_PARTIAL)


COMMANDS = (ingest,)
