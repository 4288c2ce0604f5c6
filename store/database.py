"""Opening the store: URL resolution, engine setup (SQLite WAL pragmas) and migrations."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from platformdirs import user_data_dir
from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.engine import make_url

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"
# The newest migration's revision. Kept here so opening an up-to-date store does not pay for
# importing Alembic (a third of the CLI's start-up); a test checks it against the scripts.
HEAD_REVISION = "0002"


class StoreError(Exception):
    """A store that cannot be opened or upgraded; the message is one line for the operator."""


def default_url() -> str:
    data_dir = Path(user_data_dir("integration-workbench", appauthor=False))
    data_dir.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{data_dir / 'workbench.db'}"


def resolve_url(url: str | None = None) -> str:
    """`--db URL` wins, then WORKBENCH_DB, then the embedded default."""
    return url or os.environ.get("WORKBENCH_DB") or default_url()


def _sqlite_pragmas(dbapi_connection: sqlite3.Connection, _record: object) -> None:
    # Take transaction control from pysqlite (it would defer BEGIN until the first write and
    # run reads outside the transaction); _sqlite_begin issues BEGIN itself.
    dbapi_connection.isolation_level = None
    # WAL lets readers (the TUI) run while a writer ingests; NORMAL is durable across app
    # crashes in WAL mode; the busy timeout makes concurrent writers wait instead of failing.
    cursor = dbapi_connection.cursor()
    # Before anything creates the file: 16 KiB pages hold ten raw deliveries each (a 4 KiB page
    # holds two, wasting a third of it) and quarter the WAL frames a commit writes. Only a new
    # store takes it; an existing one keeps its page size.
    cursor.execute("PRAGMA page_size=16384")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA cache_size=-65536")
    cursor.execute("PRAGMA temp_store=MEMORY")
    # Checkpoint less often: bulk ingest writes tens of megabytes per batch (index pages again
    # and again), and each checkpoint copies every page in the WAL and syncs twice. Every
    # 256 MiB of WAL, whatever the page size; the file is cut back to 64 MiB once checkpointed.
    page_size = cursor.execute("PRAGMA page_size").fetchone()[0]
    cursor.execute(f"PRAGMA wal_autocheckpoint={(256 << 20) // page_size}")
    cursor.execute(f"PRAGMA journal_size_limit={64 << 20}")
    cursor.close()


def _sqlite_begin(conn: Connection) -> None:
    # A writer takes the write lock up front: a deferred transaction that reads, then writes,
    # fails outright (not after the busy timeout) when another writer committed in between.
    immediate = conn.get_execution_options().get("write", False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


@contextmanager
def writing(engine: Engine) -> Iterator[Connection]:
    """One write transaction: committed on success, rolled back on error."""
    with engine.connect() as conn:
        conn.execution_options(write=True)
        with conn.begin():
            yield conn


@contextmanager
def reading(engine: Engine) -> Iterator[Connection]:
    """One consistent read (a snapshot on SQLite WAL and PostgreSQL alike)."""
    with engine.connect() as conn:
        with conn.begin():
            yield conn


def make_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if database and database != ":memory:":
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    return create_engine(url, pool_pre_ping=True)


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


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        if not inspect(conn).has_table("alembic_version"):
            return None
        return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()


def upgrade(engine: Engine) -> None:
    """Bring the schema to the newest migration (idempotent)."""
    from alembic import command

    command.upgrade(_alembic_config(engine), "head")


def open_store(url: str | None = None, *, auto_upgrade: bool | None = None) -> Engine:
    """Open the store at `url`. The embedded SQLite store upgrades itself; a shared server
    database is only upgraded by `workbench db upgrade` unless asked."""
    resolved = resolve_url(url)
    try:
        engine = make_engine(resolved)
        is_sqlite = engine.dialect.name == "sqlite"
        if auto_upgrade if auto_upgrade is not None else is_sqlite:
            if current_revision(engine) != HEAD_REVISION:
                upgrade(engine)
        elif current_revision(engine) != HEAD_REVISION:
            raise StoreError(
                f"the store at {engine.url.render_as_string(hide_password=True)} is not at the "
                "current schema; run `workbench db upgrade`"
            )
    except StoreError:
        raise
    except Exception as exc:  # surface driver errors as one line, never a traceback
        raise StoreError(f"cannot open store: {type(exc).__name__}: {str(exc).splitlines()[0]}") from exc
    return engine
