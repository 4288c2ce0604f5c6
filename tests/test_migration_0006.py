"""Revision 0006 adds deliveries.signature_secret (NULL on deliveries stored before: not
recorded then), the partial index of failed signatures and the processes table; the downgrade
takes them away again."""

from __future__ import annotations

from alembic import command
from sqlalchemy import create_engine, inspect, select

from store.database import _alembic_config, open_store, reading
from store.models import Delivery
from tests.support import T0, add_stripe, capture, make_context, pi_event
from workbench.services.ingest import ingest

deliveries = Delivery.__table__


def test_deliveries_stored_before_0006_have_no_secret_name_and_processes_appear(db_url):
    engine = open_store(db_url, auto_upgrade=True)
    ingest_ctx = make_context(engine)
    add_stripe(ingest_ctx)
    ingest(ingest_ctx, "acme", [capture(pi_event("evt_1", "pi_1", "processing", int(T0.timestamp())))])
    command.downgrade(_alembic_config(engine), "0005")
    engine.dispose()

    plain = create_engine(db_url)
    try:
        inspector = inspect(plain)
        assert "signature_secret" not in {c["name"] for c in inspector.get_columns("deliveries")}
        assert "ix_deliveries_signature_failed" not in {i["name"] for i in inspector.get_indexes("deliveries")}
        assert "processes" not in inspector.get_table_names()
        command.upgrade(_alembic_config(plain), "head")
        inspector = inspect(plain)
        assert "processes" in inspector.get_table_names()
        assert "ix_deliveries_signature_failed" in {i["name"] for i in inspector.get_indexes("deliveries")}
    finally:
        plain.dispose()
    engine = open_store(db_url)
    try:
        with reading(engine) as conn:
            row = conn.execute(select(deliveries.c.signature_verdict, deliveries.c.signature_secret)).one()
        assert tuple(row) == ("unchecked", None)
    finally:
        engine.dispose()
