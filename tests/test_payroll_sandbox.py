"""The payroll sandbox (a real HTTP server, started once for the module on a free port) driven
through the payroll adapter's own client: every chaos knob, every error class classified, the
ledger as the witness of side effects, webhooks signed and delivered (duplicated, reordered),
and those deliveries through the real `workbench ingest`, deduplicated by payload hash."""

from __future__ import annotations

import base64
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from click.testing import CliRunner
from standardwebhooks.webhooks import Webhook

from adapters.payroll.sandbox import Chaos, SandboxConfig, bind
from adapters.payroll.sandbox.server import make_app, server_for
from adapters.protocol import WebhookSecret
from adapters.registry import default_registry
from workbench.cli.main import cli
from workbench.domain.taxonomy import Category

SECRET = "whsec_" + base64.b64encode(b"sandbox-webhook-secret-32-bytes!").decode()
KEY, READ_ONLY = "sk_test_key", "rk_test_key"
RUN = {"employer": "acme", "pay_date": "2026-12-01", "amount": 250_000, "currency": "eur"}
WORKBENCH = Path(sys.executable).with_name("workbench")
adapter: Any = default_registry().get("payroll")


class Receiver:
    """A webhook target: stores each request, lets a test wait for a count."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.arrived = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                with receiver.arrived:
                    receiver.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
                    receiver.arrived.notify_all()
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/pay"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, count: int) -> list[tuple[dict[str, str], bytes]]:
        with self.arrived:
            assert self.arrived.wait_for(lambda: len(self.requests) >= count, timeout=10), self.requests
            return list(self.requests)

    def clear(self) -> None:
        with self.arrived:
            self.requests.clear()


@pytest.fixture(scope="module")
def sandbox() -> Iterator[str]:
    sock = bind("127.0.0.1", 0)
    app, _ = make_app(SandboxConfig(api_key=KEY, read_only_key=READ_ONLY, webhook_secret=SECRET))
    server = server_for(app)
    # The socket listens already: requests queue until the server takes them, no wait needed.
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    server.should_exit = True
    thread.join(timeout=10)
    assert not thread.is_alive()


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    target = Receiver()
    yield target
    target.server.shutdown()


@pytest.fixture(autouse=True)
def calm(request: pytest.FixtureRequest) -> None:
    """Every test starts without chaos (those not using the sandbox skip this)."""
    if "sandbox" in request.fixturenames:
        set_chaos(request.getfixturevalue("sandbox"), **Chaos().model_dump())


def set_chaos(base: str, **knobs: Any) -> dict[str, Any]:
    response = httpx.post(base + "/_admin/chaos", json=knobs)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def ledger(base: str, action: str | None = None) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = httpx.get(base + "/_admin/ledger").json()["entries"]
    return [e for e in entries if action is None or e["action"] == action]


def advance(base: str, run_id: str, status: str, error_code: str | None = None) -> None:
    response = httpx.post(f"{base}/_admin/runs/{run_id}/status", json={"status": status, "error_code": error_code})
    assert response.status_code == 200, response.text


def client(base: str, key: str | None = KEY, timeout_s: float = 5.0) -> Any:
    return adapter.client(base_url=base, api_key=key, timeout_s=timeout_s)


def submit(base: str, reference: str, key: str | None = KEY, timeout_s: float = 5.0, **payload: Any) -> Any:
    api = client(base, key, timeout_s)
    try:
        return api.send("payroll_run.submit", {**RUN, **payload}, reference=reference, idempotency_key=None)
    finally:
        api.close()


def created(base: str, reference: str) -> int:
    return len([e for e in ledger(base, "run.created") if e["reference"] == reference])


# -- the API without chaos ------------------------------------------------------------------------

def test_submit_lookup_and_cancel(sandbox):
    result = submit(sandbox, "op_plain")
    assert result.outcome.category is None and result.status_code == 201
    assert result.body["status"] == "SENT" and result.body["reference"] == "op_plain"
    api = client(sandbox)
    found = api.lookup("op_plain")
    assert found.outcome.category is None and found.body["id"] == result.body["id"]
    cancelled = api.send("payroll_run.cancel", {"run_id": result.body["id"]}, reference="op_cancel",
                         idempotency_key=None)
    assert cancelled.outcome.category is None and cancelled.body["status"] == "CANCELLED"
    assert [e["action"] for e in ledger(sandbox) if e.get("reference") == "op_plain"] == ["run.created", "run.cancelled"]
    with pytest.raises(ValueError, match="unknown intent"):
        api.send("payroll_run.approve", {}, reference="x", idempotency_key=None)
    api.close()


def test_a_second_submit_of_the_same_reference_finds_the_first(sandbox):
    first = submit(sandbox, "op_twice")
    again = submit(sandbox, "op_twice")
    assert again.outcome.category is None and again.outcome.code == "already_submitted"
    assert again.body["id"] == first.body["id"] and created(sandbox, "op_twice") == 1


# -- every error class, classified --------------------------------------------------------------

def test_authentication_and_authorization(sandbox):
    assert submit(sandbox, "op_auth", key="sk_wrong").outcome.category is Category.AUTHENTICATION
    assert submit(sandbox, "op_auth", key=None).outcome.category is Category.AUTHENTICATION
    read_only = submit(sandbox, "op_auth", key=READ_ONLY)  # may look up, may not write
    assert read_only.outcome.category is Category.AUTHORIZATION and read_only.status_code == 403
    assert created(sandbox, "op_auth") == 0


def test_validation(sandbox):
    bad = submit(sandbox, "op_bad", amount=-5)
    assert (bad.outcome.category, bad.status_code) == (Category.VALIDATION, 422)
    assert "amount" in bad.outcome.message
    api = client(sandbox)
    page = api.list_events(None, limit=0)
    assert page.call.outcome.category is Category.VALIDATION and page.call.status_code == 400
    api.close()
    raw = httpx.post(sandbox + "/v1/payroll_runs", content=b"{nope", headers={"Authorization": f"Bearer {KEY}"})
    assert adapter.classify_response(raw.status_code, raw.json()).category is Category.VALIDATION


def test_missing_dependency_and_conflicts(sandbox):
    api = client(sandbox)
    assert api.lookup("op_never").outcome.category is Category.MISSING_DEPENDENCY
    gone = api.send("payroll_run.cancel", {"run_id": "run_nope"}, reference="c", idempotency_key=None)
    assert (gone.outcome.category, gone.outcome.code) == (Category.MISSING_DEPENDENCY, "run_not_found")
    run_id = submit(sandbox, "op_done").body["id"]
    advance(sandbox, run_id, "COMPLETE")
    late = api.send("payroll_run.cancel", {"run_id": run_id}, reference="c", idempotency_key=None)
    assert (late.outcome.category, late.status_code) == (Category.BUSINESS_RULE_REJECTION, 409)
    api.close()
    # The provider refuses a reference it has seen (the client then looks the run up: above)
    raw = httpx.post(sandbox + "/v1/payroll_runs", json={**RUN, "reference": "op_done"},
                     headers={"Authorization": f"Bearer {KEY}"})
    assert adapter.classify_response(raw.status_code, raw.json()).category is Category.DUPLICATE
    assert created(sandbox, "op_done") == 1


def test_an_unreachable_provider_is_an_outage(sandbox):
    free = bind("127.0.0.1", 0)
    port = free.getsockname()[1]
    free.close()  # nothing listens there now
    assert submit(f"http://127.0.0.1:{port}", "op_x").outcome.category is Category.PROVIDER_OUTAGE


# -- chaos knobs ------------------------------------------------------------------------------------

def test_latency_is_added_and_can_time_a_call_out(sandbox):
    set_chaos(sandbox, latency_ms=300)
    api = client(sandbox)
    slow = api.lookup("op_none")
    assert slow.latency_ms >= 300 and slow.outcome.category is Category.MISSING_DEPENDENCY
    api.close()
    hasty = client(sandbox, timeout_s=0.1)
    assert hasty.lookup("op_none").outcome.category is Category.TIMEOUT
    hasty.close()


def test_a_timeout_that_hid_a_success_is_found_by_reference_and_never_doubled(sandbox):
    set_chaos(sandbox, timeout_after_commit=1, timeout_hang_s=3)
    result = submit(sandbox, "op_hidden", timeout_s=0.5)
    # The POST timed out after the run was made; the lookup that follows finds it.
    assert result.outcome.category is None and result.outcome.code == "found_after_timeout"
    assert [e["action"] for e in ledger(sandbox) if e.get("reference") == "op_hidden"] == ["run.created"]
    assert ledger(sandbox, "chaos.timeout_after_commit")
    # A retry by the caller (a new send) is refused by reference, finds the run, makes nothing new.
    assert submit(sandbox, "op_hidden").outcome.code == "already_submitted"
    assert created(sandbox, "op_hidden") == 1


def test_a_write_that_times_out_is_classified_timeout_and_still_happened(sandbox):
    run_id = submit(sandbox, "op_cancel_hidden").body["id"]
    set_chaos(sandbox, timeout_after_commit=1, timeout_hang_s=3)
    api = client(sandbox, timeout_s=0.5)
    lost = api.send("payroll_run.cancel", {"run_id": run_id}, reference="c", idempotency_key=None)
    api.close()
    assert lost.status_code is None and lost.outcome.category is Category.TIMEOUT
    assert [e["run_id"] for e in ledger(sandbox, "run.cancelled")].count(run_id) == 1


def test_429_with_retry_after_then_calm(sandbox):
    set_chaos(sandbox, rate_limit=2, retry_after_s=7)
    limited = submit(sandbox, "op_limited")
    assert limited.outcome.category is Category.RATE_LIMIT and limited.outcome.retry_after_s == 7.0
    assert limited.headers["retry-after"] == "7"
    assert created(sandbox, "op_limited") == 0  # the lookup was refused: it never posted blind
    assert submit(sandbox, "op_limited").outcome.category is Category.RATE_LIMIT  # the second of the burst
    assert submit(sandbox, "op_limited").outcome.category is None
    assert created(sandbox, "op_limited") == 1


def test_a_burst_of_5xx(sandbox):
    set_chaos(sandbox, fail_5xx=3, status_5xx=502)
    api = client(sandbox)
    outcomes = [api.lookup("op_none") for _ in range(4)]
    api.close()
    assert [o.status_code for o in outcomes] == [502, 502, 502, 404]
    assert [o.outcome.category for o in outcomes[:3]] == [Category.PROVIDER_OUTAGE] * 3


def test_a_5xx_on_the_lookup_means_no_blind_post(sandbox):
    # The 5xx lands on the lookup before the post: unable to tell whether the run exists, the
    # client does not post (a 5xx after a post is resolved by a lookup, like the timeout above).
    set_chaos(sandbox, fail_5xx=1)
    assert submit(sandbox, "op_5xx").outcome.category is Category.PROVIDER_OUTAGE
    assert created(sandbox, "op_5xx") == 0


def test_schema_drift_is_a_contract_mismatch_or_an_unknown_status(sandbox):
    set_chaos(sandbox, drift="field")
    drifted = submit(sandbox, "op_drift_field")
    assert drifted.outcome.category is Category.CONTRACT_MISMATCH and "gross_amount" in drifted.body
    set_chaos(sandbox, drift="status")
    assert submit(sandbox, "op_drift_status").body["status"] == "ON_HOLD"
    set_chaos(sandbox, drift=None)
    bodies = all_events(sandbox)
    mine = {orjson.loads(b)["run"]["reference"]: b for b in bodies
            if orjson.loads(b)["run"]["reference"].startswith("op_drift")}
    with pytest.raises(Exception) as caught:
        adapter.map(adapter.parse(mine["op_drift_field"]))
    assert caught.value.category is Category.CONTRACT_MISMATCH
    unseen = adapter.map(adapter.parse(mine["op_drift_status"]))
    assert unseen.provider_status == "ON_HOLD" and unseen.status is None


def test_schema_drift_a_missing_field_is_refused_extra_ones_are_ignored(sandbox):
    set_chaos(sandbox, drift="missing")
    assert "currency" not in submit(sandbox, "op_drift_missing").body
    set_chaos(sandbox, drift="extra")
    extra = submit(sandbox, "op_drift_extra").body
    assert extra["net_amount"] == 200_000 and extra["tax"] == {"withheld": 50_000, "year": 2026}
    set_chaos(sandbox, drift=None)
    mine = {orjson.loads(b)["run"]["reference"]: b for b in all_events(sandbox)}
    with pytest.raises(Exception) as caught:
        adapter.map(adapter.parse(mine["op_drift_missing"]))
    assert caught.value.category is Category.VALIDATION and "currency" in str(caught.value)
    mapped = adapter.map(adapter.parse(mine["op_drift_extra"]))
    assert mapped.fields["amount"] == 250_000 and "net_amount" not in mapped.fields


def test_admin_refuses_bad_knobs_in_one_line(sandbox):
    for knobs in ({"latency_ms": -1}, {"rate_limit": "3"}, {"drift": "total"}, {"no_such_knob": 1}):
        response = httpx.post(sandbox + "/_admin/chaos", json=knobs)
        assert response.status_code == 422 and "\n" not in response.json()["error"]["message"]
    assert httpx.post(sandbox + "/_admin/chaos", content=b"[").status_code == 400
    assert httpx.get(sandbox + "/_admin/chaos").json() == Chaos().model_dump()


# -- polling by offset ------------------------------------------------------------------------------

def all_events(base: str, cursor: str | None = None, limit: int = 2) -> list[bytes]:
    api = client(base)
    bodies: list[bytes] = []
    while True:
        page = api.list_events(cursor, limit)
        assert page.call.outcome.category is None
        if page.next_cursor is None:
            break
        assert len(page.bodies) <= limit
        bodies += page.bodies
        cursor = page.next_cursor
    api.close()
    return bodies


def test_events_walk_by_offset_and_a_persisted_cursor_resumes(sandbox):
    before = all_events(sandbox)
    cursor = str(len(before))
    for i in range(3):
        submit(sandbox, f"op_page_{i}")
    api = client(sandbox)
    page = api.list_events(cursor, 2)
    assert [orjson.loads(b)["run"]["reference"] for b in page.bodies] == ["op_page_0", "op_page_1"]
    rest = api.list_events(page.next_cursor, 2)
    assert [orjson.loads(b)["run"]["reference"] for b in rest.bodies] == ["op_page_2"]
    empty = api.list_events(rest.next_cursor, 2)
    assert empty.bodies == [] and empty.next_cursor is None  # nothing new: keep the cursor
    api.close()
    assert all_events(sandbox)[: len(before)] == before


# -- webhooks -------------------------------------------------------------------------------------

def test_webhooks_are_signed_the_standard_way(sandbox, receiver):
    receiver.clear()
    set_chaos(sandbox, webhook_url=receiver.url)
    run_id = submit(sandbox, "op_hook").body["id"]
    advance(sandbox, run_id, "ERROR", "INVALID_BANK_ACCOUNT")
    delivered = receiver.wait_for(2)
    assert [orjson.loads(body)["run"]["status"] for _, body in delivered] == ["SENT", "ERROR"]
    for headers, body in delivered:
        Webhook(SECRET).verify(body, headers)  # the reference implementation agrees
        check = adapter.verify_signature(headers, body, [WebhookSecret("wh", SECRET)], now=datetime.now(UTC))
        assert check.verdict == "verified"
    assert len(ledger(sandbox, "webhook.delivered")) >= 2


def test_duplicate_delivery(sandbox, receiver):
    receiver.clear()
    set_chaos(sandbox, webhook_url=receiver.url, duplicate_webhooks=2)
    submit(sandbox, "op_dup")
    delivered = receiver.wait_for(3)
    assert len({body for _, body in delivered}) == 1 and len({h["webhook-id"] for h, _ in delivered}) == 1


def test_out_of_order_delivery(sandbox, receiver):
    receiver.clear()
    set_chaos(sandbox, webhook_url=receiver.url, reorder_webhooks=True)
    run_id = submit(sandbox, "op_reorder").body["id"]
    advance(sandbox, run_id, "ACKNOWLEDGED")
    advance(sandbox, run_id, "COMPLETE")
    assert httpx.get(sandbox + "/_admin/health").json()["held_webhooks"] == 3 and receiver.requests == []
    assert httpx.post(sandbox + "/_admin/webhooks/flush").json() == {"flushed": 3}
    delivered = receiver.wait_for(3)
    assert [orjson.loads(b)["run"]["status"] for _, b in delivered] == ["COMPLETE", "ACKNOWLEDGED", "SENT"]


def test_captured_webhooks_ingest_once_deduplicated_by_payload_hash(sandbox, receiver, db_url, tmp_path):
    """Duplicated and reordered deliveries, then the same events polled: through the real
    `workbench ingest`, each event is applied once and the run ends completed."""
    receiver.clear()
    set_chaos(sandbox, webhook_url=receiver.url, reorder_webhooks=True, duplicate_webhooks=1)
    reference = "op_ingest_" + uuid.uuid4().hex  # the sandbox lives for the module: once per backend
    run_id = submit(sandbox, reference).body["id"]
    advance(sandbox, run_id, "ACKNOWLEDGED")
    advance(sandbox, run_id, "COMPLETE")
    httpx.post(sandbox + "/_admin/webhooks/flush")
    delivered = receiver.wait_for(6)
    t0 = datetime.now(UTC)
    lines = [orjson.dumps({"received_at": (t0 + timedelta(milliseconds=i)).isoformat(), "headers": headers,
                           "body": body.decode()}) for i, (headers, body) in enumerate(delivered)]
    hooks = tmp_path / "hooks.jsonl"
    hooks.write_bytes(b"\n".join(lines) + b"\n")
    polled = [b for b in all_events(sandbox) if orjson.loads(b)["run"]["reference"] == reference]
    assert len(polled) == 3 and set(polled) == {body for _, body in delivered}
    poll_file = tmp_path / "poll.jsonl"
    poll_file.write_bytes(b"".join(orjson.dumps({"received_at": (t0 + timedelta(seconds=5)).isoformat(), "headers": {},
                                                 "body": b.decode()}) + b"\n" for b in polled))

    def wb(*args: str) -> Any:
        return CliRunner().invoke(cli, ["--db", db_url, *args], catch_exceptions=False)

    assert wb("db", "upgrade").exit_code == 0
    assert wb("connection", "add", "pay", "--provider", "payroll").exit_code == 0
    first = wb("ingest", "pay", str(hooks))
    assert first.exit_code == 0, first.output
    counts = dict(line.split("\t") for line in first.stdout.splitlines())
    # newest first: COMPLETE applies, the older two arrive stale; every copy is a duplicate
    assert counts == {"applied": "1", "stale": "2", "duplicate": "3", "total": "6"}
    second = wb("ingest", "pay", str(poll_file))
    assert dict(line.split("\t") for line in second.stdout.splitlines()) == {"duplicate": "3", "total": "3"}
    [record] = orjson.loads(wb("records", "--json").stdout)
    assert record["status"] == "completed"


# -- the command ----------------------------------------------------------------------------------

def test_the_command_serves_with_its_flags_and_stops_cleanly_on_sigterm():
    process = subprocess.Popen(
        [str(WORKBENCH), "sandbox", "payroll", "--port", "0", "--api-key", KEY, "--rate-limit", "1",
         "--retry-after", "4", "--drift", "status", "--webhook-secret", SECRET],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        first = process.stdout.readline()  # printed once the port is bound
        assert first.startswith("payroll sandbox listening on http://127.0.0.1:"), first
        base = first.split()[4]
        assert httpx.get(base + "/_admin/chaos").json() == {**Chaos().model_dump(), "rate_limit": 1,
                                                              "retry_after_s": 4, "drift": "status"}
        limited = httpx.get(base + "/v1/events", headers={"Authorization": f"Bearer {KEY}"})
        assert limited.status_code == 429 and limited.headers["retry-after"] == "4"
        assert httpx.get(base + "/v1/events", headers={"Authorization": f"Bearer {KEY}"}).status_code == 200
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
        _, stderr = process.communicate()
        assert "Traceback" not in stderr and SECRET not in stderr
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.mark.parametrize("args, words", [
    (["--port", "abc"], ["--port"]),
    (["--port", "70000"], ["--port", "70000"]),
    (["--latency-ms", "-1"], ["--latency-ms"]),
    (["--retry-after", "-1"], ["--retry-after"]),
    (["--status-5xx", "404"], ["--status-5xx"]),
    (["--drift", "everything"], ["--drift"]),
    (["--webhook-url", "http://127.0.0.1:9/hooks"], ["--webhook-secret"]),
    (["--webhook-secret", "whsec_not base64!"], ["--webhook-secret"]),
    (["--webhook-url", "not a url", "--webhook-secret", SECRET], ["--webhook-url"]),
    (["--no-such-flag"], ["--no-such-flag"]),
])
def test_bad_flags_are_one_line(args, words):
    result = CliRunner().invoke(cli, ["sandbox", "payroll", *args], catch_exceptions=False)
    assert result.exit_code == 2 and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert all(word in lines[0] for word in words), lines[0]
    assert SECRET not in result.stderr


def test_a_taken_port_is_one_line():
    taken = bind("127.0.0.1", 0)
    try:
        port = str(taken.getsockname()[1])
        result = CliRunner().invoke(cli, ["sandbox", "payroll", "--port", port], catch_exceptions=False)
    finally:
        taken.close()
    assert result.exit_code == 1 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and f"127.0.0.1:{port}" in result.stderr and "--port" in result.stderr


def test_drifted_events_through_ingest_open_failures_instead_of_guessing(sandbox, db_url, tmp_path):
    tag = uuid.uuid4().hex  # the sandbox lives for the module: once per backend
    set_chaos(sandbox, drift="status")
    submit(sandbox, f"op_drift_status_{tag}")
    set_chaos(sandbox, drift="field")
    submit(sandbox, f"op_drift_field_{tag}")
    set_chaos(sandbox, drift=None)
    bodies = [b for b in all_events(sandbox) if orjson.loads(b)["run"]["reference"].endswith(tag)]
    t0 = datetime.now(UTC)
    captures = tmp_path / "drift.jsonl"
    captures.write_bytes(b"".join(orjson.dumps({"received_at": (t0 + timedelta(seconds=i)).isoformat(), "headers": {},
                                                "body": b.decode()}) + b"\n" for i, b in enumerate(bodies)))

    def wb(*args: str) -> Any:
        return CliRunner().invoke(cli, ["--db", db_url, *args], catch_exceptions=False)

    assert wb("db", "upgrade").exit_code == 0
    assert wb("connection", "add", "pay", "--provider", "payroll").exit_code == 0
    result = wb("ingest", "pay", str(captures))
    assert result.exit_code == 0, result.output
    assert dict(line.split("\t") for line in result.stdout.splitlines()) == {"failed": "1", "invalid": "1", "total": "2"}
    failures = orjson.loads(wb("failures", "--json").stdout)
    # both need an engineer: a status the rules never saw, a field that moved
    assert [f["category"] for f in failures] == ["contract_mismatch", "contract_mismatch"]
    messages = " ".join(f["message"] for f in failures)
    assert "ON_HOLD" in messages and "amount" in messages, messages
