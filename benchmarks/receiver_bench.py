"""Webhook receiver throughput: `workbench listen` against a bare endpoint, same stack, same run.

    .venv/bin/python -m benchmarks.receiver_bench                  # 3 rounds of 10 s per side, 32 connections
    .venv/bin/python -m benchmarks.receiver_bench --rounds 5 --duration 10 --connections 32

Load comes from `wrk` (the Debian package; `apt-get install -y wrk`) with a Lua script that
POSTs signed Stripe deliveries: a few thousand distinct events, each signed with the
connection's webhook secret just before the run (well inside the 300 s tolerance), taken in
turn. Two servers run side by side and take turns under the load, round after round (the
machine's speed drifts: a single pair of runs minutes apart compared that drift as much as the
servers), each round starting once the receiver has applied everything from the last:

* bare: a Starlette endpoint on uvicorn (the receiver's settings) that answers 200 without
  reading the body or storing anything;
* receiver: `workbench listen` on a fresh embedded SQLite store (WAL, synchronous FULL) with one
  Stripe connection and one webhook secret: every delivery signature-checked and stored before
  it is answered.

Rates are over all rounds (requests / seconds), p99 the worst round's. Then every delivery
wrk counted as answered 2xx is looked for in the store (none may be missing). The deliveries
not yet applied when a round's load stopped (still in the receiver's spool, or held) are
printed too: the applier's lag, which the 2xx figures alone would hide; the oldest of them
must have been received less than a second before (/healthz `behind_s`). Targets (issue 10):
at least 8,000 deliveries/s, at least 0.4 of bare, p99 under 20 ms. Exits non-zero when a
target is missed.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

OUT = Path(__file__).resolve().parent / "out" / "receiver"
SECRET = "whsec_benchmark_signing_secret"
TARGET_RATE = 8_000
TARGET_RATIO = 0.4
TARGET_P99_MS = 20.0
EVENTS = 4000
WORKBENCH = str(Path(sys.executable).parent / "workbench")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def bare_app() -> object:
    from starlette.applications import Starlette
    from starlette.responses import Response
    from starlette.routing import Route

    async def hook(request: object) -> Response:
        return Response(b'{"ok":true}', media_type="application/json")

    return Starlette(routes=[Route("/hooks/{connection}", hook, methods=["POST"])])


def serve_bare(port: int) -> None:
    import uvicorn

    uvicorn.run(bare_app(), host="127.0.0.1", port=port, log_level="warning", access_log=False,  # type: ignore[arg-type]
                lifespan="off", server_header=False, date_header=False, proxy_headers=False)


def store_env(out: Path) -> dict[str, str]:
    """The variables that open the benchmark store kept in `out` (its file, vault and audit key)."""
    return {"WORKBENCH_DB": f"sqlite:///{out / 'workbench.db'}", "WORKBENCH_VAULT_DIR": str(out / "vault"),
            "WORKBENCH_AUDIT_KEY_FILE": str(out / "audit.key"), "WORKBENCH_VAULT_PASSPHRASE": "benchmark passphrase"}


def bench_store(out: Path) -> dict[str, str]:
    """A fresh embedded store in `out` with one Stripe connection, `bench`, and its webhook
    secret in the vault; the environment that opens it."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    env = {**os.environ, **store_env(out)}
    for command, stdin in ((["db", "upgrade"], None), (["vault", "init"], None),
                           (["connection", "add", "bench", "--provider", "stripe"], None),
                           (["connection", "secret", "add", "bench", "--kind", "webhook_secret"], SECRET)):
        subprocess.run([WORKBENCH, *command], env=env, input=stdin, text=True, check=True, capture_output=True)
    return env


