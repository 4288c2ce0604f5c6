"""`workbench listen` as a sender sees it: a real server in a subprocess, real HTTP, on both
backends. Answers, what is stored, what is applied, and changes made by other processes."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from store.bulk import Codec
from store.database import open_store
from tests.conftest import fresh_database
from tests.receiver_harness import Receiver, event_body, signature
from workbench.services import processes
from workbench.services.context import ServiceContext
from workbench.services.ingest_prepare import MAC_PREFIX, stored_form

SECRET = "whsec_receiver_first"
ROTATED = "whsec_receiver_second"


@pytest.fixture(scope="module", params=[pytest.param("sqlite", id="sqlite"),
                                        pytest.param("postgres", id="postgres", marks=pytest.mark.postgres)])
def receiver(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Receiver]:
    home = tmp_path_factory.mktemp("receiver")
    with fresh_database(request, request.param, home / "workbench.db", migrated=True) as url:
        server = Receiver.create(url, home, migrated=True)
        server.cli("connection", "add", "acme", "--provider", "stripe")
        server.cli("connection", "add", "open", "--provider", "stripe")  # no secret: unchecked
        server.first_secret = server.add_secret("acme", SECRET)  # type: ignore[attr-defined]  # kept for the rotation test
        server.start()
        yield server
        assert server.stop() == 0  # SIGTERM: a clean exit
        # ... and its presence in the store says so: no longer a live receiver.
        assert [row.stopped_at is not None for row in server.processes()] == [True]
        engine = open_store(url)
        try:
            assert processes.live(ServiceContext(engine=engine), "receiver", datetime.now(UTC)) == []
        finally:
            engine.dispose()


def signed(body: bytes, secret: str = SECRET, at: float | None = None) -> dict[str, str]:
    return {"Stripe-Signature": signature(body, secret, at), "Content-Type": "application/json"}


def test_a_valid_signature_is_stored_verified_and_applied(receiver: Receiver) -> None:
    body = event_body("evt_valid", "pi_valid")
    answer = receiver.post("acme", body, signed(body))
    assert answer.status_code == 200, answer.text
    assert answer.json()["signature"] == "verified"
    row = receiver.delivery(answer.json()["delivery"], timeout=2.0)  # applied within a second or so
    assert (row.verdict, row.signature_verdict, row.source) == ("applied", "verified", "webhook")
    assert row.signature_secret == receiver.first_secret  # type: ignore[attr-defined]  # its name, never its value
    assert row.body == body and row.record_id is not None


def test_no_secret_means_unchecked_and_applied(receiver: Receiver) -> None:
    answer = receiver.post("open", event_body("evt_open", "pi_open"), {"Content-Type": "application/json"})
    assert answer.status_code == 200 and answer.json()["signature"] == "unchecked"
    assert receiver.delivery(answer.json()["delivery"]).verdict == "applied"


@pytest.mark.parametrize(("case", "status", "reason"), [
    ("bad signature", 400, "no v1 signature matches"),
    ("wrong secret", 400, "no v1 signature matches"),
    ("expired timestamp", 400, "tolerance 300 s"),
    ("future timestamp", 400, "in the future"),
    ("missing header", 401, "no stripe-signature header"),
])
def test_a_signature_that_fails_is_stored_rejected_and_changes_nothing(receiver: Receiver, case: str, status: int,
                                                                       reason: str) -> None:
    body = event_body(f"evt_{case.replace(' ', '_')}", "pi_valid", "canceled", created=99)
    headers = {"bad signature": {"Stripe-Signature": f"t={int(time.time())},v1={'ab' * 32}"},
               "wrong secret": signed(body, "whsec_someone_else"),
               "expired timestamp": signed(body, at=time.time() - 301),
               "future timestamp": signed(body, at=time.time() + 400),
               "missing header": {}}[case]
    answer = receiver.post("acme", body, headers)
    assert answer.status_code == status and reason in answer.json()["result"]
    assert SECRET not in answer.text and "Traceback" not in answer.text
    row = receiver.delivery(answer.json()["delivery"], settled=False)
    assert (row.verdict, row.signature_verdict, row.record_id, row.dedupe_key) == ("rejected", "failed", None, None)
    assert row.signature_secret == receiver.first_secret  # type: ignore[attr-defined]  # the one tried
    assert reason in row.verdict_reason and receiver.first_secret in row.verdict_reason  # type: ignore[attr-defined]


def test_an_oversized_body_is_answered_413_and_kept_as_a_rejection(receiver: Receiver) -> None:
    body = b'{"pad":"' + b"x" * (1 << 20) + b'"}'
    answer = receiver.post("acme", body, signed(body))
    assert answer.status_code == 413 and "limit" in answer.json()["result"]
    row = receiver.delivery(answer.json()["delivery"], settled=False)
    assert (row.verdict, row.body) == ("rejected", b"")


def test_malformed_json_is_stored_and_answered_400(receiver: Receiver) -> None:
    body = b'{"id": "evt_broken", '
    answer = receiver.post("acme", body, signed(body))
    assert answer.status_code == 400 and "not JSON" in answer.json()["result"]
    row = receiver.delivery(answer.json()["delivery"])
    assert (row.verdict, row.signature_verdict, row.body) == ("invalid", "verified", body)


def test_an_unknown_connection_is_404_and_nothing_is_stored(receiver: Receiver) -> None:
    before = len(receiver.deliveries())
    answer = receiver.post("nobody", b"{}", {})
    assert answer.status_code == 404 and "no connection named 'nobody'" in answer.json()["error"]
    assert len(receiver.deliveries()) == before
    assert httpx.get(f"{receiver.base}/healthz").json()["ready"] is True


def _until(condition: object, timeout: float = 4.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.1)
    return False


def test_a_running_receiver_is_live_in_the_store_with_its_address(receiver: Receiver) -> None:
    engine = open_store(receiver.url)
    try:
        ctx = ServiceContext(engine=engine)
        assert _until(lambda: processes.live(ctx, "receiver", datetime.now(UTC)) != [])
        [live] = processes.live(ctx, "receiver", datetime.now(UTC))
        assert (live.address, live.stopped_at) == (receiver.base, None)
        assert receiver.process is not None and live.pid == receiver.process.pid != os.getpid()
        assert processes.live(ctx, "engine", datetime.now(UTC)) == []
    finally:
        engine.dispose()


def test_a_rotated_secret_and_its_predecessor_both_work_until_the_old_is_retired(receiver: Receiver) -> None:
    receiver.add_secret("acme", ROTATED)  # by another process: followed without a restart
    body = event_body("evt_rotated", "pi_rotated")
    started = time.monotonic()
    assert _until(lambda: receiver.post("acme", body, signed(body, ROTATED)).status_code == 200)
    assert time.monotonic() - started < 3.0
    old_body = event_body("evt_rotated_old", "pi_rotated_old")
    assert receiver.post("acme", old_body, signed(old_body, SECRET)).status_code == 200
    receiver.cli("connection", "secret", "retire", "acme", receiver.first_secret, "--reason", "rotated")  # type: ignore[attr-defined]
    late = event_body("evt_rotated_late", "pi_rotated_late")
    assert _until(lambda: receiver.post("acme", late, signed(late, SECRET)).status_code == 400)
    assert receiver.post("acme", late, signed(late, ROTATED)).status_code == 200


def test_a_paused_connection_holds_and_resume_applies(receiver: Receiver) -> None:
    receiver.cli("connection", "add", "later", "--provider", "stripe")  # added while running
    body = event_body("evt_later", "pi_later")
    assert _until(lambda: receiver.post("later", b"{}", {}).status_code != 404)
    receiver.cli("connection", "pause", "later", "--reason", "maintenance")
    assert _until(lambda: receiver.post("later", body, {}).status_code == 202)
    held = [row for row in receiver.deliveries() if row.body == body]
    time.sleep(0.5)
    assert receiver.delivery(held[0].id, settled=False).verdict == "held"
    receiver.cli("connection", "resume", "later", "--reason", "done")
    assert receiver.delivery(held[0].id).verdict == "applied"


def test_an_encrypting_connections_bodies_are_sealed_before_the_spool_and_applied(receiver: Receiver) -> None:
    """Its body is sealed on receipt (never plain in the spool, nor in the store); its stored
    form (hash, capture key) is made of the plain body first."""
    receiver.cli("connection", "add", "sealed", "--provider", "stripe", "--encrypt-payloads")
    body = event_body("evt_sealed", "pi_sealed_canary")
    assert _until(lambda: receiver.post("sealed", b"{}", {}).status_code != 404)
    answer = receiver.post("sealed", body, {"Content-Type": "application/json"})
    assert answer.status_code == 200, answer.text
    row = receiver.delivery(answer.json()["delivery"])
    assert (row.verdict, row.body_key_version) == ("applied", 1) and row.record_id is not None
    assert b"pi_sealed_canary" not in bytes(row.body)
    # As ingest makes them of the same capture (none of these headers is a credential).
    received = row.received_at if row.received_at.tzinfo else row.received_at.replace(tzinfo=UTC)
    _, _, payload_hash, capture_key = stored_form(received, row.headers, body, b"unused",
                                                  Codec("sqlite").datetime, Codec("sqlite").json)
    assert (row.payload_hash, row.capture_key) == (payload_hash, capture_key)


def _applier_pid(receiver: Receiver) -> int:
    assert receiver.process is not None
    found = subprocess.run(["pgrep", "-P", str(receiver.process.pid), "-f", "receiver.applier"],
                           capture_output=True, text=True).stdout.split()
    assert len(found) == 1
    return int(found[0])


def test_a_credential_in_a_header_never_reaches_the_spool_in_plain_text(receiver: Receiver) -> None:
    """Read while the applier is stopped, so the delivery is still in the spool: its ID is
    there, the sender's token is not (a keyed MAC instead), and the store has what ingest keeps."""
    applier = _applier_pid(receiver)
    body = event_body("evt_token", "pi_token")
    os.kill(applier, signal.SIGSTOP)
    try:
        answer = receiver.post("open", body, {"Content-Type": "application/json", "Authorization": "Bearer tok_canary_77"})
        assert answer.status_code == 200, answer.text
        spooled = b"".join(path.read_bytes() for path in (receiver.home / "spool").glob("receiver-*.spool*")
                           if not path.name.endswith(".lock"))
        found, leaked = answer.json()["delivery"].encode() in spooled, b"tok_canary_77" in spooled
        assert (found, leaked) == (True, False)
    finally:
        os.kill(applier, signal.SIGCONT)
    row = receiver.delivery(answer.json()["delivery"])
    assert row.verdict == "applied" and row.headers["authorization"].startswith(MAC_PREFIX)


