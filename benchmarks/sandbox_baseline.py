"""The payroll sandbox alone: what the dispatch benchmark's calls cost without the engine.

    .venv/bin/python -m benchmarks.sandbox_baseline                   # 2,000 commands, 8 threads
    .venv/bin/python -m benchmarks.sandbox_baseline --commands 5000 --threads 4
    .venv/bin/python -m benchmarks.sandbox_baseline --url http://127.0.0.1:PORT   # a running sandbox

Per command, the call the dispatcher makes for a first `payroll_run.submit` attempt: the POST
of the run with our reference (`--lookup`: a lookup by reference first, as the client did
before it left lookups to retries), from a bare `httpx.Client` shared by THREADS threads (as
the engine's senders share one client), nothing written anywhere. Started without --url, it
runs `workbench sandbox payroll` in its own process, as `engine_bench` does. Prints
commands/s; `engine_bench` runs this script in its own interpreter as its baseline."""

from __future__ import annotations

import argparse
import subprocess
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx

from benchmarks.engine_bench import KEY, RUN, free_port, start_sandbox


def run(base: str, count: int, threads: int, lookup: bool = False) -> tuple[float, float]:
    """Commands per second, and CPU seconds of this process per command: `count` posts (each
    after a lookup, with `lookup`) over `threads` threads."""
    prefix = uuid.uuid4().hex[:8]
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {KEY}", "Accept": "application/json"},
                      timeout=10) as client:
        def one(i: int) -> None:
            reference = f"op_{prefix}_{i}"
            if lookup:
                found = client.get(f"/v1/payroll_runs/by_reference/{reference}")
                if found.status_code != 404:
                    raise SystemExit(f"lookup answered {found.status_code}")
            made = client.post("/v1/payroll_runs", json={**RUN, "amount": 1000 + i, "reference": reference})
            if made.status_code != 201:
                raise SystemExit(f"submit answered {made.status_code}: {made.text[:200]}")

        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(one, range(50)))  # warm-up: connections open, routes compiled
            started, cpu_started = time.perf_counter(), time.process_time()
            list(pool.map(one, range(50, 50 + count)))
            elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    return count / elapsed, cpu / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--commands", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--lookup", action="store_true", help="a lookup by reference before each POST")
    parser.add_argument("--url", help="a running sandbox (default: start one)")
    args = parser.parse_args()
    sandbox: subprocess.Popen[bytes] | None = None
    base = args.url
    if base is None:
        port = free_port()
        sandbox = start_sandbox(port)
        base = f"http://127.0.0.1:{port}"
    try:
        rate, cpu = run(base, args.commands, args.threads, args.lookup)
    finally:
        if sandbox is not None:
            sandbox.terminate()
            sandbox.wait(10)
    calls = "lookup + POST" if args.lookup else "one POST"
    print(f"sandbox alone: {args.commands:,} commands ({calls} each), {args.threads} threads = "
          f"{rate:,.0f} commands/s, client CPU per command {cpu * 1e6:,.0f} µs")


if __name__ == "__main__":
    main()
