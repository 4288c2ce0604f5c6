"""Opening the store: URL resolution, engine setup (SQLite WAL pragmas), the checks made on
open (does it exist, may we write it, is its schema one we know) and migrations."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Literal
from urllib.parse import quote

from platformdirs import user_data_dir
from sqlalchemy import URL, Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.engine import make_url

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"
# The newest migration's revision. Kept here so opening an up-to-date store does not pay for
# importing Alembic (a third of the CLI's start-up); a test checks it against the scripts.
HEAD_REVISION = "0011"

BUSY_TIMEOUT_ENV = "WORKBENCH_BUSY_TIMEOUT_MS"
DEFAULT_BUSY_TIMEOUT_MS = 30_000

# How a SQLite file can be opened: read-write; read-only (`mode=ro`: sees other writers'
# commits, needs the -shm file or a writable directory to make it); or, when neither is
# possible, `immutable=1` (no locking at all: only right for a store nobody is writing).
SqliteAccess = Literal["rw", "ro", "immutable"]


class StoreError(Exception):
    """A store that cannot be opened or upgraded; the message is one line for the operator."""


class StoreMissing(StoreError):
    """No store where the URL points (and the caller did not ask to create one)."""


class StoreTooNew(StoreError):
    """The store's schema is newer than this workbench's migrations."""


class StoreReadOnly(StoreError):
    """The store can be read but not written (so it cannot be upgraded either)."""


@dataclass(frozen=True)
class OpenedStore:
    engine: Engine
    location: str  # the URL as shown to people: no password
    read_only: bool


def default_url() -> str:
    data_dir = Path(user_data_dir("integration-workbench", appauthor=False))
    return f"sqlite:///{data_dir / 'workbench.db'}"


def resolve_url(url: str | None = None) -> str:
    """`--db URL` wins, then WORKBENCH_DB, then the embedded default."""
    return url or os.environ.get("WORKBENCH_DB") or default_url()


def display_url(url: str) -> str:
    """The URL as it may be printed: the password hidden; an unparseable one not echoed."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL at all: it could be anything, a password included
        return "the given URL"


def busy_timeout_ms() -> int:
    """How long a writer waits for another's lock (WORKBENCH_BUSY_TIMEOUT_MS; on PostgreSQL
    only when set: its lock_timeout)."""
    raw = os.environ.get(BUSY_TIMEOUT_ENV, "").strip()
    if not raw:
        return DEFAULT_BUSY_TIMEOUT_MS
    if not raw.isdigit():
        raise StoreError(f"{BUSY_TIMEOUT_ENV} must be a whole number of milliseconds, not {raw!r}")
    return int(raw)


def _sqlite_pragmas(dbapi_connection: sqlite3.Connection, _record: object, *, busy_ms: int,
                    read_only: bool) -> None:
    # Take transaction control from pysqlite (it would defer BEGIN until the first write and
    # run reads outside the transaction); _sqlite_begin issues BEGIN itself.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    if not read_only:  # these two write to the file; a read-only store keeps what it has
        # Before anything creates the file: 16 KiB pages hold ten raw deliveries each (a 4 KiB
        # page holds two, wasting a third of it) and quarter the WAL frames a commit writes.
        # Only a new store takes it; an existing one keeps its page size.
        cursor.execute("PRAGMA page_size=16384")
        # WAL lets readers (the TUI) run while a writer ingests; NORMAL is durable across app
        # crashes in WAL mode.
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
    # The busy timeout makes concurrent writers wait instead of failing.
    cursor.execute(f"PRAGMA busy_timeout={busy_ms}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA cache_size=-65536")
    cursor.execute("PRAGMA temp_store=MEMORY")
    if not read_only:
        # Checkpoint less often: bulk ingest writes tens of megabytes per batch (index pages
        # again and again), and each checkpoint copies every page in the WAL and syncs twice.
        # Every 256 MiB of WAL, whatever the page size; the file is cut back to 64 MiB.
        page_size = cursor.execute("PRAGMA page_size").fetchone()[0]
        cursor.execute(f"PRAGMA wal_autocheckpoint={(256 << 20) // page_size}")
        cursor.execute(f"PRAGMA journal_size_limit={64 << 20}")
    cursor.close()


