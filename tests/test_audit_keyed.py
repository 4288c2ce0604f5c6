"""The keyed, anchored audit chain: tampering by someone who can write the database (but does
not hold the key kept outside it) is caught, with the first broken entry and the cause named,
even when the intruder rewinds the head row and recomputes plain hashes; an export verifies on
its own, redaction notwithstanding; a store from before the key upgrades with its history."""

from __future__ import annotations

import io
import os
import stat
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from alembic import command
from click.testing import CliRunner
from sqlalchemy import create_engine, select, text

from store.database import _alembic_config, open_store, reading, writing
from store.models import AuditEntry, AuditHead
from tests.support import add_stripe, make_context
from tests.test_faults import ok, run
from workbench.cli.main import cli
from workbench.domain.audit_chain import FIELDS, GENESIS_HASH, legacy_hash
from workbench.services import audit, connections
from workbench.services.audit_anchor import anchor_files, read_checkpoint, write_checkpoint

entries = AuditEntry.__table__
head = AuditHead.__table__
CARD = "4242 4242 4242 4242"  # masked by redaction in exports


@pytest.fixture
def chain(ctx):
    """Five keyed entries from real configuration changes; entry 3's reason holds a card."""
    add_stripe(ctx, "acme")
    connections.set_paused(ctx, "acme", True, "key rotation")
    connections.set_paused(ctx, "acme", False, f"customer read out {CARD}")
    connections.add_connection(ctx, "globex", "stripe", "live", "new tenant")
    connections.set_paused(ctx, "globex", True, "incident 42")
    assert audit.verify(ctx) == audit.VerifyResult(True, 5)
    return ctx


def _sql(ctx, *statements: str, **params: Any) -> None:
    with writing(ctx.engine) as conn:
        for statement in statements:
            conn.execute(text(statement), params)


def _broken(ctx) -> tuple[bool, int | None, str | None]:
    result = audit.verify(ctx)
    assert result.ok or (result.problem is not None and str(result.cause) in result.problem)
    return result.ok, result.broken_seq, result.cause


def _rows(ctx) -> list[dict[str, Any]]:
    with reading(ctx.engine) as conn:
        return [row._asdict() for row in conn.execute(select(entries).order_by(entries.c.seq))]


def _rehash_as_legacy(ctx) -> None:
    """What an intruder without the key can do: recompute plain hashes over the remaining
    rows, then point the head row at the new end."""
    prev = GENESIS_HASH
    with writing(ctx.engine) as conn:
        for row in conn.execute(select(entries).order_by(entries.c.seq)).all():
            digest = legacy_hash(prev, audit._stored(row))
            conn.execute(entries.update().where(entries.c.seq == row.seq)
                         .values(scheme="sha256", prev_hash=prev, hash=digest))
            prev = digest
        last = conn.execute(select(entries.c.seq).order_by(entries.c.seq.desc()).limit(1)).scalar() or 0
        conn.execute(head.update().values(seq=last, hash=prev))


# -- each kind of tampering, named ---------------------------------------------------------------------

def test_an_edited_entry_is_named(chain):
    _sql(chain, "UPDATE audit_entries SET reason = 'nothing to see' WHERE seq = 3")
    assert _broken(chain) == (False, 3, "edited")


def test_a_deleted_middle_entry_is_named(chain):
    _sql(chain, "DELETE FROM audit_entries WHERE seq = 3")
    assert _broken(chain) == (False, 3, "deleted")


def test_a_deleted_last_entry_is_named(chain):
    _sql(chain, "DELETE FROM audit_entries WHERE seq = 5")
    assert _broken(chain) == (False, 5, "deleted")


def test_reordered_entries_are_named(chain):
    _sql(chain, "UPDATE audit_entries SET seq = -1 WHERE seq = 2", "UPDATE audit_entries SET seq = 2 WHERE seq = 4",
         "UPDATE audit_entries SET seq = 4 WHERE seq = -1")
    assert _broken(chain) == (False, 2, "reordered")


def test_a_forged_append_is_named_forged_not_deleted(chain):
    """An entry added at the end with the head row bumped: its MAC cannot be made without the
    key, whether it claims to be keyed or a plain legacy entry."""
    last = _rows(chain)[-1]
    for scheme in ("hmac-sha256", "sha256"):
        forged = {**last, "seq": 6, "reason": "granted myself admin", "prev_hash": last["hash"], "scheme": scheme}
        forged["hash"] = legacy_hash(last["hash"], {**{n: forged[n] for n in FIELDS}, "at": forged["at"].isoformat()})
        with writing(chain.engine) as conn:
            conn.execute(entries.insert().values(forged))
            conn.execute(head.update().values(seq=6, hash=forged["hash"]))
        assert _broken(chain) == (False, 6, "forged"), scheme
        _sql(chain, "DELETE FROM audit_entries WHERE seq = 6")
        with writing(chain.engine) as conn:
            conn.execute(head.update().values(seq=5, hash=last["hash"]))
        assert audit.verify(chain).ok


