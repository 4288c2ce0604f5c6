"""Reconciliation of 100,000 payroll records through the sandbox's run list: target at least
2,000 records/s with peak RSS under 300 MB (issue 11).

Usage: .venv/bin/python -m benchmarks.reconcile_bench [--records N] [--drift-every K] [--rebuild]

Three processes, so each figure is one side's: the payroll sandbox (its runs made in memory,
not posted one by one: what is measured is reading them), the store builder (records by
`ingest` of one event per run, cached under benchmarks/out/), and the measured run (a fresh
interpreter: its peak RSS is reconciliation's, not the builder's). Every K-th run is moved on
at the provider (COMPLETE) behind our back, so the run writes findings as well as reading.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import httpx
import orjson

OUT = Path(__file__).parent / "out"
KEY = "sk_bench_payroll"
TARGET_RATE, TARGET_RSS_MB = 2000.0, 300.0


def run_body(i: int, status: str = "SENT") -> dict[str, object]:
    return {"id": f"run_{i:08d}", "object": "payroll_run", "reference": f"ref-{i:08d}", "employer": "acme",
            "pay_date": "2026-12-01", "amount": 100_000 + i, "currency": "eur", "status": status, "error_code": None}


def serve(port: int, records: int, drift_every: int) -> None:
    """The sandbox with `records` runs already made (every drift_every-th one COMPLETE)."""
    from adapters.payroll.sandbox import SandboxConfig, bind
    from adapters.payroll.sandbox.server import make_app, server_for
    from adapters.payroll.sandbox.state import Run

    app, state = make_app(SandboxConfig(api_key=KEY, read_only_key=None))
    for i in range(records):
        body = run_body(i, "COMPLETE" if drift_every and i % drift_every == 0 else "SENT")
        run = Run(str(body["id"]), str(body["reference"]), "acme", "2026-12-01", 100_000 + i, "eur", str(body["status"]))
        state.runs[run.id] = run
        state.by_reference[run.reference] = run.id
    server_for(app).run(sockets=[bind("127.0.0.1", port)])


def build_store(path: Path, records: int) -> None:
    from store.database import open_store
    from workbench.services import connections
    from workbench.services.captures import Capture
    from workbench.services.context import ServiceContext
    from workbench.services.ingest import ingest

    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    started = time.perf_counter()
    engine = open_store(f"sqlite:///{path}", create=True, auto_upgrade=True)
    ctx = ServiceContext(engine=engine, actor="user:bench")
    connections.add_connection(ctx, "pay", "payroll", "sandbox")
    from datetime import UTC, datetime
    now = datetime.now(UTC)
    captures = (Capture(now, {"Content-Type": "application/json"},
                        orjson.dumps({"type": "payroll_run.updated", "occurred_at": "2026-11-29T10:00:00+00:00",
                                      "run": run_body(i)}), "file") for i in range(records))
    report = ingest(ctx, "pay", captures, signatures=None)
    engine.dispose()
    print(f"built {path.name}: {report.counts} in {time.perf_counter() - started:.1f} s")


def measure(store: Path, url: str, page_size: int) -> None:
    from adapters.payroll.client import PayrollClient
    from store.database import open_store
    from workbench.services import reconcile
    from workbench.services.context import ServiceContext

    engine = open_store(f"sqlite:///{store}")
    ctx = ServiceContext(engine=engine, actor="user:bench")
    client = PayrollClient(base_url=url, api_key=KEY, timeout_s=30)
    started = time.perf_counter()
    report = reconcile.reconcile(ctx, "pay", client=client, page_size=page_size)
    seconds = time.perf_counter() - started
    client.close()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "peak_rss_mb": peak_mb, **report.as_dict()}))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--drift-every", type=int, default=100)
    parser.add_argument("--page-size", type=int, default=1000)
    parser.add_argument("--rebuild", action="store_true")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)  # a port: be the sandbox
    parser.add_argument("--measure", help=argparse.SUPPRESS)  # a sandbox URL: be the measured run
    parser.add_argument("--store", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.records, args.drift_every)
        return 0
    if args.measure:
        measure(Path(args.store), args.measure, args.page_size)
        return 0
    OUT.mkdir(exist_ok=True)
    store = OUT / f"reconcile-{args.records}.db"
    if args.rebuild or not store.exists():
        build_store(store, args.records)
    else:  # a previous measurement's findings would make this one's "still open": start clean
        import sqlite3
        with sqlite3.connect(store) as db:
            db.execute("DELETE FROM drift_findings")
            db.execute("DELETE FROM reconcile_runs")
    from tests.stripe_servers import free_port
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, "-m", "benchmarks.reconcile_bench", "--serve", str(port),
                               "--records", str(args.records), "--drift-every", str(args.drift_every)])
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                httpx.get(url + "/_admin/health", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.2)
        result = subprocess.run([sys.executable, "-m", "benchmarks.reconcile_bench", "--measure", url,
                                 "--store", str(store), "--page-size", str(args.page_size)],
                                check=True, stdout=subprocess.PIPE)
    finally:
        server.terminate()
        server.wait(timeout=10)
    figures = json.loads(result.stdout)
    rate = figures["records_checked"] / figures["seconds"]
    ok = rate >= TARGET_RATE and figures["peak_rss_mb"] < TARGET_RSS_MB
    print(f"reconcile: {figures['records_checked']:,} records, {figures['provider_objects']:,} provider objects, "
          f"{figures['findings']:,} findings in {figures['seconds']:.1f} s = {rate:,.0f} records/s "
          f"(target >= {TARGET_RATE:,.0f}); peak RSS {figures['peak_rss_mb']:.0f} MB (target < {TARGET_RSS_MB:.0f}): "
          f"{'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
