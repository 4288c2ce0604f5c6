"""Shared pytest configuration for the integration-workbench test suite."""

from __future__ import annotations

import gc
import os
import shutil
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from store.database import open_store

# tests/ is a package: its helpers are imported as `tests.<module>` only (pytest puts the
# repository root on sys.path), so no helper module is ever loaded twice under two names.
from tests.pg_cluster import PostgresCluster, PostgresUnavailable
from tests.support import make_context
from workbench.services.context import ServiceContext
from workbench.vault import KdfParams, kdf

# ===========================================================================
# Database backends harness: every test using `db_url` runs on SQLite and on
# a throwaway PostgreSQL cluster (one per session, see tests/pg_cluster.py).
#
#   db_url            function-scoped, params "sqlite" / "postgres": a URL for
#                     SQLAlchemy's create_engine(), pointing at a fresh, empty
#                     database that is deleted after the test.
#   postgres_cluster  session-scoped PostgresCluster, started on first use.
#                     Unavailable -> skip, or fail when CI=true.
#
#   WORKBENCH_TEST_BACKENDS=sqlite  (comma list, default "sqlite,postgres")
#                     deselects the other backends' tests, including any test
#                     marked `postgres`.
# ===========================================================================

BACKENDS = ("sqlite", "postgres")


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() == "true"


