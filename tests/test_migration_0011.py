"""Revision 0011 adds breakers and pace, and only them (so that it re-chains after the other
revisions of its round trivially); the downgrade takes them away and leaves the rest."""

from __future__ import annotations

from alembic import command
from sqlalchemy import create_engine, inspect

from store.database import _alembic_config, open_store, writing
from tests.support import add_stripe, make_context
from workbench.services import breaker, pacing
from workbench.services.connections import get_connection

NEW = {"breakers", "pace"}


def test_0011_adds_and_removes_only_its_own_tables(db_url: str) -> None:
    engine = open_store(db_url, auto_upgrade=True)
    add_stripe(make_context(engine))
    command.downgrade(_alembic_config(engine), "0011")  # later revisions' tables are not this test's
    before = set(inspect(engine).get_table_names())
    assert NEW <= before
    command.downgrade(_alembic_config(engine), "0010")
    engine.dispose()

    plain = create_engine(db_url)
    try:
        assert set(inspect(plain).get_table_names()) == before - NEW
        command.upgrade(_alembic_config(plain), "head")
    finally:
        plain.dispose()
    engine = open_store(db_url)
    try:
        ctx = make_context(engine)
        info = get_connection(ctx, "acme")
        with writing(ctx.engine) as conn:  # the upgraded tables take rows
            assert pacing.take(conn, info.id, 2.0, 2, 100.0) == ([100.0, 100.5], 1.0)
        breaker.CallGate(ctx).observed([(info, None)])
        assert breaker.states(ctx)[info.id].calls == 1
    finally:
        engine.dispose()
