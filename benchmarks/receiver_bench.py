"""Webhook receiver throughput: `workbench listen` against a bare endpoint, same stack, same run.

    .venv/bin/python -m benchmarks.receiver_bench                  # 10 s per side, 32 connections
    .venv/bin/python -m benchmarks.receiver_bench --duration 20 --connections 32

Load comes from `wrk` (the Debian package; `apt-get install -y wrk`) with a Lua script that
POSTs signed Stripe deliveries: a few thousand distinct events, each signed with the
connection's webhook secret just before the run (well inside the 300 s tolerance), taken in
turn. Two servers are measured one after the other on the same machine:

* bare: a Starlette endpoint on uvicorn (the receiver's settings) that answers 200 without
  reading the body or storing anything;
* receiver: `workbench listen` on a fresh embedded SQLite store (WAL, synchronous FULL) with one
  Stripe connection and one webhook secret: every delivery signature-checked and stored before
  it is answered.

Then every delivery wrk counted as answered 2xx is looked for in the store (none may be
missing). The deliveries still held when the load stopped (stored, not yet applied) are
printed too: the follower's lag, which the 2xx figures alone would hide. Targets (issue 10):
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
                lifespan="off", server_header=False, date_header=False)


def lua_script(path: Path) -> None:
    """wrk's request generator: signed deliveries, in turn."""
    import orjson
    import stripe

    now = int(time.time())
    lines = ["local bodies = {}", "local signatures = {}"]
    for i in range(EVENTS):
        body = orjson.dumps({"id": f"evt_bench{i:06d}", "object": "event", "type": "payment_intent.processing",
                             "created": now, "livemode": False,
                             "data": {"object": {"id": f"pi_bench{i:06d}", "object": "payment_intent",
                                                 "status": "processing", "amount": 2000, "currency": "usd"}}}).decode()
        header = stripe.WebhookSignature.generate_signature_header(body, SECRET, timestamp=now)
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


def held_now(db: Path, base: str) -> int:
    """Deliveries stored but not yet applied, read while the receiver still runs: those still
    in its spool (its /healthz says) and any held in the store."""
    import httpx

    spooled: int = httpx.get(f"{base}/healthz", timeout=10).json()["spooled"]
    with sqlite3.connect(db) as conn:
        held: int = conn.execute("select count(*) from deliveries where verdict = 'held'").fetchone()[0]
    return spooled + held


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--bare", type=int, help=argparse.SUPPRESS)  # internal: serve the bare endpoint
    args = parser.parse_args()
    if args.bare:
        serve_bare(args.bare)
        return
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (apt-get install -y wrk)")
    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir(parents=True)
    db = OUT / "workbench.db"
    env = {**os.environ, "WORKBENCH_DB": f"sqlite:///{db}", "WORKBENCH_VAULT_DIR": str(OUT / "vault"),
           "WORKBENCH_AUDIT_KEY_FILE": str(OUT / "audit.key"), "WORKBENCH_VAULT_PASSPHRASE": "benchmark passphrase"}
    for command, stdin in ((["db", "upgrade"], None), (["vault", "init"], None),
                           (["connection", "add", "bench", "--provider", "stripe"], None),
                           (["connection", "secret", "add", "bench", "--kind", "webhook_secret"], SECRET)):
        subprocess.run([WORKBENCH, *command], env=env, input=stdin, text=True, check=True, capture_output=True)
    script = OUT / "post.lua"
    lua_script(script)

    results: dict[str, dict[str, float]] = {}
    for side in ("bare", "receiver"):
        port = free_port()
        command = ([sys.executable, "-m", "benchmarks.receiver_bench", "--bare", str(port)] if side == "bare"
                   else [WORKBENCH, "listen", "--port", str(port)])
        server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            url = f"http://127.0.0.1:{port}/hooks/bench"
            wait_ready(url, server)
            results[side] = run_wrk(url, script, args.connections, args.duration)
            if side == "receiver":  # what the load left unapplied (the follower's lag), before the stop applies it
                results[side]["held"] = held_now(db, f"http://127.0.0.1:{port}")
        finally:
            server.terminate()
            server.wait(timeout=60)
        r = results[side]
        print(f"{side:8}: {r['rate']:>9,.0f} requests/s  p99 {r['p99_ms']:.1f} ms  "
              f"({r['requests']:,.0f} requests, {r['non2xx']:,.0f} not 2xx)")

    with sqlite3.connect(db) as conn:
        stored = conn.execute("select count(*), sum(signature_verdict = 'verified'), sum(verdict = 'held') "
                              "from deliveries").fetchone()
    receiver, bare = results["receiver"], results["bare"]
    answered = receiver["requests"] - receiver["non2xx"]
    print(f"stored: {stored[0]:,} deliveries ({stored[1]:,} verified, {stored[2]:,} still held at stop); "
          f"answered 2xx: {answered:,.0f}")
    print(f"held when the load stopped: {receiver['held']:,.0f} deliveries "
          f"(about {receiver['held'] / receiver['rate']:.1f} s of the load not yet applied)")
    ratio = receiver["rate"] / bare["rate"]
    checks = [(f"rate  {receiver['rate']:,.0f}/s (target >= {TARGET_RATE:,}/s)", receiver["rate"] >= TARGET_RATE),
              (f"ratio {ratio:.2f} of bare (target >= {TARGET_RATIO})", ratio >= TARGET_RATIO),
              (f"p99   {receiver['p99_ms']:.1f} ms (target < {TARGET_P99_MS:.0f} ms)", receiver["p99_ms"] < TARGET_P99_MS),
              (f"every 2xx stored ({stored[0]:,} >= {answered:,.0f})", stored[0] >= answered and receiver["non2xx"] == 0)]
    for line, ok in checks:
        print(f"{line}: {'PASS' if ok else 'FAIL'}")
    if not all(ok for _, ok in checks):
        sys.exit(1)


if __name__ == "__main__":
    main()