def _selected_backends() -> set[str]:
    raw = os.environ.get("WORKBENCH_TEST_BACKENDS") or ",".join(BACKENDS)
    chosen = {name.strip().lower() for name in raw.split(",") if name.strip()}
    unknown = chosen - set(BACKENDS)
    if not chosen or unknown:
        raise pytest.UsageError(
            f"WORKBENCH_TEST_BACKENDS={raw!r}: expected a comma list of {', '.join(BACKENDS)}"
        )
    return chosen


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    selected = _selected_backends()
    keep: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    for item in items:
        callspec = getattr(item, "callspec", None)
        backend = callspec.params.get("db_url") if callspec is not None else None
        if backend is None and item.get_closest_marker("postgres") is not None:
            backend = "postgres"  # uses postgres_cluster directly
        (dropped if backend is not None and backend not in selected else keep).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    # A session fixture is set up on first request only, so SQLite-only runs never
    # start PostgreSQL; a skip/fail raised here is cached for the rest of the session.
    cluster = PostgresCluster()
    try:
        cluster.start()
    except PostgresUnavailable as exc:
        if _in_ci():
            pytest.fail(f"PostgreSQL unavailable under CI=true (these tests must run there): {exc.reason}",
                        pytrace=False)
        pytest.skip(f"PostgreSQL unavailable: {exc.reason}")
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(params=[
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    # A test that takes the upgraded store (`engine`, `ctx`) gets a copy of one migrated once
    # per session: running the migrations for every test cost minutes of the suite.
    migrated = "engine" in request.fixturenames
    with fresh_database(request, request.param, tmp_path / "workbench.db", migrated=migrated) as url:
        yield url


@pytest.fixture(scope="session")
def _migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite store at the newest migration, copied for each test that wants one."""
    path = tmp_path_factory.mktemp("template") / "workbench.db"
    engine = open_store(f"sqlite:///{path}", auto_upgrade=True)
    with engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")  # everything in the main file
    engine.dispose()
    return path


MIGRATED_TEMPLATE = "wb_template_migrated"


@pytest.fixture(scope="session")
def _migrated_postgres(postgres_cluster: PostgresCluster) -> str:
    """A PostgreSQL database at the newest migration: the template of each test's database."""
    postgres_cluster.create_database(MIGRATED_TEMPLATE)
    engine = open_store(postgres_cluster.url(MIGRATED_TEMPLATE), auto_upgrade=True)
    engine.dispose()  # CREATE DATABASE ... TEMPLATE needs the template free of sessions
    return MIGRATED_TEMPLATE


@contextmanager
def fresh_database(request: pytest.FixtureRequest, backend: str, sqlite_path: Path, *,
                   migrated: bool = False) -> Iterator[str]:
    """A URL to a new database on `backend` (a file at `sqlite_path`, or a database on the
    session's PostgreSQL cluster), empty or (`migrated`) at the newest migration, removed
    afterwards."""
    if backend == "sqlite":
        if migrated:
            template: Path = request.getfixturevalue("_migrated_sqlite")
            shutil.copyfile(template, sqlite_path)
        yield f"sqlite:///{sqlite_path}"
        return
    cluster: PostgresCluster = request.getfixturevalue("postgres_cluster")
    name = f"wb_test_{uuid.uuid4().hex[:16]}"
    cluster.create_database(name, template=request.getfixturevalue("_migrated_postgres") if migrated else None)
    try:
        yield cluster.url(name)
    finally:
        left_open = cluster.sessions_on(name)
        # WITH (FORCE) also ends connections a test left open (e.g. an undisposed engine).
        cluster.drop_database(name)
        if left_open:
            # Collect what such a test leaked now, not at an arbitrary later moment (at session
            # end the pool's complaint about a dead connection can land inside an import). Only
            # then: a full collection costs ~0.2 s, on every PostgreSQL test it cost minutes.
            gc.collect()


# ===========================================================================
# End of database backends harness.
# ===========================================================================


@pytest.fixture(scope="session", autouse=True)
def _subprocess_bytecode_cache(pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory,
                               ) -> Iterator[None]:
    """Many tests run the real `workbench` executable (hundreds of processes in all). Under
    PYTHONDONTWRITEBYTECODE (set on the shared development machine) each one compiled every
    project module from source again, about half a second a process; instead they share a
    bytecode cache in pytest's cache directory (this session's temporary one without it),
    never beside the sources. Python checks each cached file against its source."""
    if not sys.dont_write_bytecode:
        yield  # bytecode is cached the usual way already
        return
    cache = getattr(pytestconfig, "cache", None)
    where = cache.mkdir("subprocess-bytecode") if cache is not None else tmp_path_factory.mktemp("pycache")
    with pytest.MonkeyPatch.context() as env:
        env.delenv("PYTHONDONTWRITEBYTECODE", raising=False)
        env.setenv("PYTHONPYCACHEPREFIX", str(where))
        yield


# The tuned Argon2id parameters cost ~0.3 s per derivation (idle; more under load), and a
# vault test derives on every command. In this process, new vault files and rekeys get cheap
# parameters instead: the header records them and unlocking follows the header, so everything
# else runs as in production. Subprocesses (the real `workbench` executable) keep the tuned
# defaults, and `real_kdf` tests (the defaults themselves) opt out.
CHEAP_KDF = KdfParams(memory_kib=1024, iterations=1, lanes=1)


@pytest.fixture(autouse=True)
def _cheap_kdf(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    if request.node.get_closest_marker("real_kdf") is None:
        monkeypatch.setattr(kdf, "DEFAULT_PARAMS", CHEAP_KDF)


@pytest.fixture(autouse=True)
def _private_vault_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test (and every workbench it starts) keeps its vaults in a directory of its own,
    never in the user's data directory (`workbench demo` creates one)."""
    monkeypatch.setenv("WORKBENCH_VAULT_DIR", str(tmp_path_factory.mktemp("vault")))
    monkeypatch.delenv("WORKBENCH_VAULT_PASSPHRASE", raising=False)
    monkeypatch.delenv("WORKBENCH_VAULT_NEW_PASSPHRASE", raising=False)


# ---------------------------------------------------------------------------
# Workbench fixtures: an upgraded store and a service context on each backend.
# ---------------------------------------------------------------------------


@pytest.fixture
def engine(db_url: str) -> Iterator[Any]:
    engine = open_store(db_url, auto_upgrade=True)
    yield engine
    engine.dispose()


@pytest.fixture
def ctx(engine: Any) -> ServiceContext:
    return make_context(engine)


@pytest.fixture(autouse=True)
def audit_key_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test's audit key (and the checkpoints beside it) in its own directory, never in
    the user's data directory."""
    path = tmp_path / "audit-anchor" / "audit.key"
    monkeypatch.setenv("WORKBENCH_AUDIT_KEY_FILE", str(path))
    return path
