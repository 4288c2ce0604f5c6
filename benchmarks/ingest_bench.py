"""Ingest throughput and memory benchmark.

    .venv/bin/python -m benchmarks.ingest_bench                     # 200,000 deliveries
    .venv/bin/python -m benchmarks.ingest_bench --deliveries 64000
    .venv/bin/python -m benchmarks.ingest_bench --rss               # 1,000,000 deliveries, peak RSS
    .venv/bin/python -m benchmarks.ingest_bench --encrypted --repeat 3   # plain vs encrypted payloads

Generates a capture file once with the Stripe simulator (cached under benchmarks/out/), then,
on that same file and in the same run:

* the baseline: bare `sqlite3`, `json.loads` of each line and one INSERT per delivery
  (received_at and body) into a WAL / synchronous=NORMAL file, committing every 5,000;
* the pipeline: `workbench.services.ingest.ingest` reading the file through `CaptureReader`
  into a fresh embedded store made by `store.database.open_store` (with its reader process
  on the second core, as `workbench ingest` of a capture file; WORKBENCH_INGEST_READER=0 turns
  it off).

Each runs in its own subprocess (so neither the generator nor the other run counts towards its
memory), on a file-backed database under benchmarks/out/. Throughput targets: at least 20,000
deliveries/s and at least 0.2 of the baseline. `--rss` checks the ingesting process's peak RSS
(ru_maxrss) stays under 250 MB over 1,000,000 deliveries, and prints its RSS as ingest
progresses so growth shows. `--encrypted` alternates the pipeline into a plain connection
and into one that encrypts its payloads (`connection add --encrypt-payloads`, its vault
unlocked before the clock starts) and checks the encrypted rate keeps at least 0.8 of the
plain one: the median over rounds of each round's encrypted/plain ratio (neighbouring runs
see the same load on a shared machine, where one lucky run would skew a best-of comparison).
Exits non-zero when a target is missed.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import time
from itertools import islice
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent / "out"
TARGET_RATE = 20_000
TARGET_RATIO = 0.2
TARGET_RSS_MB = 250
TARGET_ENCRYPTED_RATIO = 0.8
SEED = 7
BASELINE_COMMIT_EVERY = 5000


# --------------------------------------------------------------------------- capture file

def capture_file(deliveries: int, seed: int = SEED) -> Path:
    """The cached capture file with exactly `deliveries` lines (generated on first use)."""
    path = OUT / f"stripe-captures-{deliveries}-seed{seed}.jsonl"
    if path.exists():
        return path
    import orjson

    from adapters.stripe.simulator import SimulatorSettings, captures

    OUT.mkdir(parents=True, exist_ok=True)
    # ~3.2 deliveries per payment intent; ask for a few more intents than needed and cut.
    settings = SimulatorSettings(intents=deliveries // 3 + 100, seed=seed)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    started = time.perf_counter()
    count = 0
    with open(tmp, "wb") as out:
        for capture in islice(captures(settings), deliveries):
            out.write(orjson.dumps(capture) + b"\n")
            count += 1
    if count != deliveries:
        tmp.unlink()
        raise SystemExit(f"simulator produced {count} deliveries, wanted {deliveries}")
    os.replace(tmp, path)
    print(f"generated {path.name} ({count:,} deliveries, {path.stat().st_size / 1e6:.0f} MB) "
          f"in {time.perf_counter() - started:.1f}s", flush=True)
    return path


# --------------------------------------------------------------------------- children

def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def run_baseline(path: Path, db: Path) -> dict[str, Any]:
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("CREATE TABLE deliveries (id INTEGER PRIMARY KEY, received_at TEXT NOT NULL, body TEXT NOT NULL)")
    insert = "INSERT INTO deliveries (received_at, body) VALUES (?, ?)"
    loads, execute = json.loads, conn.execute
    count = 0
    started = time.perf_counter()
    execute("BEGIN")
    with open(path, "rb") as f:
        for line in f:
            obj = loads(line)
            execute(insert, (obj["received_at"], obj["body"]))
            count += 1
            if count % BASELINE_COMMIT_EVERY == 0:
                execute("COMMIT")
                execute("BEGIN")
    execute("COMMIT")
    elapsed = time.perf_counter() - started
    conn.close()
    return {"deliveries": count, "seconds": elapsed, "maxrss_mb": _maxrss_mb()}


def run_pipeline(path: Path, db: Path, batch_size: int | None, encrypted: bool = False) -> dict[str, Any]:
    from store.database import open_store
    from workbench.cli.settings import reader_process_wanted
    from workbench.services.captures import CaptureReader
    from workbench.services.connections import add_connection
    from workbench.services.context import ServiceContext
    from workbench.services.ingest import DEFAULT_BATCH, ingest
    from workbench.services.payload_settings import PayloadChange, add_with_payload_settings
    from workbench.vault import KdfParams, UnlockedVault, create, vault_path

    # The audit key (and the header MAC key derived from it) and the vault beside the database.
    os.environ["WORKBENCH_AUDIT_KEY_FILE"] = str(db.with_name("audit.key"))
    os.environ["WORKBENCH_VAULT_DIR"] = str(db.parent / "vault")
    engine = open_store(f"sqlite:///{db}")
    ctx = ServiceContext(engine=engine, actor="user:bench")
    vaults: dict[str, UnlockedVault] = {}
    if encrypted:  # unlocked before the clock starts, as the CLI does before ingesting
        vaults["sandbox"] = create(vault_path("sandbox"), "sandbox", "bench-passphrase",
                                   params=KdfParams(memory_kib=1024, iterations=1, lanes=1))
        add_with_payload_settings(ctx, "bench", "stripe", "sandbox", "bench", PayloadChange(encrypt=True), vaults)
    else:
        add_connection(ctx, "bench", "stripe")
    total = sum(1 for _ in open(path, "rb"))
    samples: list[tuple[int, float]] = []
    next_sample = [0]

    def progress(report: Any) -> None:
        done = report.total
        if done >= next_sample[0]:
            samples.append((done, _rss_mb()))
            next_sample[0] = done + max(total // 10, 1)

    rss_start = _rss_mb()
    cpu_start = _cpu_seconds()
    started = time.perf_counter()
    with open(path, "rb") as f:
        reader = CaptureReader(f)
        report = ingest(ctx, "bench", reader, progress=progress, batch_size=batch_size or DEFAULT_BATCH,
                        reader_process=reader_process_wanted(), vaults=vaults)
    elapsed = time.perf_counter() - started
    cpu = _cpu_seconds() - cpu_start
    engine.dispose()
    reader_rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # the reader process, if any
    return {"deliveries": report.total, "seconds": elapsed, "counts": dict(report.counts),
            "bad_lines": len(reader.bad_lines), "maxrss_mb": _maxrss_mb(), "reader_maxrss_mb": reader_rss,
            "rss_start_mb": rss_start, "rss_samples": samples, "cpu_seconds": cpu}


def _cpu_seconds() -> float:
    """CPU time of this process and its finished children (the reader process): less moved by
    other work on a shared machine than wall time."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _child(kind: str, path: Path, batch_size: int | None) -> dict[str, Any]:
    """Run one measurement in a fresh interpreter, on a fresh database file."""
    workdir = OUT / f"run-{os.getpid()}-{kind}"
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    cmd = [sys.executable, "-m", "benchmarks.ingest_bench", "--child", kind, "--file", str(path),
           "--db", str(workdir / "bench.db")]
    if batch_size:
        cmd += ["--batch-size", str(batch_size)]
    try:
        done = subprocess.run(cmd, cwd=Path(__file__).resolve().parent.parent, capture_output=True, text=True)
        if done.returncode != 0:
            sys.stderr.write(done.stderr)
            raise SystemExit(f"{kind} run failed (exit {done.returncode})")
        return json.loads(done.stdout.strip().splitlines()[-1])
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


