"""The receiver's applier without HTTP: moving spooled deliveries into the store, CPU per delivery.

    .venv/bin/python -m benchmarks.mover_bench                        # 40,000 deliveries, 3 rounds
    .venv/bin/python -m benchmarks.mover_bench --deliveries 20000 --rounds 5

The webhook benchmark (receiver_bench.py) runs the applier beside the request path, where its
cost shows only as a share of two busy cores. This one times it alone, in one process: a spool
of deliveries built by the receiver's own code (the same signed Stripe events as the webhook
benchmark, 4,000 distinct ones taken in turn, so most are redeliveries), then moved into a
fresh embedded store by `Mover.move` in moves of MOVE_ROWS, each applied on the way (dedupe,
mapping, state), as the applier does under load.

Each round moves the same spool into the same fresh store twice: with the spool opened as the
workbench opens it, and with `secure_delete` back at the SQLite build's default (Debian's builds
zero every freed page: docs/benchmarks.md, Round 15). Printed: CPU per delivery (user + system),
and the part spent deleting moved batches from the spool.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import shutil
import sqlite3
import statistics
import sys
import time
from pathlib import Path

from .receiver_bench import EVENTS, bench_store, signed_event, store_env

OUT = Path(__file__).resolve().parent / "out" / "mover"


def build_spool(spool: Path, deliveries: int) -> None:
    """`deliveries` signed deliveries spooled as the receiver spools them (batches of 20)."""
    from workbench.cli.vault_access import CommandVaults
    from workbench.receiver.directory import Directory
    from workbench.receiver.spool import INSERT, open_spool, pack
    from workbench.receiver.writer import GroupWriter, Pending
    from workbench.services.context import open_context

    ctx = open_context()
    directory = Directory(ctx, CommandVaults())
    directory.refresh()
    entry = directory.get("bench")
    assert entry is not None and entry.checker is not None
    writer = GroupWriter(ctx, spool)
    loop = asyncio.new_event_loop()
    now = int(time.time())
    events = [(body.encode(), signature) for body, signature in (signed_event(i, now) for i in range(EVENTS))]
    conn = open_spool(spool, sync_full=True)
    batch: list[Pending] = []
    for i in range(deliveries):
        body, signature = events[i % EVENTS]
        headers = {"host": "127.0.0.1:8080", "content-type": "application/json", "stripe-signature": signature,
                   "content-length": str(len(body))}
        received = writer.now()
        check = entry.checker.check(headers, body, received)
        batch.append(Pending(entry, received, headers, body, check, None, loop.create_future()))
        if len(batch) == 20 or i == deliveries - 1:
            conn.execute(INSERT, (len(batch), pack(writer._rows(batch))))  # the rows the receiver sends
            batch = []
    conn.close()
    loop.close()
    ctx.engine.dispose()


def move_all(spool: Path, build_default: bool) -> dict[str, float]:
    """Move the whole spool; CPU and time spent deleting, per delivery."""
    from workbench.cli.vault_access import CommandVaults
    from workbench.receiver import applier
    from workbench.receiver.mover import Mover, SpoolReader
    from workbench.receiver.spool import open_spool
    from workbench.services.context import open_context

    ctx = open_context(actor="benchmark")
    conn = open_spool(spool)
    if build_default:
        conn.execute("PRAGMA secure_delete=1")  # as Debian's build opens it
    reader = SpoolReader(conn)
    reader.recheck_through = 0  # a fresh spool, not one found after a crash
    mover = Mover(ctx, CommandVaults())
    applier._load_adapters(ctx)
    deleting = 0.0
    delete_through = reader.delete_through

    def timed_delete(seq: int) -> None:
        nonlocal deleting
        started = time.perf_counter()
        delete_through(seq)
        deleting += time.perf_counter() - started

    reader.delete_through = timed_delete  # type: ignore[method-assign]
    moved = 0
    before = resource.getrusage(resource.RUSAGE_SELF)
    while (count := applier._move_once(mover, reader)) > 0:
        moved += count
    after = resource.getrusage(resource.RUSAGE_SELF)
    if count < 0 or sum(mover.verdicts.values()) != moved:
        raise SystemExit(f"the move failed: {dict(mover.verdicts)}")
    conn.close()
    ctx.engine.dispose()
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return {"cpu_us": cpu / moved * 1e6, "delete_us": deleting / moved * 1e6, "moved": moved}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--deliveries", type=int, default=40_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    pristine = OUT / "pristine"
    os.environ.update(bench_store(pristine))
    build_spool(pristine / "receiver-bench.spool", args.deliveries)
    results: dict[str, list[dict[str, float]]] = {"as opened": [], "build default": []}
    run = OUT / "run"
    for number in range(1, args.rounds + 1):
        for label in results:
            shutil.rmtree(run, ignore_errors=True)
            shutil.copytree(pristine, run)
            os.environ.update(store_env(run))
            result = move_all(run / "receiver-bench.spool", label == "build default")
            results[label].append(result)
            print(f"round {number} {label:13}: {result['cpu_us']:5.1f} us CPU a delivery, "
                  f"{result['delete_us']:4.1f} us of it deleting ({result['moved']:,.0f} moved)")
    for label, runs in results.items():
        print(f"{label:13}: median {statistics.median(r['cpu_us'] for r in runs):5.1f} us CPU a delivery, "
              f"{statistics.median(r['delete_us'] for r in runs):4.1f} us deleting")
    with sqlite3.connect(run / "workbench.db") as conn:
        stored = conn.execute("select count(*) from deliveries").fetchone()[0]
    if stored != args.deliveries:
        print(f"stored {stored:,} of {args.deliveries:,} deliveries", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
