"""The Alerts screen (key 8) and the Providers badge, on SQLite and PostgreSQL: alerts raised
through alert_signals.emit on the fixture store are listed with their counts, acknowledged and
resolved after a note (audited), a failing notifier shows in red with its last error, and the
connection's open alerts are counted on the Providers screen; snapshots at 80x24 and 100x30."""

from __future__ import annotations

from typing import Any

import pytest
from textual.pilot import Pilot

from store.database import writing
from tests.engine_harness import wait_until
from tests.tui.conftest import make_app, notices, screen_text, settle, type_text
from workbench.services import alert_notify, alert_signals, alerts, audit, connections
from workbench.services.context import ServiceContext
from workbench.tui.app import WorkbenchApp
from workbench.tui.screens.alerts import AlertsScreen
from workbench.tui.screens.dialogs import PromptScreen
from workbench.tui.widgets import VirtualTable


def raise_some(ctx: ServiceContext) -> None:
    """acme: its breaker opened three times and a webhook notifier whose vault is locked; globex:
    an expiring secret."""
    acme = connections.update_settings(ctx, "acme", lambda s: {**s, "alerts": {
        "notifiers": [{"name": "slack", "kind": "webhook", "format": "slack", "url_secret": {"name": "slack-url"}}],
        "signal_notifiers": ["slack"]}}, "connection.set", "alerts to slack")
    globex = connections.get_connection(ctx, "globex")
    with writing(ctx.engine) as conn:
        for _ in range(3):
            alert_signals.emit(conn, ctx, alert_signals.Signal("breaker.opened", acme.id, "critical",
                                                               "12 of the last 20 calls failed (provider_outage)"))
        alert_signals.emit(conn, ctx, alert_signals.Signal("secret.expiring", globex.id, "warning",
                                                           "webhook secret globex-1 expires in 5d"))
    worker = alert_notify.NotificationWorker(ctx, {}, threads=1)
    try:
        worker.pump()
        wait_until(lambda: worker.busy == 0, 10)
    finally:
        worker.close()


def rows(app: WorkbenchApp) -> list[Any]:
    return list(app.screen.query_one(VirtualTable).rows)


async def open_alerts(pilot: Pilot[Any]) -> AlertsScreen:
    await settle(pilot)
    await pilot.press("8")
    await settle(pilot)
    screen = pilot.app.screen
    assert isinstance(screen, AlertsScreen)
    return screen


@pytest.mark.asyncio
async def test_acknowledge_and_resolve_after_a_note(db_ctx: ServiceContext) -> None:
    raise_some(db_ctx)
    app = make_app(db_ctx)
    async with app.run_test(size=(120, 30), notifications=True) as pilot:
        await settle(pilot)
        assert "2 open alert(s)" in screen_text(app)  # the Providers status line
        await open_alerts(pilot)
        shown = {row.data["rule"]: row.data for row in rows(app)}
        assert set(shown) == {"breaker.opened", "secret.expiring"} and shown["breaker.opened"]["count"] == 3
        text = screen_text(app)
        assert "slack (acme) FAILING: the sandbox vault is locked" in text and "1 notifier(s) failing" in text
        await pilot.press("slash", *"breaker", "enter")
        assert [row.data["rule"] for row in rows(app)] == ["breaker.opened"]
        await pilot.press("a")
        assert isinstance(app.screen, PromptScreen)
        await pilot.press("enter")  # a note is required
        assert isinstance(app.screen, PromptScreen)
        await type_text(pilot, "on it")
        await pilot.press("enter")
        await settle(pilot)
        assert alerts.get_alert(db_ctx, shown["breaker.opened"]["id"])["state"] == "acknowledged"
        assert any("breaker.opened on acme: acknowledged" in n for n in notices(app))
        await pilot.press("r")
        await type_text(pilot, "provider recovered")
        await pilot.press("enter")
        await settle(pilot)
        assert rows(app) == []
        assert [e["reason"] for e in audit.search(db_ctx, "alert.")] == ["provider recovered", "on it"]
        await pilot.press("1")
        await settle(pilot)
        assert "1 open alert(s)" in screen_text(app)


@pytest.mark.parametrize("size", [(80, 24), (100, 30)], ids=["80x24", "100x30"])
def test_snapshot(size: tuple[int, int], store: ServiceContext, snap_compare: Any) -> None:
    raise_some(store)
    app = make_app(store)

    async def run_before(pilot: Pilot[Any]) -> None:
        await open_alerts(pilot)

    assert snap_compare(app, terminal_size=size, run_before=run_before)