# --------------------------------------------------------------------------- main

def _check(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ingest_bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--deliveries", type=int, default=None,
                        help="deliveries in the capture file (default 200,000; 1,000,000 with --rss)")
    parser.add_argument("--rss", action="store_true",
                        help=f"peak-RSS check: ingest the file and require peak RSS < {TARGET_RSS_MB} MB")
    parser.add_argument("--batch-size", type=int, default=None, help="ingest batch size (default: ingest's own)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="run baseline and pipeline alternately this many times; the best of each counts")
    parser.add_argument("--encrypted", action="store_true",
                        help=f"pipeline into a plain vs an encrypting connection, alternately "
                             f"(target: encrypted >= {TARGET_ENCRYPTED_RATIO} of plain)")
    parser.add_argument("--child", choices=["baseline", "pipeline", "encrypted"], help=argparse.SUPPRESS)
    parser.add_argument("--file", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--db", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        result = (run_baseline(args.file, args.db) if args.child == "baseline"
                  else run_pipeline(args.file, args.db, args.batch_size, encrypted=args.child == "encrypted"))
        print(json.dumps(result))
        return 0

    deliveries = args.deliveries or (1_000_000 if args.rss else 200_000)
    path = capture_file(deliveries)
    print(f"capture file: {path} ({deliveries:,} deliveries)", flush=True)

    if args.rss:
        result = _child("pipeline", path, args.batch_size)
        rate = result["deliveries"] / result["seconds"]
        print(f"pipeline: {result['deliveries']:,} deliveries in {result['seconds']:.1f}s = {rate:,.0f}/s; "
              f"verdicts {result['counts']}")
        print("RSS as ingest progressed (deliveries: MB): start " f"{result['rss_start_mb']:.0f}, "
              + ", ".join(f"{n:,}: {mb:.0f}" for n, mb in result["rss_samples"]))
        ok = (result["maxrss_mb"] < TARGET_RSS_MB and result["reader_maxrss_mb"] < TARGET_RSS_MB
              and result["deliveries"] == deliveries)
        print(f"peak RSS: ingesting process {result['maxrss_mb']:.0f} MB, reader process "
              f"{result['reader_maxrss_mb']:.0f} MB (target < {TARGET_RSS_MB} MB each): {_check(ok)}")
        return 0 if ok else 1

    if args.encrypted:
        return _plain_vs_encrypted(path, deliveries, args.repeat, args.batch_size)

    baselines, pipelines = [], []
    for round_no in range(1, args.repeat + 1):
        base = _child("baseline", path, None)
        baselines.append(base)
        print(f"[{round_no}] baseline: {base['deliveries'] / base['seconds']:,.0f} deliveries/s "
              f"({base['seconds']:.2f}s)", flush=True)
        pipe = _child("pipeline", path, args.batch_size)
        pipelines.append(pipe)
        print(f"[{round_no}] pipeline: {pipe['deliveries'] / pipe['seconds']:,.0f} deliveries/s "
              f"({pipe['seconds']:.2f}s, peak RSS {pipe['maxrss_mb']:.0f} MB, reader process "
              f"{pipe['reader_maxrss_mb']:.0f} MB)", flush=True)
        if pipe["deliveries"] != deliveries:
            print(f"pipeline ingested {pipe['deliveries']:,} of {deliveries:,} deliveries "
                  f"({pipe['bad_lines']} bad lines)")
            return 1
    base_rate = max(b["deliveries"] / b["seconds"] for b in baselines)
    pipe_rate = max(p["deliveries"] / p["seconds"] for p in pipelines)
    ratio = pipe_rate / base_rate
    print(f"verdicts: {dict(sorted(pipelines[-1]['counts'].items()))}")
    print(f"baseline (bare sqlite3): {base_rate:,.0f} deliveries/s")
    print(f"pipeline (ingest):       {pipe_rate:,.0f} deliveries/s")
    print(f"rate  {pipe_rate:,.0f}/s  (target >= {TARGET_RATE:,}/s): {_check(pipe_rate >= TARGET_RATE)}")
    print(f"ratio {ratio:.3f}       (target >= {TARGET_RATIO}):     {_check(ratio >= TARGET_RATIO)}")
    return 0 if pipe_rate >= TARGET_RATE and ratio >= TARGET_RATIO else 1


def _plain_vs_encrypted(path: Path, deliveries: int, repeat: int, batch_size: int | None) -> int:
    """The pipeline into a plain and into an encrypting connection, alternately, in one run."""
    rates: dict[str, list[float]] = {"pipeline": [], "encrypted": []}
    cpu: dict[str, list[float]] = {"pipeline": [], "encrypted": []}
    verdicts: dict[str, Any] = {}
    for round_no in range(1, repeat + 1):
        for kind in ("pipeline", "encrypted"):
            result = _child(kind, path, batch_size)
            if result["deliveries"] != deliveries:
                print(f"{kind} ingested {result['deliveries']:,} of {deliveries:,} deliveries")
                return 1
            rate = result["deliveries"] / result["seconds"]
            rates[kind].append(rate)
            cpu[kind].append(result["cpu_seconds"])
            verdicts[kind] = dict(sorted(result["counts"].items()))
            print(f"[{round_no}] {'plain' if kind == 'pipeline' else kind}: {rate:,.0f} deliveries/s "
                  f"({result['seconds']:.2f}s, CPU {result['cpu_seconds']:.2f}s in both processes, "
                  f"peak RSS {result['maxrss_mb']:.0f} MB)", flush=True)
    if verdicts["pipeline"] != verdicts["encrypted"]:
        print(f"verdicts differ: plain {verdicts['pipeline']}, encrypted {verdicts['encrypted']}")
        return 1
    plain, encrypted = max(rates["pipeline"]), max(rates["encrypted"])
    paired = sorted(e / p for p, e in zip(rates["pipeline"], rates["encrypted"]))
    ratio = statistics.median(paired)
    print(f"verdicts (both): {verdicts['pipeline']}")
    print(f"plain {plain:,.0f}/s, encrypted {encrypted:,.0f}/s (best of {repeat} each: ratio {encrypted / plain:.3f})")
    print(f"each round's encrypted/plain: {', '.join(f'{r:.3f}' for r in paired)}")
    print(f"CPU per delivery: plain {min(cpu['pipeline']) / deliveries * 1e6:.1f} µs, encrypted "
          f"{min(cpu['encrypted']) / deliveries * 1e6:.1f} µs (least of each; CPU ratio "
          f"{min(cpu['pipeline']) / min(cpu['encrypted']):.3f})")
    print(f"median ratio {ratio:.3f} (target >= {TARGET_ENCRYPTED_RATIO}): {_check(ratio >= TARGET_ENCRYPTED_RATIO)}")
    return 0 if ratio >= TARGET_ENCRYPTED_RATIO else 1


if __name__ == "__main__":
    sys.exit(main())
