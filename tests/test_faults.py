"""The fault suite: the store misbehaves, the real `workbench` executable (a subprocess, so a
traceback would really show) answers in one line, and the store is left as it was.

Every case asserts: the exit code, exactly one line on stderr, no traceback, no secret (a canary
credential is ingested beforehand, in a body and a header), and that the store is intact
afterwards (it opens, `audit verify` passes, nothing was half-written).
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from store.database import HEAD_REVISION
from tests.pg_cluster import PostgresCluster
from tests.support import T0, pi_event, table_counts, together
from workbench.services.audit_anchor import anchor_files

WORKBENCH = Path(sys.executable).with_name("workbench")
CANARY = "sk_live_CANARY123"
CREATED = int(T0.timestamp())
# Running as root, file permissions do not bind: drop the capabilities that bypass them, so a
# read-only file is read-only to the workbench too.
AS_ORDINARY_USER = (["setpriv", "--inh-caps=-all", "--bounding-set=-dac_override,-dac_read_search"]
                    if os.geteuid() == 0 else [])


def run(db_url: str, *args: str, stdin: bytes | None = None, env: dict[str, str] | None = None,
        prefix: list[str] | None = None, preexec_fn: Callable[[], None] | None = None,
        ) -> subprocess.CompletedProcess[bytes]:
    environment = {**os.environ, "WORKBENCH_DB": db_url, **(env or {})}
    environment.pop("WORKBENCH_DEBUG", None)
    return subprocess.run([*(prefix or []), str(WORKBENCH), *args], input=stdin, capture_output=True,
                          env=environment, timeout=120, preexec_fn=preexec_fn)


def clean_failure(result: subprocess.CompletedProcess[bytes], *words: str, code: int = 1) -> str:
    """One line on stderr, nothing on stdout, the exit code, no traceback, no secret."""
    out, err = result.stdout.decode(errors="replace"), result.stderr.decode(errors="replace")
    assert result.returncode == code, (result.returncode, out, err)
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err and "[SQL" not in err and "CANARY" not in err
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def ok(result: subprocess.CompletedProcess[bytes]) -> str:
    assert result.returncode == 0, result.stderr.decode()
    assert b"CANARY" not in result.stdout + result.stderr
    return result.stdout.decode()


def counts(db_url: str) -> dict[str, int]:
    return table_counts(db_url, create=False)


def capture(event: dict[str, Any], **headers: str) -> bytes:
    return orjson.dumps({"received_at": T0.isoformat(), "headers": {"Content-Type": "application/json", **headers},
                         "body": orjson.dumps(event).decode()})


def build_store(db_url: str) -> None:
    """Connection `acme` and deliveries that carry the canary credential, through the executable."""
    ok(run(db_url, "db", "upgrade"))
    ok(run(db_url, "connection", "add", "acme", "--provider", "stripe"))
    lines = [capture(pi_event("evt_1", "pi_1", "processing", CREATED, description=f"key {CANARY}"),
                     **{"X-Debug-Key": CANARY}),
             capture(pi_event("evt_2", "pi_1", "succeeded", CREATED + 5, description=CANARY))]
    ok(run(db_url, "ingest", "acme", "-", stdin=b"\n".join(lines) + b"\n"))


@dataclass(frozen=True)
class Template:
    url: str
    key: Path  # its audit key; its checkpoint is beside it
    cluster: PostgresCluster | None  # the one it lives on (PostgreSQL)


@pytest.fixture(scope="module")
def templates() -> Iterator[dict[str, Template]]:
    """The `store` each test gets, built once per backend (three processes) and copied."""
    built: dict[str, Template] = {}
    yield built
    for template in built.values():
        if template.cluster is not None:
            template.cluster.drop_database(make_url(template.url).database or "")


def _template(backend: str, request: pytest.FixtureRequest, templates: dict[str, Template],
              tmp_path_factory: pytest.TempPathFactory) -> Template:
    if backend not in templates:
        where = tmp_path_factory.mktemp(f"faults-template-{backend}")
        key = where / "audit-anchor" / "audit.key"
        cluster: PostgresCluster | None = None
        if backend == "sqlite":
            url = f"sqlite:///{where / 'workbench.db'}"
        else:
            cluster = request.getfixturevalue("postgres_cluster")
            name = f"wb_template_{uuid.uuid4().hex[:16]}"
            cluster.create_database(name)
            url = cluster.url(name)
        with pytest.MonkeyPatch.context() as env:
            env.setenv("WORKBENCH_AUDIT_KEY_FILE", str(key))
            build_store(url)
        templates[backend] = Template(url, key, cluster)
    return templates[backend]


@pytest.fixture
def store(db_url: str, request: pytest.FixtureRequest, templates: dict[str, Template],
          tmp_path_factory: pytest.TempPathFactory, audit_key_file: Path) -> str:
    """A store with connection `acme` and deliveries that carry the canary credential: a copy
    of the backend's template (database, audit key and checkpoint), as if built here."""
    backend = request.node.callspec.params["db_url"]
    template = _template(backend, request, templates, tmp_path_factory)
    if backend == "sqlite":
        shutil.copyfile(sqlite_path(template.url), sqlite_path(db_url))
    else:
        assert template.cluster is not None
        name = make_url(db_url).database or ""
        template.cluster.drop_database(name)  # the empty one db_url made; a clone takes its name
        template.cluster.create_database(name, template=make_url(template.url).database)
    audit_key_file.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(template.key, audit_key_file)
    shutil.copy2(_checkpoint(template.url, template.key), _checkpoint(db_url, audit_key_file))
    return db_url


