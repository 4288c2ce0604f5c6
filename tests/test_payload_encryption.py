"""Raw bodies encrypted at rest per connection (issue 9, item 6), and credential headers stored
as a keyed MAC (item 5): on every backend, through the services and the CLI."""

from __future__ import annotations

import gc
import hashlib
import io
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner, Result
from sqlalchemy import select, update

from store.database import reading, sqlite_file, writing
from store.models import AuditEntry, Base, Delivery, Record
from tests.support import T0, capture, capture_line, pi_event, table_counts
from workbench.cli.main import cli
from workbench.services import connections, triage
from workbench.services.capture_export import export_captures
from workbench.services.context import ServiceContext
from workbench.services.header_mac import derive_header_key, header_key
from workbench.services.ingest import ingest
from workbench.services.ingest_prepare import MAC_PREFIX, stored_headers
from workbench.services.payload_crypto import (
    NO_VAULTS,
    PayloadKeyError,
    PayloadLocked,
    data_key_name,
    new_key_version,
)
from workbench.services.payload_settings import PayloadChange, add_with_payload_settings, set_payload_settings
from workbench.services.queries import iter_failures
from workbench.services.replay import replay
from workbench.services.timeline import delivery_payload
from workbench.vault import KdfParams, UnlockedVault, create, vault_path

PASS = "correct horse battery"
CHEAP = KdfParams(memory_kib=1024, iterations=1, lanes=1)  # the file records them; unlocking reuses them
CANARY = "CANARY-plaintext-7f3a9c"
CREATED = int(T0.timestamp())
deliveries = Delivery.__table__


@pytest.fixture(autouse=True)
def _release_engines() -> Iterator[None]:
    yield
    gc.collect(1)


@pytest.fixture
def sandbox() -> UnlockedVault:
    return create(vault_path("sandbox"), "sandbox", PASS, params=CHEAP)


@pytest.fixture
def vaults(sandbox: UnlockedVault) -> dict[str, UnlockedVault]:
    return {"sandbox": sandbox}


def wb(db_url: str, *args: str, input: bytes | None = None, passphrase: str | None = PASS) -> Result:
    return CliRunner().invoke(cli, ["--db", db_url, *args], input=input, catch_exceptions=False,
                              env={"WORKBENCH_VAULT_PASSPHRASE": passphrase})


def one_line_error(result: Result, *words: str, code: int = 1) -> str:
    assert result.exit_code == code, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def events(n: int = 3) -> list[bytes]:
    """Bodies of one payment's story, each carrying the canary in a provider field."""
    statuses = ["processing", "requires_action", "succeeded", "processing"]
    return [orjson.dumps(pi_event(f"evt_{i}", "pi_1", statuses[i % 4], CREATED + i, shipping={"name": f"{CANARY} {i}"}))
            for i in range(n)]


def captures_of(bodies: list[bytes], start: int = 0) -> list[Any]:
    return [capture(body, T0 + timedelta(seconds=start + i)) for i, body in enumerate(bodies)]


def encrypted_connection(ctx: ServiceContext, vaults: dict[str, UnlockedVault], name: str = "acme") -> str:
    info = add_with_payload_settings(ctx, name, "stripe", "sandbox", "test", PayloadChange(encrypt=True), vaults)
    return info.id


def stored_bodies(ctx: ServiceContext, name: str = "acme") -> list[Any]:
    connection = connections.get_connection(ctx, name)
    with reading(ctx.engine) as conn:
        return list(conn.execute(select(deliveries.c.id, deliveries.c.body, deliveries.c.body_key_version,
                                        deliveries.c.verdict, deliveries.c.record_id)
                                 .where(deliveries.c.connection_id == connection.id).order_by(deliveries.c.id)))


def store_bytes(db_url: str, engine: Any) -> bytes:
    """Everything a store holds: a SQLite store's files (with its WAL), or every row of every
    table of a PostgreSQL one, as the server prints it (bytea as hex, so the canary's hex too)."""
    path = sqlite_file(db_url)
    if path is not None:
        engine.dispose()  # the WAL checkpointed into the file
        return b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*") if p.is_file())
    with reading(engine) as conn:
        text = "".join(str(row[0]) for table in Base.metadata.tables
                       for row in conn.exec_driver_sql(f'SELECT CAST(t AS text) FROM "{table}" t'))
    return text.encode()


