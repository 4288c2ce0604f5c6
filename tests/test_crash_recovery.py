"""A process killed half-way through an ingest, then re-run, ends as one clean run would."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import func, select

from adapters.stripe.simulator import SimulatorSettings, write_jsonl
from store.database import reading
from store.models import Delivery, ProviderRef, Record
from workbench.services import connections

WORKBENCH = [sys.executable, "-c", "from workbench.cli.main import main; main()"]
deliveries = Delivery.__table__


def _run_ingest(db_url: str, name: str, path: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([*WORKBENCH, "--db", db_url, "ingest", name, str(path), "--batch-size", "500"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)


def _stored(ctx, connection_id: str) -> int:
    with reading(ctx.engine) as conn:
        return conn.execute(select(func.count()).select_from(deliveries)
                            .where(deliveries.c.connection_id == connection_id)).scalar_one()


def _belief(ctx, connection_id: str) -> dict[str, tuple[str, int, dict]]:
    records, refs = Record.__table__, ProviderRef.__table__
    with reading(ctx.engine) as conn:
        rows = conn.execute(select(refs.c.external_id, records.c.status, records.c.version, records.c.fields)
                            .join(records, records.c.id == refs.c.record_id)
                            .where(records.c.connection_id == connection_id)).all()
    return {r.external_id: (r.status, r.version, r.fields) for r in rows}


def _originals(ctx, connection_id: str) -> dict[str, str]:
    with reading(ctx.engine) as conn:
        rows = conn.execute(select(deliveries.c.dedupe_key, deliveries.c.verdict)
                            .where(deliveries.c.connection_id == connection_id,
                                   deliveries.c.dedupe_key.is_not(None))).all()
    return dict(rows)


def test_killed_ingest_rerun_matches_a_clean_run(ctx, db_url, tmp_path):
    capture_file = tmp_path / "captures.jsonl"
    # ~6,450 deliveries: the kill lands after two batches of 500 with over 5,000 still to go (a
    # bigger file, 19k deliveries, tested nothing more and tripled the test's time).
    total = write_jsonl(str(capture_file), SimulatorSettings(intents=2000, seed=11))
    crashed = connections.add_connection(ctx, "crashed", "stripe")
    clean = connections.add_connection(ctx, "clean", "stripe")

    victim = _run_ingest(db_url, "crashed", capture_file)
    deadline = time.monotonic() + 120
    while _stored(ctx, crashed.id) < 1000:  # some batches committed...
        assert victim.poll() is None, victim.stderr.read().decode()
        assert time.monotonic() < deadline, "ingest made no progress"
        time.sleep(0.05)
    os.kill(victim.pid, signal.SIGKILL)  # ...and then no chance to clean up
    victim.wait()
    partial = _stored(ctx, crashed.id)
    assert 0 < partial < total, "the kill must land half-way"

    rerun = _run_ingest(db_url, "crashed", capture_file)
    rerun_out, rerun_err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, rerun_err.decode()
    reference = _run_ingest(db_url, "clean", capture_file)
    reference_out, reference_err = reference.communicate(timeout=300)
    assert reference.returncode == 0, reference_err.decode()
    rerun_out, reference_out = rerun_out.decode(), reference_out.decode()

    assert _belief(ctx, crashed.id) == _belief(ctx, clean.id)
    # Every event is stored once as an original, with the verdict a clean run gives it, and
    # every delivery once: the re-run recognises the capture lines the killed run stored.
    assert _originals(ctx, crashed.id) == _originals(ctx, clean.id)
    assert _stored(ctx, crashed.id) == _stored(ctx, clean.id) == total
    assert _verdict_counts(ctx, crashed.id) == _verdict_counts(ctx, clean.id)
    assert "already_stored" in rerun_out and "already_stored" not in reference_out


def _verdict_counts(ctx, connection_id: str) -> dict[str, int]:
    with reading(ctx.engine) as conn:
        return dict(conn.execute(select(deliveries.c.verdict, func.count()).where(
            deliveries.c.connection_id == connection_id).group_by(deliveries.c.verdict)).all())