def _checkpoint(db_url: str, key: Path) -> Path:
    """Where the workbench keeps the audit checkpoint of the store at `db_url` (named after it)."""
    engine = create_engine(db_url)  # not connected: only its URL is read
    try:
        with pytest.MonkeyPatch.context() as env:
            env.setenv("WORKBENCH_AUDIT_KEY_FILE", str(key))
            return anchor_files(engine).checkpoint
    finally:
        engine.dispose()


def intact(db_url: str, before: dict[str, int] | None = None) -> None:
    """The store still opens, its audit chain verifies, and (if given) nothing was added."""
    assert ok(run(db_url, "audit", "verify")).startswith("audit chain intact")
    if before is not None:
        assert counts(db_url) == before


def sqlite_path(db_url: str) -> Path:
    return Path(make_url(db_url).database or "")


sqlite_only = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


# -- read-only --------------------------------------------------------------------------------------

@contextmanager
def read_only(path: Path, *, directory_too: bool) -> Iterator[None]:
    path.chmod(0o444)
    if directory_too:
        path.parent.chmod(0o555)
    try:
        yield
    finally:
        path.parent.chmod(0o755)
        path.chmod(0o644)


@sqlite_only
@pytest.mark.parametrize("what", ["file", "directory", "file and directory"])
def test_a_read_only_store_can_be_read_and_refuses_writes_in_one_line(store, what):
    path = sqlite_path(store)
    before = counts(store)
    listed = ok(run(store, "records", "--json"))
    if what == "directory":
        path.parent.chmod(0o555)
    with read_only(path, directory_too=what != "file") if what != "directory" else _restore_dir(path):
        as_user = {"prefix": AS_ORDINARY_USER}
        writes = (["connection", "add", "globex", "--provider", "stripe"],
                  ["connection", "pause", "acme", "--reason", "incident"])
        # Every check sees the same read-only store (no write gets through), so all run at once.
        probed, records, events, timeline, verified, *refused = together(
            lambda: opened_read_only(store, AS_ORDINARY_USER),
            lambda: run(store, "records", "--json", **as_user),
            lambda: run(store, "events", "--json", **as_user),
            lambda: run(store, "timeline", "pi_1", **as_user),
            lambda: run(store, "audit", "verify", **as_user),
            *(lambda write=write: run(store, *write, **as_user) for write in writes))
        assert probed  # what the TUI shows its banner from
        assert ok(records) == listed
        assert "evt_2" in ok(events)
        assert "pi_1" in ok(timeline)
        assert ok(verified).startswith("audit chain intact")
        for result in refused:
            clean_failure(result, f"the store at {store} is read-only:")
    # Writable again: the probe reads only, so it runs beside `intact`'s audit verify.
    _, probed_after = together(lambda: intact(store, before), lambda: opened_read_only(store, AS_ORDINARY_USER))
    assert not probed_after


