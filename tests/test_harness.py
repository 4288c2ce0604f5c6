"""Tests of the test harness itself: db_url on both backends, and the PostgreSQL cluster."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from tests.pg_cluster import PostgresCluster, PostgresUnavailable


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    eng = sa.create_engine(db_url)
    yield eng
    eng.dispose()


def test_db_url_matches_backend(request: pytest.FixtureRequest, engine: Engine) -> None:
    expected = {"sqlite": "sqlite", "postgres": "postgresql"}[request.node.callspec.params["db_url"]]
    assert engine.dialect.name == expected
    assert engine.dialect.driver in {"pysqlite", "psycopg"}


def test_roundtrip(engine: Engine) -> None:
    meta = sa.MetaData()
    items = sa.Table(
        "items", meta,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(50), nullable=False),
    )
    meta.create_all(engine)
    with engine.begin() as conn:
        conn.execute(items.insert(), [{"name": "alpha"}, {"name": "beta"}])
    with engine.connect() as conn:
        rows = conn.execute(sa.select(items.c.name).order_by(items.c.id)).scalars().all()
    assert rows == ["alpha", "beta"]


@pytest.mark.parametrize("run", [1, 2])
def test_databases_are_independent(engine: Engine, run: int) -> None:
    # Runs twice per backend; the second run would find the first run's table and row
    # if db_url handed out a shared database.
    assert not sa.inspect(engine).has_table("probe")
    probe = sa.Table("probe", sa.MetaData(), sa.Column("run", sa.Integer))
    probe.create(engine)
    with engine.begin() as conn:
        conn.execute(probe.insert().values(run=run))
        assert conn.execute(sa.select(sa.func.count()).select_from(probe)).scalar_one() == 1


def test_open_connections_do_not_block_drop(engine: Engine) -> None:
    # db_url's teardown must drop the database even while this connection is open.
    conn = engine.connect()
    conn.execute(sa.text("SELECT 1"))


@pytest.mark.postgres
def test_cluster_template_and_drop(postgres_cluster: PostgresCluster) -> None:
    source, copy = (f"wb_harness_{uuid.uuid4().hex[:8]}_{s}" for s in ("src", "copy"))
    postgres_cluster.create_database(source)
    try:
        with postgres_cluster.connect(source) as conn:
            conn.execute("CREATE TABLE t (x int)")
            conn.execute("INSERT INTO t VALUES (42)")
        postgres_cluster.create_database(copy, template=source)
        eng = sa.create_engine(postgres_cluster.url(copy))
        try:
            with eng.connect() as conn:
                assert conn.execute(sa.text("SELECT x FROM t")).scalar_one() == 42
        finally:
            eng.dispose()
    finally:
        postgres_cluster.drop_database(copy)
        postgres_cluster.drop_database(source)
    with postgres_cluster.connect() as conn:
        names = {row[0] for row in conn.execute("SELECT datname FROM pg_database")}
    assert not names & {source, copy}


def test_missing_binaries_reported(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PG_BIN", str(tmp_path))
    with pytest.raises(PostgresUnavailable, match="PG_BIN=.* does not contain initdb"):
        PostgresCluster().start()


def test_helpers_are_loaded_once_under_their_package_name() -> None:
    # tests/ is a package: a bare `import pg_cluster` (or `support`) would load a second copy
    # of the module, with its own classes, beside tests.pg_cluster.
    assert "tests.pg_cluster" in sys.modules and "tests.support" in sys.modules
    assert "pg_cluster" not in sys.modules and "support" not in sys.modules
