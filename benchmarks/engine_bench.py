"""Sync engine benchmarks.

    .venv/bin/python -m benchmarks.engine_bench                  # both, SQLite
    .venv/bin/python -m benchmarks.engine_bench --commands 5000
    .venv/bin/python -m benchmarks.engine_bench --only idle --connections 50 --seconds 60

* dispatch: COMMANDS `payroll_run.submit` commands in the outbox of a fresh embedded store,
  dispatched by `services.dispatch.dispatch_once` (the engine's dispatch step: claims of 64, 8
  calls in flight) against the payroll sandbox (`workbench sandbox payroll`, its own process, no
  added latency). Each command is one POST at the sandbox (a first attempt: the provider has no
  idempotency keys, so lookups by reference come before retries only) and its share of one
  write transaction per claim here. Then the same sandbox alone (benchmarks/sandbox_baseline: a
  bare client loop making the same POSTs on 8 threads, in its own interpreter), for the ratio.
  Target: 500 commands/s.
* idle: a real `workbench engine` subprocess on a store with CONNECTIONS payroll connections
  and nothing to do; its CPU time (utime + stime from /proc) over SECONDS after a warm-up.
  Target: under 2% of one core.

Exits non-zero when a target is missed."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from store.database import open_store
from workbench.services import command_submit, connections, dispatch, provider_calls, role_bindings, secret_refs
from workbench.services.context import ServiceContext
from workbench.vault import KdfParams, UnlockedVault, create, vault_path

WORKBENCH = str(Path(sys.executable).parent / "workbench")
KEY = "sk_bench_payroll"
PASS = "bench passphrase"
RUN = {"employer": "acme", "pay_date": "2026-12-01", "amount": 250_000, "currency": "eur"}


def start_sandbox(port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen([WORKBENCH, "sandbox", "payroll", "--port", str(port), "--api-key", KEY],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/_admin/ledger", timeout=1)
            return process
        except httpx.HTTPError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit("the payroll sandbox did not start")


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def store(home: Path, connection_count: int, base: str, interval_s: int = 300) -> tuple[ServiceContext, UnlockedVault]:
    os.environ["WORKBENCH_VAULT_DIR"] = str(home / "vault")
    os.environ["WORKBENCH_AUDIT_KEY_FILE"] = str(home / "audit.key")
    url = f"sqlite:///{home / 'workbench.db'}"
    os.environ["WORKBENCH_DB"] = url
    ctx = ServiceContext(engine=open_store(url, create=True, auto_upgrade=True), actor="user:bench")
    role_bindings.grant(ctx, "system:engine", "operator", "bench")  # the first user: admin
    vault = create(vault_path("sandbox"), "sandbox", PASS, params=KdfParams(memory_kib=1024, iterations=1, lanes=1))
    for i in range(connection_count):
        name = f"pay{i}"
        connections.add_connection(ctx, name, "payroll", "sandbox", settings={"sync": {"interval_s": interval_s}})
        provider_calls.set_base_url(ctx, name, base, "bench")
        secret_refs.add_secret(ctx, vault, secret_refs.plan_secret(ctx, name, "api_key", None), KEY, "bench")
    return ctx, vault


def bench_dispatch(count: int) -> bool:
    port = free_port()
    sandbox = start_sandbox(port)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            ctx, vault = store(Path(tmp), 1, f"http://127.0.0.1:{port}")
            command_submit.submit_many(ctx, "pay0", "payroll_run.submit",
                                       [{**RUN, "amount": 1000 + i} for i in range(count)])
            pool = dispatch.Clients(lambda info: provider_calls.open_client(ctx, info.name, {"sandbox": vault}))
            engine_ctx = ctx.as_actor("system:engine")
            senders = ThreadPoolExecutor(8)
            started, cpu_started, sandbox_started = time.perf_counter(), time.process_time(), cpu_seconds(sandbox.pid)
            done = 0
            while done < count:
                report = dispatch.dispatch_once(engine_ctx, pool, limit=64, senders=senders, parallel=8)
                if not report.claimed:
                    break
                done += sum(report.outcomes.values())
            elapsed = time.perf_counter() - started
            cpu, sandbox_cpu = time.process_time() - cpu_started, cpu_seconds(sandbox.pid) - sandbox_started
            senders.shutdown()
            pool.close()
    finally:
        sandbox.terminate()
        sandbox.wait(10)
    rate = done / elapsed
    baseline = subprocess.run([sys.executable, "-m", "benchmarks.sandbox_baseline", "--commands", str(count)],
                              capture_output=True, text=True, check=True).stdout.strip()
    alone = float(baseline.rsplit("=", 1)[1].split()[0].replace(",", ""))
    print(f"dispatch: {done:,} commands in {elapsed:.2f} s = {rate:,.0f} commands/s (target 500), CPU per command: "
          f"{cpu / done * 1e6:,.0f} µs here, {sandbox_cpu / done * 1e6:,.0f} µs in the sandbox\n{baseline}\n"
          f"ratio {rate / alone:.2f}")
    return done == count and rate >= 500


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bench_idle(connection_count: int, seconds: float) -> bool:
    port = free_port()
    sandbox = start_sandbox(port)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            store(Path(tmp), connection_count, f"http://127.0.0.1:{port}", interval_s=3600)
            env = {**os.environ, "WORKBENCH_VAULT_PASSPHRASE": PASS}
            engine = subprocess.Popen([WORKBENCH, "engine"], env=env, stderr=subprocess.DEVNULL)
            try:
                time.sleep(10)  # start-up and the first poll of every connection
                before = cpu_seconds(engine.pid)
                time.sleep(seconds)
                used = cpu_seconds(engine.pid) - before
            finally:
                engine.terminate()
                engine.wait(20)
    finally:
        sandbox.terminate()
        sandbox.wait(10)
    share = used / seconds
    print(f"idle: {connection_count} connections, {used:.2f} CPU s in {seconds:.0f} s = {share:.2%} of a core "
          "(target under 2%)")
    return share < 0.02


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--commands", type=int, default=2000)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--only", choices=["dispatch", "idle"])
    args = parser.parse_args()
    ok = True
    if args.only in (None, "dispatch"):
        ok = bench_dispatch(args.commands) and ok
    if args.only in (None, "idle"):
        ok = bench_idle(args.connections, args.seconds) and ok
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
