"""Revision 0002 gives deliveries stored before it their capture keys: a capture file ingested
before the upgrade is recognised when it is run again after it."""

from __future__ import annotations

from datetime import timedelta

from alembic import command
from sqlalchemy import create_engine, select, text

from store.database import _alembic_config, open_store, reading
from store.models import Delivery
from tests.support import T0, add_stripe, capture, make_context, pi_event
from workbench.services.ingest import ingest

deliveries = Delivery.__table__


def test_upgrade_keys_stored_deliveries_like_ingest_does(db_url):
    event = pi_event("evt_1", "pi_1", "processing", int(T0.timestamp()))
    captures = [capture(event), capture(event, T0 + timedelta(seconds=1), headers={"Authorization": "Bearer x"})]
    # Ingest today, then take the store back to 0001 with rows as 0001 stored them (no key),
    # one of them stored twice (a re-run before 0002 stored it again, as a duplicate).
    engine = open_store(db_url, auto_upgrade=True)
    ctx = make_context(engine)
    add_stripe(ctx)
    ingest(ctx, "acme", captures)
    with engine.begin() as conn:
        copy = dict(conn.execute(select(deliveries).where(deliveries.c.verdict == "duplicate")).one()._mapping)
        copy.update(id="dlv_copy", dedupe_key=None, capture_key=None)
        conn.execute(deliveries.insert().values(copy))
    command.downgrade(_alembic_config(engine), "0001")  # drops the keys
    engine.dispose()

    plain = create_engine(db_url)
    try:
        command.upgrade(_alembic_config(plain), "head")
    finally:
        plain.dispose()
    engine = open_store(db_url)
    try:
        ctx = make_context(engine)
        with reading(engine) as conn:
            keys = conn.execute(select(deliveries.c.id, deliveries.c.capture_key).order_by(deliveries.c.id)).all()
        assert len(keys) == 3 and sum(key is not None for _, key in keys) == 2
        assert dict(keys)["dlv_copy"] is None  # the repeat keeps no key: one row per capture
        # The same capture lines again: recognised, nothing stored.
        assert ingest(ctx, "acme", captures).counts == {"already_stored": 2}
    finally:
        engine.dispose()


def test_capture_keys_compare_in_byte_order(engine):
    """Ingest finds stored keys by range, bounds computed in Python: the store must order them
    the same way (binary on SQLite, the "C" collation on PostgreSQL whatever the database's)."""
    keys = ["0a", "0B", "a0", "Z9", "90"]
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            collation = conn.execute(text(
                "SELECT collation_name FROM information_schema.columns "
                "WHERE table_name = 'deliveries' AND column_name = 'capture_key'")).scalar_one()
            assert collation == "C"
        conn.execute(text("CREATE TEMPORARY TABLE key_order AS SELECT capture_key FROM deliveries WHERE 1 = 0"))
        conn.execute(text("INSERT INTO key_order (capture_key) VALUES (:k)"), [{"k": k} for k in keys])
        ordered = conn.execute(text("SELECT capture_key FROM key_order ORDER BY capture_key")).scalars().all()
    assert ordered == sorted(keys)
