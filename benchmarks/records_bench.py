"""`workbench records --json` over 100,000 records: target under 3 s, process start included.

Usage: .venv/bin/python -m benchmarks.records_bench [--records N] [--rebuild]
The store is built once with `workbench demo` and cached under benchmarks/out/.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

OUT = Path(__file__).parent / "out"
WORKBENCH = [sys.executable, "-c", "from workbench.cli.main import main; main()"]
TARGET_S = 3.0


def build_store(path: Path, records: int) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    started = time.perf_counter()
    subprocess.run([*WORKBENCH, "--db", f"sqlite:///{path}", "demo", "--records", str(records)],
                   check=True, stdout=subprocess.DEVNULL)
    print(f"built {path.name} with {records:,} records in {time.perf_counter() - started:.1f} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--rebuild", action="store_true")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    OUT.mkdir(exist_ok=True)
    store = OUT / f"records-{args.records}.db"
    if args.rebuild or not store.exists():
        build_store(store, args.records)
    timings = []
    for _ in range(args.runs):
        started = time.perf_counter()
        result = subprocess.run([*WORKBENCH, "--db", f"sqlite:///{store}", "records", "--json"],
                                check=True, stdout=subprocess.PIPE)
        timings.append(time.perf_counter() - started)
    count = result.stdout.count(b'"provider_refs"')
    best, worst = min(timings), max(timings)
    ok = best < TARGET_S
    print(f"records --json: {count:,} records, best {best:.2f} s, worst {worst:.2f} s "
          f"over {args.runs} runs (target < {TARGET_S} s): {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