def test_a_cut_off_tail_with_the_head_row_rewound_is_truncated(chain):
    """Before the checkpoint, deleting the last entries and rewinding audit_head verified as intact."""
    fourth = _rows(chain)[3]
    with writing(chain.engine) as conn:
        conn.execute(entries.delete().where(entries.c.seq == 5))
        conn.execute(head.update().values(seq=4, hash=fourth["hash"]))
    assert _broken(chain) == (False, 5, "truncated")
    assert audit.verify(chain).checked == 4


def test_a_full_rehash_with_plain_hashes_is_caught(chain):
    """Cut the tail, recompute every plain hash and rewind the head: a plain hash where the
    checkpoint says keyed entries begin is refused at the first entry."""
    _sql(chain, "DELETE FROM audit_entries WHERE seq >= 4")
    _rehash_as_legacy(chain)
    assert _broken(chain) == (False, 1, "forged")


def test_an_emptied_head_row_is_a_broken_chain_exit_4(chain, db_url):
    _sql(chain, "DELETE FROM audit_head")
    result = audit.verify(chain)
    assert (result.ok, result.cause) == (False, "deleted") and "audit_head" in result.problem
    outcome = run(db_url, "audit", "verify")
    assert outcome.returncode == 4 and outcome.stdout == b""
    assert outcome.stderr.decode().splitlines() == [f"audit chain broken: {result.problem}"]


def test_cli_names_the_cause_and_exits_4(chain, db_url):
    fourth = _rows(chain)[3]
    with writing(chain.engine) as conn:
        conn.execute(entries.delete().where(entries.c.seq == 5))
        conn.execute(head.update().values(seq=4, hash=fourth["hash"]))
    outcome = run(db_url, "audit", "verify")
    assert outcome.returncode == 4, outcome.stderr
    [line] = outcome.stderr.decode().splitlines()
    assert line.startswith("audit chain broken at entry 5: ") and "truncated" in line


# -- the checkpoint -------------------------------------------------------------------------------------

def test_a_checkpoint_behind_the_table_is_not_an_alarm(chain):
    """A crash after a commit and before its checkpoint leaves the checkpoint behind: the
    entries past it still verify by their MACs, and the next write catches it up."""
    files = anchor_files(chain.engine)
    rows = _rows(chain)
    files.checkpoint.write_bytes(orjson.dumps({"seq": 3, "mac": rows[2]["hash"], "first_keyed": 1}))
    assert audit.verify(chain).ok
    connections.set_paused(chain, "acme", True, "after the crash")
    assert read_checkpoint(files).seq == 6 and audit.verify(chain).ok


def test_the_checkpoint_never_goes_backwards(chain):
    files = anchor_files(chain.engine)
    current = read_checkpoint(files)
    assert (current.seq, current.mac, current.first_keyed) == (5, _rows(chain)[-1]["hash"], 1)
    write_checkpoint(files, 4, "stale", 1)  # a slower process committing an earlier entry
    assert read_checkpoint(files) == current
    assert stat.S_IMODE(files.checkpoint.stat().st_mode) == 0o600


def test_without_a_checkpoint_here_verify_says_the_tail_is_unguarded(chain, db_url):
    anchor_files(chain.engine).checkpoint.unlink()
    result = audit.verify(chain)
    assert result.ok and not result.anchored
    assert "a cut-off tail could not be detected" in ok(run(db_url, "audit", "verify"))


def test_a_tampered_checkpoint_file_is_a_clear_error(chain, db_url):
    anchor_files(chain.engine).checkpoint.write_text("{not json")
    outcome = run(db_url, "audit", "verify")
    assert outcome.returncode == 1 and "audit checkpoint" in outcome.stderr.decode()
    assert len(outcome.stderr.splitlines()) == 1 and b"Traceback" not in outcome.stderr


def test_appenders_in_several_processes_keep_the_chain_and_checkpoint(db_url, ctx):
    """The head row lock serialises appenders; each writes the checkpoint after its commit,
    under a file lock, and only if newer: after the race it names the last entry."""
    add_stripe(ctx, "acme")
    script = (
        "import sys\n"
        "from store.database import open_store\n"
        "from tests.support import make_context\n"
        "from workbench.services import connections\n"
        "engine = open_store(sys.argv[1])\n"
        "ctx = make_context(engine)\n"
        "for i in range(15):\n"
        "    connections.add_connection(ctx, f'{sys.argv[2]}-{i}', 'stripe', 'sandbox', 'race')\n"
        "engine.dispose()\n"
    )
    workers = [subprocess.Popen([sys.executable, "-c", script, db_url, name], cwd=Path(__file__).parent.parent)
               for name in ("one", "two", "three")]
    assert [worker.wait(timeout=120) for worker in workers] == [0, 0, 0]
    result = audit.verify(ctx)
    assert result.ok and result.checked == 1 + 45
    assert read_checkpoint(anchor_files(ctx.engine)).seq == 46


