"""The credential vault through the `workbench vault` command and the vault package: real files,
real key derivations, real processes for concurrent writers. Every failure is one line and
leaves the file byte for byte as it was. Every change is audited, so every command here runs
against a store (SQLite; the audit entries themselves are checked on both backends)."""

from __future__ import annotations

import dataclasses
import fcntl
import io
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner, Result

from store.database import open_store
from tests.support import make_context
from workbench.cli.main import cli
from workbench.services import audit, vault as vault_service
from workbench.services.errors import ReadOnlyStore
from workbench.vault import (
    KdfParams,
    VaultDamaged,
    WrongPassphrase,
    create,
    file_format,
    unlock,
    vault_path,
)

WORKBENCH = Path(sys.executable).with_name("workbench")
PASS = "correct horse battery"
# Cheap parameters for tests of the file format alone (the header records them; the CLI
# always uses the tuned defaults).
CHEAP = KdfParams(memory_kib=1024, iterations=1, lanes=1)


@pytest.fixture
def vdir() -> Path:
    return Path(os.environ["WORKBENCH_VAULT_DIR"])


@pytest.fixture(autouse=True)
def store_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The store every vault command here audits its changes in (WORKBENCH_DB, which the
    concurrent writers' processes inherit)."""
    url = f"sqlite:///{tmp_path / 'vault-audit.db'}"
    open_store(url, auto_upgrade=True).dispose()
    monkeypatch.setenv("WORKBENCH_DB", url)
    return url


def wb(*args: str, input: bytes | str | None = None, passphrase: str | None = PASS,
       env: dict[str, str] | None = None) -> Result:
    environment = {"WORKBENCH_VAULT_PASSPHRASE": passphrase, **(env or {})}
    return CliRunner().invoke(cli, list(args), input=input, env=environment, catch_exceptions=False)


def ok(result: Result) -> str:
    assert result.exit_code == 0, result.output
    return result.stdout


def one_line_error(result: Result, *words: str, code: int = 1) -> str:
    assert result.exit_code == code, result.output
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def listed(environment: str = "sandbox", passphrase: str = PASS) -> list[dict[str, object]]:
    result: list[dict[str, object]] = orjson.loads(ok(wb("vault", "list", "--environment", environment, "--json",
                                                          passphrase=passphrase)))
    return result


@pytest.fixture
def sandbox(vdir: Path) -> Path:
    ok(wb("vault", "init"))
    ok(wb("vault", "set", "stripe-key", input="sk_test_first\n"))
    return vault_path("sandbox", vdir)


# -- the file on disk --------------------------------------------------------------------------------

def test_init_makes_a_private_file_in_a_private_directory(vdir: Path):
    assert "created the live vault" in ok(wb("vault", "init", "--environment", "live"))
    path = vault_path("live", vdir)
    assert path.stat().st_mode & 0o777 == 0o600
    assert vdir.stat().st_mode & 0o777 == 0o700
    header = orjson.loads(path.read_bytes().split(b"\n", 1)[0])
    assert header["format"] == "integration-workbench-vault" and header["version"] == 1
    assert header["kdf"]["name"] == "argon2id" and header["cipher"]["name"] == "aes-256-gcm"
    before = path.read_bytes()
    one_line_error(wb("vault", "init", "--environment", "live"), "already exists")
    assert path.read_bytes() == before
    assert listed("live") == []


def test_every_write_draws_a_new_salt_and_nonce(sandbox: Path):
    first = orjson.loads(sandbox.read_bytes().split(b"\n", 1)[0])
    ok(wb("vault", "set", "other", input="x-value"))
    second = orjson.loads(sandbox.read_bytes().split(b"\n", 1)[0])
    assert first["kdf"]["salt"] != second["kdf"]["salt"]
    assert first["cipher"]["nonce"] != second["cipher"]["nonce"]


# -- refusals: one line, file unchanged ----------------------------------------------------------------

def test_a_writer_killed_half_way_leaves_the_vault_whole(sandbox: Path):
    """What a writer killed between its temporary file and the rename leaves: the old vault,
    readable, and a temporary file the next writer clears away."""
    before = sandbox.read_bytes()
    leftover = sandbox.parent / f".{sandbox.name}.k1ll3d.tmp"
    leftover.write_bytes(before[: len(before) // 2])
    assert [s["name"] for s in listed()] == ["stripe-key"]
    ok(wb("vault", "set", "after-crash", input="v"))
    assert not leftover.exists()
    assert [s["name"] for s in listed()] == ["after-crash", "stripe-key"]


def test_a_wrong_passphrase_is_one_line_and_changes_nothing(sandbox: Path):
    before = sandbox.read_bytes()
    one_line_error(wb("vault", "list", passphrase="not the passphrase"), "wrong passphrase", "sandbox")
    one_line_error(wb("vault", "rotate", "stripe-key", input="sk_test_other", passphrase="not the passphrase"),
                   "wrong passphrase")
    assert sandbox.read_bytes() == before


@pytest.mark.parametrize("where", ["header", "ciphertext", "tag", "digest"])
def test_a_flipped_byte_anywhere_is_one_line_and_changes_nothing(sandbox: Path, where: str):
    data = sandbox.read_bytes()
    header_end = data.index(b"\n") + 1
    offset = {"header": 20, "ciphertext": header_end + 2, "tag": len(data) - 40, "digest": len(data) - 1}[where]
    damaged = data[:offset] + bytes([data[offset] ^ 0x01]) + data[offset + 1:]
    sandbox.write_bytes(damaged)
    one_line_error(wb("vault", "list"), "damaged", "restore it from a backup")
    one_line_error(wb("vault", "set", "new-one", input="v"), "damaged")
    assert sandbox.read_bytes() == damaged


def test_a_forged_edit_with_a_recomputed_digest_fails_the_tag(tmp_path: Path):
    import hashlib

    path = tmp_path / "sandbox.vault"
    create(path, "sandbox", PASS, params=CHEAP)
    data = path.read_bytes()
    body = data[:-32]
    body = body[:-5] + bytes([body[-5] ^ 0x80]) + body[-4:]
    path.write_bytes(body + hashlib.sha256(body).digest())
    with pytest.raises(VaultDamaged, match="altered"):
        unlock(path, "sandbox", PASS)
    with pytest.raises(WrongPassphrase):
        unlock(path, "sandbox", "another passphrase")


def test_a_truncated_file_is_one_line_and_changes_nothing(sandbox: Path):
    data = sandbox.read_bytes()
    for length in (0, 10, data.index(b"\n") + 1, len(data) // 2, len(data) - 1):
        sandbox.write_bytes(data[:length])
        one_line_error(wb("vault", "list"), "damaged")
        one_line_error(wb("vault", "rotate", "stripe-key", input="sk_test_x"), "damaged")
        assert sandbox.read_bytes() == data[:length]


def test_an_unknown_header_version_is_named(sandbox: Path):
    data = sandbox.read_bytes().replace(b'"version":1', b'"version":7', 1)
    sandbox.write_bytes(data)
    one_line_error(wb("vault", "list"), "format version 7", "does not know")
    assert sandbox.read_bytes() == data


def test_a_missing_vault_or_passphrase_says_what_to_do(vdir: Path):
    one_line_error(wb("vault", "list"), "no sandbox vault", "workbench vault init")
    ok(wb("vault", "init"))
    one_line_error(wb("vault", "list", passphrase=None), "WORKBENCH_VAULT_PASSPHRASE")
    one_line_error(wb("vault", "init", "--environment", "live", passphrase="short"), "too short", code=2)
    assert not vault_path("live", vdir).exists()


def test_a_value_is_never_taken_from_the_command_line(sandbox: Path):
    result = wb("vault", "set", "other", "sk_test_on_the_command_line")
    assert result.exit_code == 2 and "sk_test_on_the_command_line" not in listed().__repr__()
    one_line_error(wb("vault", "set", "empty", input=""), "empty", code=2)
    one_line_error(wb("vault", "set", "bad/name", input="v"), "not allowed", code=2)
    one_line_error(wb("vault", "set", "stripe-key", input="v"), "already has", "vault rotate")
    one_line_error(wb("vault", "rotate", "nope", input="v"), "no secret named 'nope'")


# -- versions, rekey ------------------------------------------------------------------------------------

def test_rotate_keeps_every_version_with_its_times(sandbox: Path):
    [first] = listed()
    assert first["version"] == 1 and first["rotated_at"] is None and set(first) == {
        "name", "version", "created_at", "rotated_at"}
    assert "version 2" in ok(wb("vault", "rotate", "stripe-key", input="sk_test_second\n"))
    assert "version 3" in ok(wb("vault", "rotate", "stripe-key", input="sk_test_third"))
    [now] = listed()
    assert now["version"] == 3 and now["created_at"] == first["created_at"] and now["rotated_at"] is not None
    versions = unlock(sandbox, "sandbox", PASS).read().secrets["stripe-key"]
    assert [v.value for v in versions] == ["sk_test_first", "sk_test_second", "sk_test_third"]
    assert all(v.rotated_at is not None for v in versions[:2]) and versions[2].rotated_at is None
    assert versions[0].rotated_at == versions[1].created_at
    assert "sk_test" not in ok(wb("vault", "list"))
    assert "removed stripe-key (3 versions)" in ok(wb("vault", "remove", "stripe-key"))
    assert listed() == []


def test_rekey_makes_the_old_passphrase_fail(sandbox: Path):
    new = "a brand new passphrase"
    ok(wb("vault", "rekey", env={"WORKBENCH_VAULT_NEW_PASSPHRASE": new}))
    one_line_error(wb("vault", "list"), "wrong passphrase")
    assert [s["name"] for s in listed(passphrase=new)] == ["stripe-key"]
    assert unlock(sandbox, "sandbox", new).read().current("stripe-key").value == "sk_test_first"
    one_line_error(wb("vault", "rekey", passphrase=new), "WORKBENCH_VAULT_NEW_PASSPHRASE")


@pytest.mark.real_kdf
def test_rekey_moves_an_old_file_onto_todays_parameters(tmp_path: Path):
    path = tmp_path / "sandbox.vault"
    create(path, "sandbox", PASS, params=CHEAP)
    opened = unlock(path, "sandbox", PASS)
    opened.update(lambda c: c.with_new("k", "v", datetime.now(UTC)))
    assert orjson.loads(path.read_bytes().split(b"\n", 1)[0])["kdf"]["memory_kib"] == CHEAP.memory_kib
    opened.rekey("the next passphrase")
    assert orjson.loads(path.read_bytes().split(b"\n", 1)[0])["kdf"]["memory_kib"] == KdfParams().memory_kib
    assert unlock(path, "sandbox", "the next passphrase").read().current("k").value == "v"


def test_a_file_copied_to_the_other_environment_is_refused(sandbox: Path, vdir: Path):
    vault_path("live", vdir).write_bytes(sandbox.read_bytes())
    one_line_error(wb("vault", "list", "--environment", "live"), "holds the 'sandbox' vault")


# -- concurrent writers ---------------------------------------------------------------------------------

def _spawn_set(name: str, value: str, tmp_path: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "WORKBENCH_VAULT_PASSPHRASE": PASS}
    (tmp_path / name).write_text(value)
    with (tmp_path / name).open("rb") as stdin:
        return subprocess.Popen([str(WORKBENCH), "vault", "set", name], stdin=stdin,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)


def test_concurrent_writers_all_land_or_are_told_the_vault_is_busy(sandbox: Path, tmp_path: Path):
    writers = {f"key-{i}": _spawn_set(f"key-{i}", f"value-{i}", tmp_path) for i in range(4)}
    reads = 0
    while any(p.poll() is None for p in writers.values()):  # a reader meanwhile: always a whole file
        file_format.parse(sandbox.read_bytes(), "the vault")
        reads += 1
    assert reads > 0
    landed = {"stripe-key"}
    for name, process in writers.items():
        out, err = process.communicate(timeout=120)
        if process.returncode == 0:
            landed.add(name)
        else:
            assert err.decode().strip() == f"error: vault busy: another process is writing {sandbox.name}; try again"
    assert len(landed) >= 2  # serialised, not lost: the first writer always lands
    contents = unlock(sandbox, "sandbox", PASS).read()
    assert set(contents.secrets) == landed
    assert all(contents.current(n).value == f"value-{n[-1]}" for n in landed - {"stripe-key"})
    assert not [p for p in sandbox.parent.iterdir() if p.name.endswith(".tmp")]


def test_a_writer_facing_a_held_lock_says_busy_and_writes_nothing(sandbox: Path, tmp_path: Path):
    before = sandbox.read_bytes()
    fd = os.open(f"{sandbox}.lock", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        process = _spawn_set("blocked", "value", tmp_path)
        _out, err = process.communicate(timeout=120)
        assert process.returncode == 1
        assert err.decode().strip() == f"error: vault busy: another process is writing {sandbox.name}; try again"
        assert sandbox.read_bytes() == before
        assert [s["name"] for s in listed()] == ["stripe-key"]  # readers need no lock
    finally:
        os.close(fd)
    ok(wb("vault", "set", "blocked", input="now it lands"))


# -- reveal is audited -----------------------------------------------------------------------------------

def test_reveal_prints_the_value_after_an_audit_entry(db_url: str, sandbox: Path):
    ok(wb("--db", db_url, "db", "upgrade"))
    assert ok(wb("--db", db_url, "vault", "reveal", "stripe-key")) == "sk_test_first\n"
    engine = open_store(db_url)
    try:
        ctx = make_context(engine)
        [entry] = audit.search(ctx, "vault.reveal")
        assert entry["target_type"] == "secret" and entry["target_id"] == "sandbox/stripe-key"
        assert entry["after"] == {"environment": "sandbox", "name": "stripe-key", "version": 1}
        assert entry["actor"].startswith("user:")
        assert audit.verify(ctx).ok
        buffer = io.BytesIO()
        audit.export(ctx, buffer)
        assert b"sk_test_first" not in buffer.getvalue()
    finally:
        engine.dispose()


def test_no_reveal_without_a_store_to_audit_it(tmp_path: Path, sandbox: Path):
    result = wb("--db", f"sqlite:///{tmp_path / 'none.db'}", "vault", "reveal", "stripe-key")
    one_line_error(result, "no store")
    assert "sk_test_first" not in result.output


# -- every change is audited ----------------------------------------------------------------------------

def vault_entries(db_url: str) -> list[dict[str, object]]:
    engine = open_store(db_url)
    try:
        ctx = make_context(engine)
        assert audit.verify(ctx).ok
        buffer = io.BytesIO()
        audit.export(ctx, buffer)
        assert b"sk_test_" not in buffer.getvalue() and b"AUDITvalue" not in buffer.getvalue()
        return [e for e in reversed(audit.search(ctx, "vault.")) if str(e["action"]).startswith("vault.")]
    finally:
        engine.dispose()


def test_every_vault_change_is_audited_without_its_value(db_url: str):
    ok(wb("--db", db_url, "db", "upgrade"))
    assert "created the live vault" in ok(wb("--db", db_url, "vault", "init", "-e", "live"))
    assert ok(wb("--db", db_url, "vault", "set", "api-key", "-e", "live", input="sk_test_AUDITvalue1")) == (
        "stored api-key (version 1) in the live vault\n")
    ok(wb("--db", db_url, "vault", "rotate", "api-key", "-e", "live", input="sk_test_AUDITvalue2"))
    ok(wb("--db", db_url, "vault", "set", "other", "-e", "live", input="AUDITvalue3"))
    assert "removed other (1 version)" in ok(wb("--db", db_url, "vault", "remove", "other", "-e", "live"))
    ok(wb("--db", db_url, "vault", "rekey", "-e", "live", env={"WORKBENCH_VAULT_NEW_PASSPHRASE": "the new one!"}))
    entries = vault_entries(db_url)
    assert [(e["action"], e["target_type"], e["target_id"]) for e in entries] == [
        ("vault.init", "vault", "live"),
        ("vault.set", "secret", "live/api-key"),
        ("vault.rotate", "secret", "live/api-key"),
        ("vault.set", "secret", "live/other"),
        ("vault.remove", "secret", "live/other"),
        ("vault.rekey", "vault", "live"),
    ]
    assert entries[2]["after"] == {"environment": "live", "name": "api-key", "version": 2}
    assert entries[4]["before"] == {"environment": "live", "name": "other", "version": 1}
    assert entries[4]["after"] is None
    assert all(str(e["actor"]).startswith("user:") for e in entries)


def test_a_refused_change_is_not_audited_and_a_list_needs_no_store(db_url: str, sandbox: Path):
    ok(wb("--db", db_url, "db", "upgrade"))
    before = sandbox.read_bytes()
    one_line_error(wb("--db", db_url, "vault", "set", "stripe-key", input="v"), "already has")
    one_line_error(wb("--db", db_url, "vault", "rotate", "nope", input="v"), "no secret named")
    one_line_error(wb("--db", db_url, "vault", "set", "x", input="v", passphrase="not the passphrase"),
                   "wrong passphrase")
    assert sandbox.read_bytes() == before
    assert vault_entries(db_url) == []
    assert [s["name"] for s in orjson.loads(ok(wb("--db", "sqlite:///nowhere/at/all.db", "vault", "list",
                                                   "--json")))] == ["stripe-key"]


def test_no_change_without_a_store_to_audit_it(tmp_path: Path, sandbox: Path, vdir: Path):
    before = sandbox.read_bytes()
    missing = f"sqlite:///{tmp_path / 'none.db'}"
    for args in (["set", "new-one"], ["rotate", "stripe-key"], ["remove", "stripe-key"], ["rekey"]):
        result = wb("--db", missing, "vault", *args, input="sk_test_never_stored",
                    env={"WORKBENCH_VAULT_NEW_PASSPHRASE": "another passphrase"})
        one_line_error(result, "no store")
    one_line_error(wb("--db", missing, "vault", "init", "-e", "live"), "no store")
    assert sandbox.read_bytes() == before and not vault_path("live", vdir).exists()


def test_a_read_only_store_refuses_a_change_before_the_vault_is_touched(store_url: str, sandbox: Path):
    engine = open_store(store_url)
    try:
        ctx = dataclasses.replace(make_context(engine), read_only=True)
        opened = vault_service.unlock_vault("sandbox", PASS)
        before = sandbox.read_bytes()
        with pytest.raises(ReadOnlyStore, match="could not be audited; nothing was changed"):
            vault_service.set_secret(ctx, opened, "other", "v")
        with pytest.raises(ReadOnlyStore):
            vault_service.rekey_vault(ctx, opened, "a new passphrase")
        assert sandbox.read_bytes() == before
    finally:
        engine.dispose()


def test_a_change_the_trail_could_not_take_says_the_vault_has_it(sandbox: Path, tmp_path: Path):
    """The audit key cannot be read once the vault is written: the one line says the vault has
    the change and the trail does not (so the operator knows not to retry the set)."""
    unreadable = tmp_path / "key-is-a-directory"
    unreadable.mkdir()
    result = wb("vault", "set", "late-audit", input="sk_test_AUDITvalue9",
                env={"WORKBENCH_AUDIT_KEY_FILE": str(unreadable)})
    line = one_line_error(result, "stored late-audit (version 1) in the sandbox vault: the vault has the change, "
                          "the audit trail does not (its entry could not be written: cannot read the audit key")
    assert "AUDITvalue" not in line
    assert [s["name"] for s in listed()] == ["late-audit", "stripe-key"]


# -- the demo ---------------------------------------------------------------------------------------------

def test_the_demo_creates_a_sandbox_vault_under_the_documented_passphrase(tmp_path: Path, vdir: Path):
    out = ok(wb("--db", f"sqlite:///{tmp_path / 'demo.db'}", "demo", "--records", "20", passphrase=None))
    assert "demo-passphrase" in out
    assert [s["name"] for s in listed(passphrase="demo-passphrase")] == [vault_service.DEMO_SECRET_NAME]
    before = vault_path("sandbox", vdir).read_bytes()
    ok(wb("--db", f"sqlite:///{tmp_path / 'demo2.db'}", "demo", "--records", "20", passphrase=None))
    assert vault_path("sandbox", vdir).read_bytes() == before  # an existing vault is left alone


# -- the canary ------------------------------------------------------------------------------------------

# Shaped like no provider key, so that redaction could not hide a leak from this test.
CANARY = "CANARYvault7d1f0e9c4b2a"
CANARY2 = "CANARYrotated5e8a1c3b7d90"


def test_a_vault_secret_shows_nowhere_but_in_reveal(tmp_path: Path):
    home = tmp_path / "home"
    env = {**os.environ, "HOME": str(home), "XDG_DATA_HOME": str(home / "data"),
           "XDG_CONFIG_HOME": str(home / "config"), "XDG_CACHE_HOME": str(home / "cache"),
           "WORKBENCH_VAULT_PASSPHRASE": PASS}
    for name in ("WORKBENCH_VAULT_DIR", "WORKBENCH_DB", "WORKBENCH_CONFIG_DIR", "WORKBENCH_DEBUG"):
        env.pop(name, None)
    outputs: list[bytes] = []

    def run(*args: str, stdin: bytes | None = None, code: int = 0) -> bytes:
        done = subprocess.run([str(WORKBENCH), *args], input=stdin, capture_output=True, env=env, timeout=120)
        assert done.returncode == code, done.stderr.decode()
        return done.stdout + done.stderr

    outputs.append(run("demo", "--records", "20"))
    outputs.append(run("vault", "init", "--environment", "live"))
    outputs.append(run("vault", "set", "--environment", "live", "api-key", stdin=CANARY.encode() + b"\n"))
    outputs.append(run("vault", "list", "--environment", "live"))
    outputs.append(run("vault", "list", "--environment", "live", "--json"))
    outputs.append(run("-v", "vault", "set", "--environment", "live", "api-key", stdin=CANARY.encode(), code=1))
    assert b"Traceback" in outputs[-1]  # --verbose did print one
    outputs.append(run("vault", "rotate", "--environment", "live", "api-key", stdin=CANARY2.encode()))
    revealed = run("vault", "reveal", "--environment", "live", "api-key")
    assert revealed == CANARY2.encode() + b"\n"
    # A forced failure after the value was read: the lock file cannot be opened.
    live = home / "data" / "integration-workbench" / "live.vault"
    Path(f"{live}.lock").unlink()
    Path(f"{live}.lock").mkdir()
    outputs.append(run("-v", "vault", "rotate", "--environment", "live", "api-key", stdin=CANARY.encode(), code=1))
    assert b"Traceback" in outputs[-1] and b"cannot write the vault" in outputs[-1]
    outputs.append(run("audit", "export"))
    outputs.append(run("events", "--json"))

    for output in outputs:
        assert b"CANARY" not in output, output.decode(errors="replace")
    files = [p for p in home.rglob("*") if p.is_file() and not p.name.endswith(".vault")]
    assert any(p.name == "workbench.db" for p in files)
    for path in files:
        assert b"CANARY" not in path.read_bytes(), path
    assert live.exists() and b"CANARY" not in live.read_bytes()
    # The real executable (no test fixture in it) writes the tuned key-derivation parameters.
    header = orjson.loads(live.read_bytes().split(b"\n", 1)[0])["kdf"]
    assert (header["memory_kib"], header["iterations"], header["lanes"]) == dataclasses.astuple(KdfParams())