def signed_event(i: int, now: int) -> tuple[str, str]:
    """Benchmark event `i` (a payment intent processing) and its Stripe-Signature header."""
    import orjson
    import stripe

    body = orjson.dumps({"id": f"evt_bench{i:06d}", "object": "event", "type": "payment_intent.processing",
                         "created": now, "livemode": False,
                         "data": {"object": {"id": f"pi_bench{i:06d}", "object": "payment_intent",
                                             "status": "processing", "amount": 2000, "currency": "usd"}}}).decode()
    return body, stripe.WebhookSignature.generate_signature_header(body, SECRET, timestamp=now)


def lua_script(path: Path) -> None:
    """wrk's request generator: signed deliveries, in turn."""
    now = int(time.time())
    lines = ["local bodies = {}", "local signatures = {}"]
    for i in range(EVENTS):
        body, header = signed_event(i, now)
        lines.append(f"bodies[{i + 1}] = [==[{body}]==]")
        lines.append(f'signatures[{i + 1}] = "{header}"')
    lines += [
        "local n = 0",
        "request = function()",
        f"  n = n % {EVENTS} + 1",
        '  return wrk.format("POST", nil, {["Content-Type"] = "application/json", '
        '["Stripe-Signature"] = signatures[n]}, bodies[n])',
        "end",
    ]
    path.write_text("\n".join(lines) + "\n")


def wait_ready(url: str, process: subprocess.Popen[bytes]) -> None:
    import httpx

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the server exited ({process.returncode}) before it was ready")
        try:
            httpx.post(url, content=b"{}", timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.05)
    raise SystemExit("the server did not become ready")


