"""The store: migrations match the models, upgrades are repeatable, a shared store that was not
upgraded says so in one line, and the portable column types behave alike on both backends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from click.testing import CliRunner
from sqlalchemy import create_engine, func, inspect, select
from sqlalchemy.exc import IntegrityError

from store.database import StoreError, current_revision, head_revision, open_store, reading, upgrade, writing
from store.models import AuditHead, Base, Connection, Delivery
from tests.support import T0, add_stripe, capture, pi_event
from workbench.cli.main import cli
from workbench.services.ingest import ingest


def test_migrations_equal_the_models(engine):
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []
    assert set(inspect(engine).get_table_names()) >= set(Base.metadata.tables)


def test_upgrade_twice_is_fine_and_starts_the_audit_chain(db_url):
    engine = open_store(db_url, auto_upgrade=True)
    try:
        assert current_revision(engine) == head_revision() is not None
        upgrade(engine)
        engine2 = open_store(db_url, auto_upgrade=True)
        engine2.dispose()
        with reading(engine) as conn:
            assert tuple(conn.execute(select(AuditHead.__table__)).one()) == (1, 0, "0" * 64)
    finally:
        engine.dispose()


def with_password(db_url: str) -> str:
    """The test cluster trusts local connections, so any password works: it must never show."""
    return db_url.replace("://postgres@", "://postgres:hunter2@")


def test_db_upgrade_command_twice_never_shows_the_password(db_url):
    url = with_password(db_url)
    for _ in range(2):
        result = CliRunner().invoke(cli, ["--db", url, "db", "upgrade"])
        assert result.exit_code == 0 and result.stdout.endswith("is up to date\n")
        assert result.stdout.startswith("store at ") and "hunter2" not in result.output


def test_a_store_that_is_not_upgraded(db_url):
    """A store is only created on purpose (`db upgrade`, `demo`); a shared PostgreSQL store is
    only upgraded by `workbench db upgrade`; anything else says so in one line."""
    result = CliRunner().invoke(cli, ["--db", with_password(db_url), "records", "--json"])
    assert "hunter2" not in result.output
    assert result.exit_code == 1 and result.stdout == ""
    [line] = result.stderr.splitlines()
    if db_url.startswith("sqlite"):
        assert line.startswith("error: no store at sqlite:///") and "yet" in line
        assert "`workbench demo`" in line and "`workbench db upgrade`" in line
        assert not Path(db_url.removeprefix("sqlite:///")).exists()  # the refusal created nothing
    else:
        assert line.startswith("error: ") and "is not at the current schema; run `workbench db upgrade`" in line
        with pytest.raises(StoreError, match="workbench db upgrade"):
            open_store(db_url)
        probe = create_engine(db_url)
        try:
            assert inspect(probe).get_table_names() == []  # nothing was created by the refusal
        finally:
            probe.dispose()
    assert CliRunner().invoke(cli, ["--db", db_url, "db", "upgrade"]).exit_code == 0
    assert CliRunner().invoke(cli, ["--db", db_url, "records", "--json"]).stdout == "[]\n"


def test_an_unreachable_store_is_a_one_line_error(tmp_path):
    result = CliRunner().invoke(cli, ["--db", "postgresql+psycopg://nobody@127.0.0.1:1/none", "records"])
    assert result.exit_code == 1 and result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith("error: cannot connect to the store at postgresql+psycopg://nobody@127.0.0.1:1/none")
    assert "refused" in line and "check that it is running" in line
    for url in ("not a url", "nosuchdb://x/y"):
        bad = CliRunner().invoke(cli, ["--db", url, "records"])
        assert bad.exit_code == 1 and bad.stdout == ""
        [line] = bad.stderr.splitlines()
        assert line.startswith("error: cannot open store: --db is not a database URL")


def test_times_come_back_aware_utc_and_json_round_trips(ctx):
    add_stripe(ctx)
    received = datetime(2026, 11, 1, 14, 30, 15, 123456, tzinfo=timezone(timedelta(hours=2)))
    headers = {"Content-Type": "application/json", "X-Unicode": "žluťoučký kůň"}
    ingest(ctx, "acme", [capture(pi_event("evt_1", "pi_1", "processing", int(T0.timestamp())), received, headers=headers)])
    with reading(ctx.engine) as conn:
        row = conn.execute(select(Delivery.__table__)).one()
    assert row.received_at == received and row.received_at.tzinfo == UTC
    assert row.headers == headers and isinstance(row.body, bytes)


def test_unique_constraints_hold_on_both_backends(ctx):
    add_stripe(ctx)
    ingest(ctx, "acme", [capture(pi_event("evt_1", "pi_1", "processing", int(T0.timestamp())))])
    table = Delivery.__table__
    with reading(ctx.engine) as conn:
        row = conn.execute(select(table)).one()._asdict()
    with pytest.raises(IntegrityError):
        with writing(ctx.engine) as conn:
            conn.execute(table.insert().values({**row, "id": "dlv_copy"}))
    with pytest.raises(IntegrityError):
        with writing(ctx.engine) as conn:
            conn.execute(Connection.__table__.insert().values(
                id="con_x", name="acme", provider="stripe", environment="sandbox", paused=False, version=1,
                settings={}, created_at=T0, updated_at=T0))
    with reading(ctx.engine) as conn:
        assert conn.execute(select(func.count()).select_from(table)).scalar_one() == 1