def canary_forms(value: str) -> list[bytes]:
    return [value.encode(), value.encode().hex().encode()]


# --------------------------------------------------------------------------- at rest


def test_encrypted_bodies_are_not_in_the_store_and_read_back_with_the_vault(db_url, ctx, vaults):
    connection_id = encrypted_connection(ctx, vaults)
    bodies = events(3)
    report = ingest(ctx, "acme", captures_of(bodies), vaults=vaults)
    assert report.counts["applied"] == 3
    rows = stored_bodies(ctx)
    assert len(rows) == 3 and {row.body_key_version for row in rows} == {1}
    for row in rows:
        assert CANARY.encode() not in bytes(row.body) and b"pi_1" not in bytes(row.body)
    everything = store_bytes(db_url, ctx.engine)
    assert b"tester" in everything  # the dump is real: the actor is in it
    assert not any(form in everything for form in canary_forms(CANARY))
    # The data key lives in the vault, named after the connection, and nowhere in the store.
    key = vaults["sandbox"].read().current(data_key_name(connection_id)).value
    assert not any(form in everything for form in canary_forms(key))
    # Read back through the vault: the Payload screen's service sees the plain body.
    payload = delivery_payload(ctx, rows[0].id, vaults)
    assert payload["body_state"] == "encrypted" and payload["body"]["data"]["object"]["id"] == "pi_1"


def test_a_plain_connection_is_stored_as_before(db_url, ctx, vaults):
    connections.add_connection(ctx, "plain", "stripe", "sandbox")
    ingest(ctx, "plain", captures_of(events(1)))  # no vault needed
    (row,) = stored_bodies(ctx, "plain")
    assert row.body_key_version is None and CANARY.encode() in bytes(row.body)
    # ...and the canary search of the encrypted test does find a plain body.
    assert any(form in store_bytes(db_url, ctx.engine) for form in canary_forms(CANARY))


def test_deduplication_works_across_encrypted_redeliveries(ctx, vaults):
    encrypted_connection(ctx, vaults)
    bodies = events(2)
    ingest(ctx, "acme", captures_of(bodies), vaults=vaults)
    # The provider redelivers the same events later (new receipt times): duplicates, not new events.
    again = ingest(ctx, "acme", captures_of(bodies, start=100), vaults=vaults)
    assert again.counts == {"duplicate": 2}
    # The same capture lines once more: recognised as stored (capture keys from the plain bytes).
    assert ingest(ctx, "acme", captures_of(bodies), vaults=vaults).counts == {"already_stored": 2}
    rows = stored_bodies(ctx)
    assert len(rows) == 4 and all(row.body_key_version == 1 for row in rows)
    # Each body has its own nonce: the same bytes never seal to the same ciphertext.
    assert len({bytes(row.body) for row in rows}) == 4


def test_ingest_into_an_encrypted_connection_with_the_vault_locked_stores_nothing(db_url, ctx, vaults, tmp_path):
    encrypted_connection(ctx, vaults)
    with pytest.raises(PayloadLocked, match="unlock the sandbox vault"):
        ingest(ctx, "acme", captures_of(events(1)), vaults=NO_VAULTS)
    before = table_counts(db_url)
    path = tmp_path / "c.jsonl"
    path.write_bytes(capture_line(orjson.loads(events(1)[0])) + b"\n")
    line = one_line_error(wb(db_url, "ingest", "acme", str(path), passphrase=None),
                          "encrypts its payloads", "WORKBENCH_VAULT_PASSPHRASE", "nothing was stored")
    assert CANARY not in line
    assert table_counts(db_url) == before
    # A wrong passphrase: one line too, nothing stored.
    one_line_error(wb(db_url, "ingest", "acme", str(path), passphrase="not the passphrase"), "passphrase")
    assert table_counts(db_url) == before