def test_healthz_says_how_long_ago_the_oldest_delivery_not_yet_applied_came(receiver: Receiver) -> None:
    def health() -> dict[str, Any]:
        answer: dict[str, Any] = httpx.get(f"{receiver.base}/healthz").json()
        return answer

    assert _until(lambda: health()["spooled"] == 0) and health()["behind_s"] == 0.0
    applier = _applier_pid(receiver)
    os.kill(applier, signal.SIGSTOP)  # nothing leaves the spool meanwhile
    try:
        assert receiver.post("open", event_body("evt_late", "pi_late"), {}).status_code == 200
        time.sleep(0.6)
        waiting = health()
        assert waiting["spooled"] == 1 and 0.6 <= waiting["behind_s"] < 10, waiting
    finally:
        os.kill(applier, signal.SIGCONT)
    assert _until(lambda: health() == {**waiting, "spooled": 0, "behind_s": 0.0})


_names = st.from_regex(r"[A-Za-z][A-Za-z0-9-]{0,20}", fullmatch=True)
_values = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=60).map(str.strip)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.binary(max_size=2048), headers=st.dictionaries(_names, _values, max_size=6),
       path=st.one_of(st.sampled_from(["acme", "open"]), st.text(max_size=30)))
def test_fuzz_never_a_5xx_never_a_traceback_and_known_connections_store_everything(
        receiver: Receiver, body: bytes, headers: dict[str, str], path: str) -> None:
    headers = {k: v for k, v in headers.items() if k.lower() not in ("content-length", "transfer-encoding", "host")}
    answer = httpx.post(f"{receiver.base}/hooks/{quote(path, safe='')}", content=body, headers=headers, timeout=10)
    assert answer.status_code < 500, answer.text
    assert "Traceback" not in answer.text and 'File "' not in answer.text
    if path in ("acme", "open"):
        assert answer.json()["delivery"] in {row.id for row in receiver.deliveries()}
