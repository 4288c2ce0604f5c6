"""Revision 0005 adds what a body is now (its key version, when it was purged): deliveries
stored before it read as plain bodies, never purged, and the downgrade takes both away."""

from __future__ import annotations

from alembic import command
from sqlalchemy import create_engine, inspect, select

from store.database import _alembic_config, open_store, reading
from store.models import Delivery
from tests.support import T0, add_stripe, capture, make_context, pi_event
from workbench.services.ingest import ingest
from workbench.services.timeline import delivery_payload

deliveries = Delivery.__table__


def test_deliveries_stored_before_0005_read_as_plain_bodies(db_url):
    engine = open_store(db_url, auto_upgrade=True)
    ingest_ctx = make_context(engine)
    add_stripe(ingest_ctx)
    ingest(ingest_ctx, "acme", [capture(pi_event("evt_1", "pi_1", "processing", int(T0.timestamp())))])
    command.downgrade(_alembic_config(engine), "0004")
    engine.dispose()

    plain = create_engine(db_url)
    try:
        columns = {c["name"] for c in inspect(plain).get_columns("deliveries")}
        assert not {"body_key_version", "body_purged_at"} & columns
        command.upgrade(_alembic_config(plain), "head")
    finally:
        plain.dispose()
    engine = open_store(db_url)
    try:
        with reading(engine) as conn:
            row = conn.execute(select(deliveries.c.id, deliveries.c.body_key_version,
                                      deliveries.c.body_purged_at)).one()
        assert row.body_key_version is None and row.body_purged_at is None
        payload = delivery_payload(make_context(engine), row.id)
        assert payload["body_state"] == "plain" and payload["body"]["id"] == "evt_1"
    finally:
        engine.dispose()