# -- the key --------------------------------------------------------------------------------------------

def test_the_key_file_is_made_on_first_use_readable_only_by_its_owner(chain, audit_key_file):
    assert stat.S_IMODE(audit_key_file.stat().st_mode) == 0o600
    assert len(audit_key_file.read_bytes()) == 32


def test_the_default_key_sits_beside_the_sqlite_store(tmp_path, monkeypatch):
    monkeypatch.delenv("WORKBENCH_AUDIT_KEY_FILE")
    url = f"sqlite:///{tmp_path / 'store.db'}"
    ok(run(url, "db", "upgrade"))
    ok(run(url, "connection", "add", "acme", "--provider", "stripe", env={"WORKBENCH_AUDIT_KEY_FILE": ""}))
    key = tmp_path / "store.db.audit-key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.glob("store.db.audit-key.*.head")]


def test_a_key_others_may_read_is_refused_in_one_line(chain, db_url, audit_key_file):
    os.chmod(audit_key_file, 0o644)
    outcome = run(db_url, "connection", "pause", "acme", "--reason", "x")
    assert outcome.returncode == 1 and b"Traceback" not in outcome.stderr
    assert outcome.stderr.decode().splitlines() == [
        f"error: the audit key at {audit_key_file} may be read by other users; run `chmod 600 {audit_key_file}`"]
    os.chmod(audit_key_file, 0o600)
    assert audit.verify(chain).checked == 5  # nothing was written


def test_verify_with_another_key_fails_as_edited(chain, audit_key_file):
    audit_key_file.write_bytes(b"k" * 32)
    assert _broken(chain) == (False, 1, "edited")


def test_a_triage_action_appends_without_any_prompt(db_url, tmp_path):
    """A failure resolved from a script with no terminal: no passphrase, the key made on the spot."""
    from tests.test_cli import every_verdict_file, js, wb

    # The store and its failures are made by the same commands in this process (a second of
    # start-up each saved); only the resolve under test runs as a script with no terminal.
    assert wb(db_url, "db", "upgrade").exit_code == 0
    assert wb(db_url, "connection", "add", "acme", "--provider", "stripe").exit_code == 0
    wb(db_url, "ingest", "acme", str(every_verdict_file(tmp_path)))
    failures = js(wb(db_url, "failures", "--json"))
    assert failures
    outcome = subprocess.run([str(Path(sys.executable).with_name("workbench")), "failures", "resolve",
                              failures[0]["id"], "--note", "handled"], stdin=subprocess.DEVNULL,
                             capture_output=True, env={**os.environ, "WORKBENCH_DB": db_url}, timeout=120)
    assert outcome.returncode == 0, outcome.stderr
    assert "intact" in ok(run(db_url, "audit", "verify"))


# -- export and verify --file ---------------------------------------------------------------------------

def _export(ctx) -> list[dict[str, Any]]:
    out = io.BytesIO()
    audit.export(ctx, out)
    return [orjson.loads(line) for line in out.getvalue().splitlines()]


def _verify_lines(lines: list[dict[str, Any]], key: Path) -> audit.VerifyResult:
    return audit.verify_export(io.BytesIO(b"".join(orjson.dumps(line) + b"\n" for line in lines)), key)


def test_a_redacted_export_verifies_on_its_own(chain, audit_key_file):
    lines = _export(chain)
    assert CARD not in orjson.dumps(lines).decode()
    assert set(lines[2]["digests"]) == {"reason"}  # the field redaction changed, by its digest
    assert all("digests" not in line for i, line in enumerate(lines) if i != 2)
    assert _verify_lines(lines, audit_key_file) == audit.VerifyResult(True, 5)


@pytest.mark.parametrize("change, seq, cause", [
    (lambda lines: lines[1].update(reason="edited"), 2, "edited"),
    (lambda lines: lines[2].update(reason="[redacted] but different"), 3, "edited"),
    (lambda lines: lines.pop(3), 4, "deleted"),
    (lambda lines: lines.insert(1, lines.pop(3)), 2, "reordered"),
])
def test_an_edited_export_fails(chain, audit_key_file, change, seq, cause):
    lines = _export(chain)
    change(lines)
    result = _verify_lines(lines, audit_key_file)
    assert (result.ok, result.broken_seq, result.cause) == (False, seq, cause)


def test_an_export_line_resealed_without_the_key_fails(chain, audit_key_file):
    lines = _export(chain)
    del lines[1]["seal"]
    lines[1]["reason"] = "edited"
    assert _verify_lines(lines, audit_key_file).broken_seq == 2


