"""Revision 0010 adds alerts, alert_notifications, store_settings and an index on failures.created_at, and
only them (so that it re-chains after the other helpers' migrations trivially); the downgrade
takes them away and leaves the rest."""

from __future__ import annotations

from alembic import command
from sqlalchemy import create_engine, inspect

from store.database import _alembic_config, open_store, writing
from tests.support import add_stripe, make_context
from workbench.services import alert_signals, alerts

NEW = {"alerts", "alert_notifications", "store_settings"}


def test_0010_adds_and_removes_only_its_own_tables(db_url: str) -> None:
    engine = open_store(db_url, auto_upgrade=True)
    add_stripe(make_context(engine))
    command.downgrade(_alembic_config(engine), "0010")  # later revisions' tables out of the way first
    before = set(inspect(engine).get_table_names())
    assert NEW <= before
    command.downgrade(_alembic_config(engine), "0009")
    engine.dispose()

    plain = create_engine(db_url)
    try:
        assert set(inspect(plain).get_table_names()) == before - NEW
        assert "ix_failures_created" not in {i["name"] for i in inspect(plain).get_indexes("failures")}
        command.upgrade(_alembic_config(plain), "head")
        assert "uq_alerts_open" in {i["name"] for i in inspect(plain).get_indexes("alerts")}
    finally:
        plain.dispose()
    engine = open_store(db_url)
    try:
        ctx = make_context(engine)
        acme = add_stripe(ctx, "other")
        with writing(engine) as conn:  # the upgraded tables take rows
            alert_signals.emit(conn, ctx, alert_signals.Signal("breaker.opened", acme.id, "critical", "open"))
        assert [a["rule"] for a in alerts.list_alerts(ctx)] == ["breaker.opened"]
    finally:
        engine.dispose()