def test_reading_with_the_vault_locked_says_so(db_url, ctx, vaults):
    encrypted_connection(ctx, vaults)
    ingest(ctx, "acme", captures_of(events(2)), vaults=vaults)
    first = stored_bodies(ctx)[0]
    payload = delivery_payload(ctx, first.id)  # no vaults: as the TUI before the Vault screen unlocks
    assert payload["body_state"] == "locked" and payload["body_is_json"] is False
    assert payload["body"] == ("this body is encrypted: unlock the sandbox vault (Vault screen, u) or set "
                               "WORKBENCH_VAULT_PASSPHRASE")
    assert payload["verdict"] == "applied" and payload["provider_event_id"] == "evt_0"  # the rest still shows
    with pytest.raises(PayloadLocked):
        export_captures(ctx, "acme", io.BytesIO())
    one_line_error(wb(db_url, "events", "--connection", "acme", "--captures", passphrase=None),
                   "encrypted", "WORKBENCH_VAULT_PASSPHRASE", "nothing was exported")
    skipped = replay(ctx, connection="acme").skipped
    assert skipped and "this body is encrypted" in skipped[0][1]


def test_capture_export_and_replay_with_the_vault_unlocked_use_the_original_bytes(db_url, ctx, vaults):
    encrypted_connection(ctx, vaults)
    bodies = events(3)
    ingest(ctx, "acme", captures_of(bodies), vaults=vaults)
    out = io.BytesIO()
    assert export_captures(ctx, "acme", out, redacted=False, vaults=vaults) == 3
    exported = [orjson.loads(line) for line in out.getvalue().splitlines()]
    assert [line["body"].encode() for line in exported] == bodies
    # Through the CLI (the passphrase from the environment), the same bytes.
    result = wb(db_url, "events", "--connection", "acme", "--captures", "--exact")
    assert result.exit_code == 0, result.output
    assert [orjson.loads(line)["body"].encode() for line in result.stdout_bytes.splitlines()] == bodies
    # Replay re-derives the record from the decrypted events: a tampered belief is put right.
    with writing(ctx.engine) as conn:
        conn.execute(update(Record.__table__).values(status="needs_review"))
    report = replay(ctx, connection="acme", vaults=vaults)
    assert not report.skipped and [(c.from_status, c.to_status) for c in report.changes] == [
        ("needs_review", "completed")]
    result = wb(db_url, "replay", "--connection", "acme", "--json")
    assert result.exit_code == 0 and orjson.loads(result.stdout)["changes"] == []


def test_new_bodies_use_the_newest_key_version_and_old_ones_still_open(db_url, ctx, vaults, sandbox):
    connection_id = encrypted_connection(ctx, vaults)
    bodies = events(4)
    ingest(ctx, "acme", captures_of(bodies[:2]), vaults=vaults)
    assert new_key_version(sandbox, connection_id) == 2
    ingest(ctx, "acme", captures_of(bodies[2:3], start=10), vaults=vaults)
    result = wb(db_url, "connection", "rotate-payload-key", "acme", "--reason", "yearly rotation")
    assert result.exit_code == 0 and "version 3" in result.stdout
    one_line_error(wb(db_url, "connection", "rotate-payload-key", "acme", "--reason", "x", passphrase=None),
                   "needs the sandbox vault")
    ingest(ctx, "acme", captures_of(bodies[3:], start=20), vaults=vaults)
    rows = stored_bodies(ctx)
    assert sorted(row.body_key_version for row in rows) == [1, 1, 2, 3]
    out = io.BytesIO()
    export_captures(ctx, "acme", out, redacted=False, vaults=vaults)
    assert [orjson.loads(line)["body"].encode() for line in out.getvalue().splitlines()] == bodies


def test_a_sealed_body_is_bound_to_its_delivery(ctx, vaults):
    encrypted_connection(ctx, vaults)
    ingest(ctx, "acme", captures_of(events(2)), vaults=vaults)
    first, second = stored_bodies(ctx)
    with writing(ctx.engine) as conn:  # someone with write access moves a body onto another row
        conn.execute(update(deliveries).where(deliveries.c.id == first.id).values(body=bytes(second.body)))
    with pytest.raises(PayloadKeyError, match=f"{first.id}.*altered"):
        delivery_payload(ctx, first.id, vaults)


