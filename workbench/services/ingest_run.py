"""An operator's ingest run: ingest a capture source, and audit the run whatever its outcome."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from workbench.domain.redaction import redact_text

from . import access
from .captures import BadLine, Capture, CaptureReader
from .connections import get_connection
from .context import ServiceContext
from .errors import ServiceError
from .ingest import HELD, IngestReport, ingest, record_ingest_run
from .payload_crypto import NO_VAULTS, Vaults, encrypts, sealer_for
from .signatures import checker_for
from .store_faults import explain

log = logging.getLogger(__name__)


class IngestStopped(ServiceError):
    """An ingest run stopped part-way; the batches committed before it stay stored."""


@dataclass
class IngestRun:
    """What one run did: counts per verdict (and `already_stored`), the lines skipped, and
    whether the connection was paused (its deliveries are then held for resume)."""

    connection: str
    paused: bool
    report: IngestReport = field(default_factory=IngestReport)
    bad_lines: list[BadLine] = field(default_factory=list)

    @property
    def held(self) -> int:
        return self.report.counts.get(str(HELD), 0)


def run_ingest(ctx: ServiceContext, connection_name: str, captures: Iterable[Capture], *, source: str,
               batch_size: int | None = None, reader_process: bool = False,
               progress: Callable[[IngestReport], None] | None = None,
               vaults: Vaults = NO_VAULTS) -> IngestRun:
    """Ingest `captures` into a connection and append an `ingest.run` audit entry in every
    case: done, partial (skipped lines), or stopped by an error (with the counts committed
    before it and the error's one-line summary; then IngestStopped is raised)."""
    access.require(ctx, "ingest")  # before anything, the run's own audit entry included
    connection = get_connection(ctx, connection_name)  # unknown: one line, nothing written
    if encrypts(connection.settings):
        sealer_for(vaults, connection.id, connection.environment)  # locked: one line, nothing written
    # The vault read once for the run; locked while the connection has secrets: one line, nothing written.
    check = checker_for(ctx, connection, ctx.adapters.get(connection.provider), vaults, ctx.clock())
    bad_lines = captures.bad_lines if isinstance(captures, CaptureReader) else []
    run = IngestRun(connection.name, connection.paused, bad_lines=bad_lines)  # filled as lines are read

    def committed(report: IngestReport) -> None:
        run.report = report  # the same report object, counting each committed batch
        if progress is not None:
            progress(report)

    options: dict[str, Any] = {"batch_size": batch_size} if batch_size else {}
    error: str | None = None
    try:
        run.report = ingest(ctx, connection_name, captures, progress=committed, reader_process=reader_process,
                            vaults=vaults, signatures=check, **options)
    except BaseException as exc:
        error = "interrupted" if isinstance(exc, KeyboardInterrupt) else one_line(exc)
        _audit(ctx, run, source, len(bad_lines), error)
        if isinstance(exc, Exception):
            raise IngestStopped(f"ingest stopped after {run.report.total:,} deliveries were stored: {error} "
                                "(what was stored stays; run the same file again to complete it)") from exc
        raise
    _audit(ctx, run, source, len(bad_lines), None)
    return run


def _audit(ctx: ServiceContext, run: IngestRun, source: str, skipped: int, error: str | None) -> None:
    try:
        record_ingest_run(ctx, run.connection, run.report, source=source, skipped_lines=skipped, error=error)
    except Exception:
        if error is None:
            raise
        # Already failing: the store may be what failed. Keep the original error for the operator.
        log.warning("could not audit the failed ingest run of %s", run.connection, exc_info=True)


def one_line(exc: BaseException) -> str:
    """An error as one line for an operator or the audit trail: a store failure in the words
    the faces use (never the SQL, its parameters or the driver's detail), else the exception's
    first line, credentials masked."""
    explained = explain(exc, "")
    if explained is not None:
        return str(explained)
    cause: BaseException = getattr(exc, "orig", None) or exc
    text = str(cause).strip().splitlines()
    summary = f"{type(cause).__name__}: {text[0]}" if text else type(cause).__name__
    return redact_text(summary[:300])