PROBE_READ_ONLY = "import sys; from workbench.services.context import open_context; print(open_context(sys.argv[1]).read_only)"


def opened_read_only(db_url: str, prefix: list[str]) -> bool:
    probe = subprocess.run([*prefix, sys.executable, "-c", PROBE_READ_ONLY, db_url], capture_output=True, timeout=60)
    assert probe.returncode == 0, probe.stderr.decode()
    return probe.stdout == b"True\n"


@contextmanager
def _restore_dir(path: Path) -> Iterator[None]:
    try:
        yield
    finally:
        path.parent.chmod(0o755)


# -- a lock held by another process ----------------------------------------------------------------

HOLD_LOCK = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
sys.stdin.read()  # until the test closes our stdin
conn.execute("ROLLBACK")
"""


@sqlite_only
def test_a_write_lock_held_by_another_process(store):
    before = counts(store)
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(sqlite_path(store))], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == b"locked\n"
        quick = {"WORKBENCH_BUSY_TIMEOUT_MS": "300"}
        line = clean_failure(run(store, "connection", "add", "globex", "--provider", "stripe", env=quick),
                             "is locked by another process", "0.3 s")
        assert "try again" in line
        assert "pi_1" in ok(run(store, "records", "--json", env=quick))  # readers are not blocked (WAL)
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=30)
    intact(store, before)
    ok(run(store, "connection", "add", "globex", "--provider", "stripe"))  # the lock is gone: it works


@pytest.mark.parametrize("db_url", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True)
def test_a_row_lock_held_by_another_session(store):
    """On PostgreSQL, WORKBENCH_BUSY_TIMEOUT_MS (when set) is the sessions' lock_timeout."""
    before = counts(store)
    engine = create_engine(store)
    try:
        with engine.connect() as holder, holder.begin():
            holder.execute(text("SELECT * FROM audit_head FOR UPDATE"))  # what every audited write takes
            clean_failure(run(store, "connection", "add", "globex", "--provider", "stripe",
                              env={"WORKBENCH_BUSY_TIMEOUT_MS": "300"}),
                          "is locked by another session", "try again")
            assert "pi_1" in ok(run(store, "records", "--json"))  # readers are not blocked
    finally:
        engine.dispose()
    intact(store, before)


@sqlite_only
def test_a_bad_busy_timeout_is_a_one_line_error(store):
    clean_failure(run(store, "records", env={"WORKBENCH_BUSY_TIMEOUT_MS": "soon"}),
                  "WORKBENCH_BUSY_TIMEOUT_MS must be a whole number of milliseconds")


# -- a full disk ------------------------------------------------------------------------------------

def _file_size_limit(limit: int) -> Callable[[], None]:
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


def big_capture_file(tmp_path: Path, deliveries: int = 400) -> Path:
    padding = "x" * 4000
    path = tmp_path / "big.jsonl"
    path.write_bytes(b"\n".join(capture(pi_event(f"evt_big_{i}", f"pi_big_{i}", "processing", CREATED, padding=padding))
                                for i in range(deliveries)) + b"\n")
    return path


@sqlite_only
@pytest.mark.parametrize("verbose", [False, True])
def test_a_full_disk_fails_the_ingest_cleanly_and_keeps_the_store(store, tmp_path, verbose):
    """The write-ahead log cannot grow past 256 KiB (RLIMIT_FSIZE): a 1.6 MB ingest fails."""
    before = counts(store)
    args = ["-v"] if verbose else []
    result = run(store, *args, "ingest", "acme", str(big_capture_file(tmp_path)), preexec_fn=_file_size_limit(256 << 10))
    if verbose:
        err = result.stderr.decode()
        assert result.returncode == 1 and "Traceback" in err  # asked for: shown, redacted
        assert "CANARY" not in err and "[parameters:" not in err and "padding" not in err
        assert err.splitlines()[-1].startswith("error: ingest stopped after 0 deliveries were stored: could not write to the store")
    else:
        clean_failure(result, "could not write to the store", "disk is full", "nothing was written")
    # No delivery went in; the only row added is the run's own audit entry, which names the error.
    intact(store, dict(before, audit_entries=before["audit_entries"] + 1))
    exported = run(store, "audit", "export").stdout.decode().splitlines()
    last = json.loads(exported[-1])
    assert last["action"] == "ingest.run" and "could not write to the store" in last["after"]["error"]