def test_held_deliveries_of_an_encrypted_connection_apply_on_resume(db_url, ctx, vaults):
    encrypted_connection(ctx, vaults)
    connections.set_paused(ctx, "acme", True, "maintenance")
    assert ingest(ctx, "acme", captures_of(events(2)), vaults=vaults).counts == {"held": 2}
    assert all(row.body_key_version == 1 and CANARY.encode() not in bytes(row.body) for row in stored_bodies(ctx))
    with pytest.raises(PayloadLocked):
        connections.change_paused(ctx, "acme", False, "back")  # the vault locked: nothing changes
    assert connections.get_connection(ctx, "acme").paused
    applied = connections.change_paused(ctx, "acme", False, "back", vaults).applied
    assert applied == {"applied": 2}
    rows = stored_bodies(ctx)
    assert all(row.body_key_version == 1 and row.verdict == "applied" for row in rows)
    assert delivery_payload(ctx, rows[1].id, vaults)["body"]["data"]["object"]["id"] == "pi_1"
    out = io.BytesIO()
    export_captures(ctx, "acme", out, redacted=False, vaults=vaults)
    assert [orjson.loads(line)["body"].encode() for line in out.getvalue().splitlines()] == events(2)


# --------------------------------------------------------------------------- settings


def test_connection_add_and_set_flags_make_versions(db_url, ctx):
    one_line_error(wb(db_url, "connection", "add", "acme", "--provider", "stripe", "--encrypt-payloads",
                      passphrase=None), "needs the sandbox vault", "nothing was changed")
    assert table_counts(db_url)["connections"] == 0
    create(vault_path("sandbox"), "sandbox", PASS, params=CHEAP)
    result = wb(db_url, "connection", "add", "acme", "--provider", "stripe", "--encrypt-payloads",
                "--retain-raw", "30")
    assert result.exit_code == 0, result.output
    info = connections.get_connection(ctx, "acme")
    assert info.settings["payloads"] == {"encrypt": True} and info.settings["retention"] == {"raw_days": 30}
    result = wb(db_url, "connection", "set", "acme", "--no-encrypt-payloads", "--keep-raw-forever",
                "--reason", "the provider masks card data now", passphrase=None)  # turning off: no vault
    assert result.exit_code == 0, result.output
    assert "version 2" in result.stdout and "plain" in result.stdout and "kept forever" in result.stdout
    result = wb(db_url, "connection", "set", "acme", "--retain-raw", "7", "--reason", "policy")
    assert "version 3" in result.stdout
    result = wb(db_url, "connection", "set", "acme", "--retain-raw", "7", "--reason", "again")
    assert "unchanged (version 3)" in result.stdout
    history = connections.history(ctx, "acme")
    assert [h["version"] for h in history] == [1, 2, 3]
    assert [h["reason"] for h in history[1:]] == ["the provider masks card data now", "policy"]
    assert history[0]["snapshot"]["settings"]["payloads"] == {"encrypt": True}
    assert history[1]["snapshot"]["settings"]["payloads"] == {"encrypt": False}
    assert history[2]["snapshot"]["settings"]["retention"] == {"raw_days": 7}
    with reading(ctx.engine) as conn:
        actions = [row.action for row in conn.execute(select(AuditEntry.__table__).order_by(AuditEntry.__table__.c.seq))]
    assert actions.count("connection.set") == 2
    one_line_error(wb(db_url, "connection", "set", "acme", "--retain-raw", "7", "--keep-raw-forever",
                      "--reason", "x"), "either", code=2)
    one_line_error(wb(db_url, "connection", "set", "acme", "--reason", "x"), "nothing to set", code=2)
    bad = wb(db_url, "connection", "set", "acme", "--retain-raw", "0", "--reason", "x")
    assert bad.exit_code == 2 and "Traceback" not in bad.output


def test_turning_encryption_on_later_makes_the_key_and_keeps_old_bodies_readable(ctx, vaults, sandbox):
    info = connections.add_connection(ctx, "acme", "stripe", "sandbox")
    bodies = events(2)
    ingest(ctx, "acme", captures_of(bodies[:1]))
    with pytest.raises(PayloadLocked):
        set_payload_settings(ctx, "acme", PayloadChange(encrypt=True), "encrypt from now on")
    set_payload_settings(ctx, "acme", PayloadChange(encrypt=True), "encrypt from now on", vaults)
    assert data_key_name(info.id) in sandbox.read().secrets
    ingest(ctx, "acme", captures_of(bodies[1:], start=5), vaults=vaults)
    assert [row.body_key_version for row in stored_bodies(ctx)] == [None, 1]
    out = io.BytesIO()
    export_captures(ctx, "acme", out, redacted=False, vaults=vaults)
    assert [orjson.loads(line)["body"].encode() for line in out.getvalue().splitlines()] == bodies