def _sqlite_begin(conn: Connection) -> None:
    # A writer takes the write lock up front: a deferred transaction that reads, then writes,
    # fails outright (not after the busy timeout) when another writer committed in between.
    immediate = conn.get_execution_options().get("write", False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def sync_every_commit(engine: Engine) -> None:
    """An embedded store's connections made from now on sync at every commit (FULL), for a
    process that deletes something elsewhere once the store has it (the receiver's applier,
    a retry of stuck deliveries): the store's default (NORMAL in WAL) may lose the last
    commits on a power cut. Connections already open are closed. Other databases: no change."""
    if engine.dialect.name != "sqlite":
        return
    event.listen(engine, "connect", _sync_full)
    engine.dispose()


def _sync_full(dbapi_connection: sqlite3.Connection, _record: object) -> None:
    dbapi_connection.execute("PRAGMA synchronous=FULL")


AFTER_COMMIT = "workbench.after_commit"


@contextmanager
def writing(engine: Engine) -> Iterator[Connection]:
    """One write transaction: committed on success, rolled back on error. Callables put in
    `after_commit(conn)` run once it has committed (not at all if it did not)."""
    hooks: list[Callable[[], None]] = []
    with engine.connect() as conn:
        conn.execution_options(write=True)
        conn.info[AFTER_COMMIT] = hooks
        try:
            with conn.begin():
                yield conn
        finally:
            conn.info.pop(AFTER_COMMIT, None)  # conn.info outlives this checkout (pooled)
    for hook in hooks:  # committed, and the connection back in the pool
        hook()


def after_commit(conn: Connection) -> list[Callable[[], None]] | None:
    """The hooks of a transaction opened by `writing` (None for any other)."""
    hooks: list[Callable[[], None]] | None = conn.info.get(AFTER_COMMIT)
    return hooks


@contextmanager
def reading(engine: Engine) -> Iterator[Connection]:
    """One consistent read (a snapshot on SQLite WAL and PostgreSQL alike)."""
    with engine.connect() as conn:
        with conn.begin():
            yield conn


def sqlite_file(url: str) -> Path | None:
    """The file behind a SQLite URL (None for other backends and in-memory databases)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database).expanduser()


def sqlite_access(path: Path) -> SqliteAccess:
    """How an existing store file can be opened by this process."""
    directory = path.parent
    if os.access(path, os.W_OK) and os.access(directory, os.W_OK):
        return "rw"
    # A read-only WAL reader needs the -shm file, or a directory it may create it in.
    if os.access(directory, os.W_OK) or os.access(f"{path}-shm", os.R_OK):
        return "ro"
    wal = Path(f"{path}-wal")
    if wal.exists() and wal.stat().st_size > 0:
        # immutable=1 would silently ignore the commits still in the log
        raise StoreError(f"the store at {path} is read-only and its write-ahead log ({wal.name}) cannot "
                         "be read without its -shm file; open it once where its directory is writable")
    return "immutable"


def make_engine(url: str, *, access: SqliteAccess = "rw") -> Engine:
    parsed = make_url(url)
    # Error messages name the statement but never its parameters (raw headers and bodies).
    if parsed.get_backend_name() != "sqlite":
        # PostgreSQL waits for locks indefinitely unless the operator set a limit.
        server_options = ({"connect_args": {"options": f"-c lock_timeout={busy_timeout_ms()}"}}
                          if parsed.get_backend_name() == "postgresql" and os.environ.get(BUSY_TIMEOUT_ENV) else {})
        return create_engine(url, pool_pre_ping=True, hide_parameters=True, **server_options)
    read_only = access != "rw"
    database = parsed.database
    target: str | URL = url
    options: dict[str, object] = {"connect_args": {"check_same_thread": False}, "hide_parameters": True}
    if database and database != ":memory:":
        path = Path(database).expanduser()
        if read_only:
            flag = "mode=ro" if access == "ro" else "immutable=1"
            uri = f"file:{quote(str(path.resolve()))}?{flag}"
            options["creator"] = partial(sqlite3.connect, uri, uri=True, check_same_thread=False)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
        target = parsed.set(database=str(path))  # with `~` expanded
    engine = create_engine(target, **options)
    event.listen(engine, "connect", partial(_sqlite_pragmas, busy_ms=busy_timeout_ms(), read_only=read_only))
    event.listen(engine, "begin", _sqlite_begin)
    return engine


def _alembic_config(engine: Engine) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = engine
    return config


def head_revision() -> str | None:
    """The newest revision according to the migration scripts themselves."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_alembic_config(create_engine("sqlite://"))).get_current_head()


def known_revision(revision: str) -> bool:
    """Whether this workbench's migrations include `revision` (imports Alembic: slow path only)."""
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(_alembic_config(create_engine("sqlite://")))
    try:
        return script.get_revision(revision) is not None
    except Exception:  # alembic raises its own error types for unknown or malformed ids
        return False


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        if not inspect(conn).has_table("alembic_version"):
            return None
        return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()


def _has_tables(engine: Engine) -> bool:
    with engine.connect() as conn:
        return bool(inspect(conn).get_table_names())


def upgrade(engine: Engine) -> None:
    """Bring the schema to the newest migration (idempotent)."""
    from alembic import command

    command.upgrade(_alembic_config(engine), "head")


def _refuse_to_create(path: Path, location: str) -> None:
    """A store is only created on purpose (`db upgrade`, `demo`): a mistyped --db must not
    leave empty stores and directories behind."""
    hint = "create one with `workbench demo` (demo data) or `workbench db upgrade` (empty)"
    if not path.parent.is_dir():
        raise StoreMissing(f"no store at {location}: the directory {path.parent} does not exist; {hint}")
    if not path.exists():
        raise StoreMissing(f"no store at {location} yet; {hint}")
    wal = Path(f"{path}-wal")
    if path.stat().st_size == 0 and not (wal.exists() and wal.stat().st_size > 0):
        raise StoreMissing(f"the store at {location} is an empty file; {hint}")


def open_store(url: str | None = None, *, auto_upgrade: bool | None = None, create: bool = True) -> Engine:
    """The engine of `open_checked` (for callers that do not care whether it is read-only)."""
    return open_checked(url, auto_upgrade=auto_upgrade, create=create).engine


def open_checked(url: str | None = None, *, auto_upgrade: bool | None = None, create: bool = False) -> OpenedStore:
    """Open the store at `url`. The embedded SQLite store upgrades itself; a shared server
    database is only upgraded by `workbench db upgrade` unless asked. Without `create`, a
    SQLite store must already exist; one that cannot be written opens read-only."""
    resolved = resolve_url(url)
    location = display_url(resolved)
    engine: Engine | None = None
    try:
        path = sqlite_file(resolved)
        access: SqliteAccess = "rw"
        if path is not None:
            if not create:
                _refuse_to_create(path, location)
            if path.exists():
                access = sqlite_access(path)
        engine = make_engine(resolved, access=access)
        read_only = access != "rw"
        revision = current_revision(engine)
        if revision != HEAD_REVISION:
            _check_revision(engine, revision, location, read_only=read_only,
                            upgrade_now=auto_upgrade if auto_upgrade is not None else engine.dialect.name == "sqlite")
        if engine.dialect.name == "postgresql":
            read_only = _server_read_only(engine)
        return OpenedStore(engine, location, read_only)
    except StoreError:
        if engine is not None:
            engine.dispose()
        raise
    except Exception as exc:  # the caller classifies the cause; never echo a driver's text here
        if engine is not None:
            engine.dispose()
        raise StoreError(f"cannot open store at {location}: {type(exc).__name__}") from exc


def _server_read_only(engine: Engine) -> bool:
    """A PostgreSQL store this session cannot write: a standby, a read-only default
    transaction, or a user without INSERT on the deliveries (faces then offer no writes)."""
    with engine.connect() as conn:
        return bool(conn.execute(text(
            "SELECT pg_is_in_recovery() OR current_setting('default_transaction_read_only') = 'on' "
            "OR NOT has_table_privilege(current_user, 'deliveries', 'INSERT')")).scalar())


def _check_revision(engine: Engine, revision: str | None, location: str, *, read_only: bool,
                    upgrade_now: bool) -> None:
    if revision is not None and not known_revision(revision):
        raise StoreTooNew(
            f"the store at {location} has schema version {revision!r}, which this workbench does not "
            f"know (it understands up to {HEAD_REVISION!r}); use a newer workbench")
    if revision is None and engine.dialect.name == "sqlite" and _has_tables(engine):
        raise StoreError(f"{location} is not a workbench store (it has tables but no schema version)")
    if read_only:
        raise StoreReadOnly(
            f"the store at {location} is read-only and at schema version {revision!r}, but this workbench "
            f"needs {HEAD_REVISION!r}; run `workbench db upgrade` with write access to it")
    if not upgrade_now:
        raise StoreError(f"the store at {location} is not at the current schema; run `workbench db upgrade`")
    upgrade(engine)
