"""Revision 0007 adds the engine's tables, sync_state and leases (nothing else changes); the
downgrade takes them away again and a store with commands upgrades through it untouched."""

from __future__ import annotations

from alembic import command
from sqlalchemy import create_engine, func, inspect, select

from store.database import _alembic_config, open_store, reading
from store.models import Command
from tests.support import make_context
from workbench.services import command_submit, connections


def test_0007_adds_sync_state_and_leases_and_takes_them_away(db_url: str) -> None:
    engine = open_store(db_url, auto_upgrade=True)
    ctx = make_context(engine)
    connections.add_connection(ctx, "shop", "stripe", "sandbox")
    command_submit.submit(ctx, "shop", "payment.create", {"amount": 5, "currency": "usd"})
    command.downgrade(_alembic_config(engine), "0006")
    engine.dispose()

    plain = create_engine(db_url)
    try:
        assert not {"sync_state", "leases"} & set(inspect(plain).get_table_names())
        command.upgrade(_alembic_config(plain), "head")
        inspector = inspect(plain)
        assert {"sync_state", "leases"} <= set(inspector.get_table_names())
        assert {c["name"] for c in inspector.get_columns("leases")} == {
            "resource", "holder", "acquired_at", "expires_at", "takeovers"}
    finally:
        plain.dispose()
    engine = open_store(db_url)
    try:
        with reading(engine) as conn:
            assert conn.execute(select(func.count()).select_from(Command.__table__)).scalar_one() == 1
    finally:
        engine.dispose()