def test_cli_export_then_verify_file(chain, db_url, tmp_path, audit_key_file):
    export = tmp_path / "trail.jsonl"
    ok(run(db_url, "audit", "export", "-o", str(export)))
    assert "audit chain intact: 5 entries" in ok(run(db_url, "audit", "verify", "--file", str(export)))
    # On another machine: only the export and the key.
    result = CliRunner().invoke(cli, ["audit", "verify", "--file", str(export), "--key", str(audit_key_file)])
    assert result.exit_code == 0 and "intact: 5" in result.stdout
    lines = export.read_bytes().splitlines()
    lines[3] = lines[3].replace(b"incident", b"accident").replace(b"new tenant", b"old tenant")
    export.write_bytes(b"\n".join(lines) + b"\n")
    outcome = run(db_url, "audit", "verify", "--file", str(export))
    assert outcome.returncode == 4
    assert outcome.stderr.decode().startswith("audit chain broken at entry 4: ")
    missing = run(db_url, "audit", "verify", "--file", str(tmp_path / "nope.jsonl"))
    assert missing.returncode == 1 and missing.stderr.decode().startswith("error: cannot read the export")


# -- a store from before the key ------------------------------------------------------------------------

def _legacy_store(db_url: str) -> None:
    """A store at revision 0002 with entries as that workbench made them (plain SHA-256)."""
    plain = create_engine(db_url)
    try:
        command.upgrade(_alembic_config(plain), "0002")
        prev = GENESIS_HASH
        with plain.begin() as conn:
            for seq in (1, 2, 3):
                at = datetime(2026, 10, seq, 12, tzinfo=UTC)
                fields = {"seq": seq, "at": at.isoformat(), "actor": "user:old", "action": "connection.pause",
                          "target_type": "connection", "target_id": "con_1", "before": {"paused": False},
                          "after": {"paused": True}, "reason": f"old {seq}"}
                digest = legacy_hash(prev, fields)
                # Only the columns revision 0002 has (no scheme).
                conn.execute(entries.insert().values({**fields, "at": at, "prev_hash": prev, "hash": digest}))
                prev = digest
            conn.execute(head.update().values(seq=3, hash=prev))
    finally:
        plain.dispose()


def test_a_store_from_before_the_key_upgrades_and_verifies(db_url, audit_key_file):
    _legacy_store(db_url)
    engine = open_store(db_url, auto_upgrade=True)
    try:
        ctx = make_context(engine)
        result = audit.verify(ctx)  # no key needed for plain entries, and nothing to anchor them yet
        assert (result.ok, result.checked, result.anchored) == (True, 3, False)
        assert not audit_key_file.exists()
        assert _verify_lines(_export(ctx), audit_key_file) == audit.VerifyResult(True, 3)  # sealed with a new key
        add_stripe(ctx, "acme")
        rows = _rows(ctx)
        assert [r["scheme"] for r in rows] == ["sha256"] * 3 + ["hmac-sha256"]
        assert rows[3]["prev_hash"] == rows[2]["hash"]  # the first keyed entry follows the last plain one
        assert audit.verify(ctx) == audit.VerifyResult(True, 4)
        assert read_checkpoint(anchor_files(engine)).first_keyed == 4
        assert _verify_lines(_export(ctx), audit_key_file).ok
        _sql(ctx, "UPDATE audit_entries SET reason = 'rewritten' WHERE seq = 2")
        assert _broken(ctx) == (False, 2, "edited")
        _sql(ctx, "UPDATE audit_entries SET reason = 'old 2' WHERE seq = 2")
        # Turning the keyed entry into a plain one (rehashed) is refused.
        _rehash_as_legacy(ctx)
        assert _broken(ctx) == (False, 4, "forged")
    finally:
        engine.dispose()


def test_processes_racing_to_make_the_key_all_get_the_same_one(tmp_path):
    """Key creation links a complete file into place: a racer reads that, never an empty one."""
    key = tmp_path / "race" / "audit.key"
    script = ("import sys\nfrom pathlib import Path\nfrom workbench.services.audit_anchor import AnchorFiles, load_key\n"
              "path = Path(sys.argv[1])\nsys.stdout.write(load_key(AnchorFiles(path, path), create=True).hex())\n")
    racers = [subprocess.Popen([sys.executable, "-c", script, str(key)], stdout=subprocess.PIPE,
                               cwd=Path(__file__).parent.parent) for _ in range(4)]
    keys = {racer.communicate(timeout=60)[0] for racer in racers}
    assert keys == {key.read_bytes().hex().encode()} and [racer.returncode for racer in racers] == [0] * 4
    assert [p.name for p in key.parent.iterdir()] == ["audit.key"]  # no temporary file left
