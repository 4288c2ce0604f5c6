"""Revision 0008 adds reconcile_runs and drift_findings, and only them (so that it re-chains
after the engine's 0007 trivially); the downgrade takes them away and leaves the rest."""

from __future__ import annotations

from alembic import command
from sqlalchemy import create_engine, inspect

from store.database import _alembic_config, open_store
from tests.support import add_stripe, make_context
from workbench.services import drift, reconcile

NEW = {"reconcile_runs", "drift_findings"}


def test_0008_adds_and_removes_only_its_own_tables(db_url: str) -> None:
    engine = open_store(db_url, auto_upgrade=True)
    add_stripe(make_context(engine))
    command.downgrade(_alembic_config(engine), "0008")  # later revisions' tables are not this test's
    before = set(inspect(engine).get_table_names())
    assert NEW <= before
    command.downgrade(_alembic_config(engine), "0007")
    engine.dispose()

    plain = create_engine(db_url)
    try:
        assert set(inspect(plain).get_table_names()) == before - NEW
        command.upgrade(_alembic_config(plain), "head")
        indexes = {i["name"] for i in inspect(plain).get_indexes("drift_findings")}
        assert {"ix_drift_findings_connection_state", "ix_drift_findings_record"} <= indexes
    finally:
        plain.dispose()
    engine = open_store(db_url)
    try:
        ctx = make_context(engine)
        run_id = reconcile.request_run(ctx, "acme")  # the upgraded tables take rows
        assert [r["id"] for r in reconcile.latest_runs(ctx)] == [run_id] and drift.list_findings(ctx) == []
    finally:
        engine.dispose()