# -- a damaged file ---------------------------------------------------------------------------------

@sqlite_only
@pytest.mark.parametrize("damage", ["pages", "header"])
def test_a_damaged_store_file_says_so_and_writes_nothing(store, damage):
    path = sqlite_path(store)
    data = bytearray(path.read_bytes())
    page = int.from_bytes(data[16:18], "big")
    if damage == "pages":  # every page but the schema's: each table's root is garbage
        data[page:] = bytes([0xA5]) * (len(data) - page)
    else:
        data[:100] = b"this is not a SQLite header".ljust(100, b"!")
    path.write_bytes(bytes(data))
    for args in (["records", "--json"], ["connection", "add", "globex", "--provider", "stripe"], ["audit", "verify"]):
        clean_failure(run(store, *args), "is damaged", "restore it from a backup")
    assert path.read_bytes() == bytes(data)  # nothing more was written
    assert not Path(f"{path}-wal").exists() or Path(f"{path}-wal").stat().st_size == 0


# -- both backends: newer schema, a missing row, a refused connection -------------------------------

def _execute(db_url: str, statement: str) -> None:
    engine = create_engine(db_url)
    try:
        with engine.begin() as conn:
            conn.execute(text(statement))
    finally:
        engine.dispose()


@pytest.mark.parametrize("revision", ["0099", "zzzz"])
def test_a_store_from_a_newer_workbench(store, revision):
    before = counts(store)
    _execute(store, f"UPDATE alembic_version SET version_num = '{revision}'")
    for args in (["records"], ["db", "upgrade"], ["connection", "add", "globex", "--provider", "stripe"]):
        clean_failure(run(store, *args), f"has schema version '{revision}'",
                      f"understands up to '{HEAD_REVISION}'", "use a newer workbench")
    _execute(store, f"UPDATE alembic_version SET version_num = '{HEAD_REVISION}'")
    intact(store, before)


def test_a_missing_audit_chain_head(store):
    before = counts(store)
    _execute(store, "DELETE FROM audit_head")
    clean_failure(run(store, "connection", "add", "globex", "--provider", "stripe"), "is missing a row",
                  "audit chain head")
    verified = run(store, "audit", "verify")  # a broken chain, with its cause: not a store error
    assert verified.returncode == 4 and verified.stdout == b"" and b"Traceback" not in verified.stderr
    assert verified.stderr.decode().splitlines() == [
        "audit chain broken: the chain's head row (audit_head) is missing: it was deleted outside the workbench; "
        "restore the store from a backup"]
    after = counts(store)
    assert after == {**before, "audit_head": 0}  # the failed write left nothing behind


def test_a_missing_table(store):
    _execute(store, "ALTER TABLE failures RENAME TO failures_gone")
    clean_failure(run(store, "failures", "--json"), "has no table 'failures'")


def test_a_refused_connection():
    clean_failure(run("postgresql+psycopg://workbench:hunter2@127.0.0.1:1/none", "records", "--json"),
                  "cannot connect to the store at postgresql+psycopg://workbench:***@127.0.0.1:1/none",
                  "check that it is running")


