"""Revision 0009 adds recoveries and recovery_items, and only them (so that it re-chains after
the other helpers' revisions trivially); the downgrade takes them away and leaves the rest."""

from __future__ import annotations

from alembic import command
from sqlalchemy import create_engine, inspect

from store.database import _alembic_config, open_store
from tests.support import make_context
from workbench.services import recovery

NEW = {"recoveries", "recovery_items"}


def test_0009_adds_and_removes_only_its_own_tables(db_url: str) -> None:
    engine = open_store(db_url, auto_upgrade=True)
    command.downgrade(_alembic_config(engine), "0009")  # later revisions' tables out of the way first
    before = set(inspect(engine).get_table_names())
    assert NEW <= before
    command.downgrade(_alembic_config(engine), "0008")
    engine.dispose()

    plain = create_engine(db_url)
    try:
        assert set(inspect(plain).get_table_names()) == before - NEW
        command.upgrade(_alembic_config(plain), "head")
        assert {"ix_recovery_items_state"} <= {i["name"] for i in inspect(plain).get_indexes("recovery_items")}
    finally:
        plain.dispose()
    engine = open_store(db_url)
    try:
        assert recovery.status(make_context(engine)) == []  # the upgraded tables are read
    finally:
        engine.dispose()