# --------------------------------------------------------------------------- credential headers


def test_credential_headers_are_stored_as_a_keyed_mac(ctx, audit_key_file: Path):
    token = "Bearer tok_live_guessable_123"
    key = header_key(ctx.engine)
    assert audit_key_file.exists()  # made on first use, like the audit key it is derived from
    stored: Any = stored_headers({"Authorization": token, "X-Auth": token, "X-Via": "edge"}, key)
    assert stored["X-Via"] == "edge"
    assert stored["Authorization"].startswith(MAC_PREFIX)
    assert stored["Authorization"] == stored["X-Auth"]  # equal tokens, equal MACs: still comparable
    for digest in (hashlib.sha256(token.encode()).hexdigest(), hashlib.sha256(b"tok_live_guessable_123").hexdigest()):
        assert digest[:16] not in stored["Authorization"]  # a guess cannot be confirmed by hashing it
    other: Any = stored_headers({"Authorization": token}, derive_header_key(b"\x01" * 32))
    assert other["Authorization"] != stored["Authorization"]  # another key, another MAC
    assert stored_headers(stored, key) == stored  # the stored form is stored unchanged (retry, resume)
    connections.add_connection(ctx, "acme", "stripe", "sandbox")
    ingest(ctx, "acme", [capture(events(1)[0], headers={"authorization ": token, "Content-Type": "x"})])
    with reading(ctx.engine) as conn:
        headers = conn.execute(select(deliveries.c.headers)).scalar_one()
    assert headers["authorization "] == stored["Authorization"] and "tok_live" not in orjson.dumps(headers).decode()


def test_failures_retry_reruns_an_encrypted_event_with_the_vault_and_seals_its_copy(ctx, vaults):
    encrypted_connection(ctx, vaults)
    story = [pi_event("evt_1", "pi_1", "processing", CREATED, shipping={"name": CANARY}),
             pi_event("evt_2", "pi_1", "succeeded", CREATED + 1),
             pi_event("evt_3", "pi_1", "processing", CREATED + 2, shipping={"name": CANARY})]  # refused: a failure
    ingest(ctx, "acme", captures_of([orjson.dumps(e) for e in story]), vaults=vaults)
    (failure,) = list(iter_failures(ctx))
    locked = triage.retry(ctx, [failure["id"]])
    assert locked.done == [] and "this body is encrypted" in locked.skipped[0][1]
    result = triage.retry(ctx, [failure["id"]], vaults=vaults)
    assert result.messages[failure["id"]].startswith("retry: rejected")
    with reading(ctx.engine) as conn:
        copy = conn.execute(select(deliveries).where(deliveries.c.replay_of.is_not(None))).one()
    assert copy.body_key_version == 1 and CANARY.encode() not in bytes(copy.body)
    assert delivery_payload(ctx, copy.id, vaults)["body"]["id"] == "evt_3"


def test_vault_remove_keeps_a_payload_data_key_unless_forced(db_url, ctx, vaults):
    connection_id = encrypted_connection(ctx, vaults)
    ingest(ctx, "acme", captures_of(events(1)), vaults=vaults)
    key_name = f"payload-key.{connection_id}"
    refused = wb(db_url, "vault", "remove", key_name)
    assert "never be read again; nothing was removed (add --force" in one_line_error(refused, code=2)
    assert delivery_payload(ctx, stored_bodies(ctx)[0].id, vaults)["body_state"] == "encrypted"

    forced = wb(db_url, "vault", "remove", key_name, "--force")
    assert forced.exit_code == 0 and f"removed {key_name}" in forced.stdout
    with pytest.raises(PayloadKeyError, match="restore the vault from a backup"):  # what --force warned of
        delivery_payload(ctx, stored_bodies(ctx)[0].id, vaults)