def run_wrk(url: str, script: Path, connections: int, duration: int) -> dict[str, float]:
    done = subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{duration}s", "--latency", "-s", str(script), url],
                          capture_output=True, text=True, check=True)
    text = done.stdout
    requests = int(re.search(r"(\d+) requests in", text).group(1))  # type: ignore[union-attr]
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    errors = re.search(r"Socket errors: (.*)", text)
    p99_value, p99_unit = re.search(r"99%\s+([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    p99_ms = float(p99_value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[p99_unit]
    if errors:
        print(f"  wrk socket errors: {errors.group(1)}")
    return {"requests": requests, "rate": rate, "non2xx": int(non2xx.group(1)) if non2xx else 0, "p99_ms": p99_ms}


def held_now(db: Path, base: str) -> tuple[int, float]:
    """Deliveries stored but not yet applied, read while the receiver still runs: those still
    in its spool (its /healthz says) and any held in the store; and how long ago the oldest
    still in the spool was received (/healthz `behind_s`)."""
    import httpx

    health = httpx.get(f"{base}/healthz", timeout=10).json()
    with sqlite3.connect(db) as conn:
        held: int = conn.execute("select count(*) from deliveries where verdict = 'held'").fetchone()[0]
    return health["spooled"] + held, float(health["behind_s"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=10, help="seconds of load per side and round")
    parser.add_argument("--rounds", type=int, default=3, help="bare then receiver, this many times")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--bare", type=int, help=argparse.SUPPRESS)  # internal: serve the bare endpoint
    args = parser.parse_args()
    if args.bare:
        serve_bare(args.bare)
        return
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (apt-get install -y wrk)")
    env = bench_store(OUT)
    db = OUT / "workbench.db"
    script = OUT / "post.lua"
    lua_script(script)

    ports = {"bare": free_port(), "receiver": free_port()}
    servers = {"bare": subprocess.Popen([sys.executable, "-m", "benchmarks.receiver_bench", "--bare", str(ports["bare"])],
                                        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
               "receiver": subprocess.Popen([WORKBENCH, "listen", "--port", str(ports["receiver"])], env=env,
                                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)}
    rounds: list[dict[str, dict[str, float]]] = []
    try:
        for side, server in servers.items():
            wait_ready(f"http://127.0.0.1:{ports[side]}/hooks/bench", server)
        for number in range(1, args.rounds + 1):
            results: dict[str, dict[str, float]] = {}
            for side in ("bare", "receiver"):
                # Each side alone on the machine: the receiver's applier done with the last round.
                settle(db, f"http://127.0.0.1:{ports['receiver']}")
                results[side] = r = run_wrk(f"http://127.0.0.1:{ports[side]}/hooks/bench", script, args.connections,
                                            args.duration)
                if side == "receiver":  # what the load left unapplied (the applier's lag)
                    r["held"], r["behind_s"] = held_now(db, f"http://127.0.0.1:{ports['receiver']}")
                print(f"round {number} {side:8}: {r['rate']:>9,.0f} requests/s  p99 {r['p99_ms']:5.1f} ms  "
                      f"({r['requests']:,.0f} requests, {r['non2xx']:,.0f} not 2xx"
                      + (f"; {r['held']:,.0f} not yet applied when the load stopped, the oldest received "
                         f"{r['behind_s']:.2f} s before)" if side == "receiver" else ")"))
            print(f"round {number} ratio   : {results['receiver']['rate'] / results['bare']['rate']:.2f}")
            rounds.append(results)
    finally:
        for server in servers.values():
            server.terminate()
            server.wait(timeout=120)
    report(db, rounds)


def settle(db: Path, base: str) -> None:
    deadline = time.monotonic() + 120
    while held_now(db, base)[0] and time.monotonic() < deadline:
        time.sleep(0.2)


def report(db: Path, rounds: list[dict[str, dict[str, float]]]) -> None:
    """Rates over all rounds (requests / time), the worst round's p99, and the checks."""
    with sqlite3.connect(db) as conn:
        stored = conn.execute("select count(*), sum(signature_verdict = 'verified'), sum(verdict = 'held') "
                              "from deliveries").fetchone()

    def total(side: str) -> dict[str, float]:
        runs = [results[side] for results in rounds]
        seconds = sum(run["requests"] / run["rate"] for run in runs)
        return {"requests": sum(run["requests"] for run in runs), "non2xx": sum(run["non2xx"] for run in runs),
                "rate": sum(run["requests"] for run in runs) / seconds, "p99_ms": max(run["p99_ms"] for run in runs),
                "held": max(run.get("held", 0) for run in runs),
                "behind_s": max(run.get("behind_s", 0.0) for run in runs)}

    receiver, bare = total("receiver"), total("bare")
    answered = receiver["requests"] - receiver["non2xx"]
    print(f"bare    : {bare['rate']:>9,.0f} requests/s over {len(rounds)} rounds, worst p99 {bare['p99_ms']:.1f} ms")
    print(f"receiver: {receiver['rate']:>9,.0f} requests/s over {len(rounds)} rounds, worst p99 {receiver['p99_ms']:.1f} ms")
    print(f"stored: {stored[0]:,} deliveries ({stored[1]:,} verified, {stored[2]:,} still held at stop); "
          f"answered 2xx: {answered:,.0f}")
    print(f"not yet applied when a round's load stopped: at most {receiver['held']:,.0f} deliveries "
          f"(about {receiver['held'] / receiver['rate']:.1f} s of the load), the oldest received at most "
          f"{receiver['behind_s']:.2f} s before")
    ratio = receiver["rate"] / bare["rate"]
    checks = [(f"rate  {receiver['rate']:,.0f}/s (target >= {TARGET_RATE:,}/s)", receiver["rate"] >= TARGET_RATE),
              (f"ratio {ratio:.2f} of bare (target >= {TARGET_RATIO})", ratio >= TARGET_RATIO),
              (f"p99   {receiver['p99_ms']:.1f} ms (target < {TARGET_P99_MS:.0f} ms)", receiver["p99_ms"] < TARGET_P99_MS),
              (f"applied within a second (the oldest not yet applied {receiver['behind_s']:.2f} s old at most)",
               0 <= receiver["behind_s"] < 1.0),
              (f"every 2xx stored ({stored[0]:,} >= {answered:,.0f})", stored[0] >= answered and receiver["non2xx"] == 0)]
    for line, ok in checks:
        print(f"{line}: {'PASS' if ok else 'FAIL'}")
    if not all(ok for _, ok in checks):
        sys.exit(1)


if __name__ == "__main__":
    main()