@pytest.mark.postgres
def test_a_read_only_database_user(postgres_cluster):
    name = f"wb_test_{uuid.uuid4().hex[:16]}"
    reader = f"wb_reader_{uuid.uuid4().hex[:8]}"
    postgres_cluster.create_database(name)
    owner_url = postgres_cluster.url(name)
    try:
        ok(run(owner_url, "db", "upgrade"))
        ok(run(owner_url, "connection", "add", "acme", "--provider", "stripe"))
        _execute(owner_url, f"CREATE ROLE {reader} LOGIN")
        _execute(owner_url, f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {reader}")
        reader_url = str(make_url(owner_url).set(username=reader))
        # Independent checks (the one write is refused), so all at once.
        listed, verified, reader_probe, owner_probe, refused = together(
            lambda: run(reader_url, "connection", "list"),
            lambda: run(reader_url, "audit", "verify"),
            lambda: opened_read_only(reader_url, []),
            lambda: opened_read_only(owner_url, []),
            lambda: run(reader_url, "connection", "add", "globex", "--provider", "stripe"))
        assert "acme" in ok(listed)
        assert ok(verified).startswith("audit chain intact")
        assert reader_probe and not owner_probe  # the TUI's banner
        clean_failure(refused, "is read-only for this database user")
        assert counts(owner_url)["connections"] == 1
    finally:
        postgres_cluster.drop_database(name)


# -- a store that is not there ----------------------------------------------------------------------

def test_a_missing_store_is_not_created_by_accident(tmp_path):
    cases = [(url, words, args)
             for url, words in ((f"sqlite:///{tmp_path / 'no' / 'such' / 'dir' / 'wb.db'}", ("does not exist",)),
                                (f"sqlite:///{tmp_path / 'wb.db'}", ("no store at", "yet")))
             for args in (["records"], ["connection", "add", "acme", "--provider", "stripe"])]
    # None of them may create anything, so they run at once (and the check below sees them all).
    results = together(*(lambda url=url, args=args: run(url, *args) for url, _, args in cases))
    for (_, words, _), result in zip(cases, results, strict=True):
        clean_failure(result, *words, "`workbench demo`", "`workbench db upgrade`")
    assert list(tmp_path.iterdir()) == []
    empty = tmp_path / "empty.db"
    empty.touch()

    def the_empty_file() -> None:
        clean_failure(run(f"sqlite:///{empty}", "records"), "is an empty file")
        assert empty.stat().st_size == 0
        ok(run(f"sqlite:///{empty}", "db", "upgrade"))  # on purpose: fine
        assert ok(run(f"sqlite:///{empty}", "records", "--json")) == "[]\n"

    # The demo makes a store of its own elsewhere: beside the empty file's steps, not after them.
    together(the_empty_file, lambda: ok(run(f"sqlite:///{tmp_path / 'new' / 'demo.db'}", "demo", "--records", "20")))


def test_the_default_store_is_made_by_the_demo_only(tmp_path):
    """No --db, no WORKBENCH_DB: the embedded store in the data directory (XDG_DATA_HOME)."""
    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path / "data"), "HOME": str(tmp_path)}
    env.pop("WORKBENCH_DB", None)

    def bare(*args: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run([str(WORKBENCH), *args], capture_output=True, env=env, timeout=120)

    clean_failure(bare("records"), "no store at sqlite:///", "integration-workbench", "`workbench demo`")
    assert not (tmp_path / "data").exists()
    ok(bare("demo", "--records", "20", "--if-empty"))
    assert (tmp_path / "data" / "integration-workbench" / "workbench.db").exists()
    assert ok(bare("demo", "--if-empty")).startswith("store already has data")
    assert ok(bare("records", "--json")).startswith("[")


# -- output -----------------------------------------------------------------------------------------

@sqlite_only
def test_a_reader_that_goes_away_early_is_not_an_error(store):
    """`workbench records --json | head -c 10`: exit 0, nothing on stderr."""
    many = b"\n".join(capture(pi_event(f"evt_m{i}", f"pi_m{i}", "processing", CREATED)) for i in range(2000))
    ok(run(store, "ingest", "acme", "-", stdin=many + b"\n"))
    proc = subprocess.Popen([str(WORKBENCH), "records", "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "WORKBENCH_DB": store})
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.read(10) == b'[\n{"id":"r'[:10]
    proc.stdout.close()
    assert proc.wait(timeout=60) == 0
    assert proc.stderr.read() == b""
    proc.stderr.close()
