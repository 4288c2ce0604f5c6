"""Recovery by filter from the Error queue: R shows the plan for everything in the store that
matches the filter and, once confirmed, submits the same operation the CLI does; the running
recovery shows under the groups with its progress, and C cancels it, leaving the rest as it
was. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from textual.widgets import Label, Static

from tests.tui.conftest import make_app, notices, settle, type_text
from workbench.services import queries, recovery
from workbench.services.context import ServiceContext
from workbench.tui.screens.dialogs import ConfirmScreen
from workbench.tui.screens.errors import ErrorsScreen
from workbench.tui.widgets import VirtualTable

pytestmark = pytest.mark.asyncio

FILTER = "connection=acme category=contract_mismatch"


def states(ctx: ServiceContext) -> dict[str, str]:
    return {f["id"]: f["state"] for f in queries.iter_failures(ctx)}


async def test_recover_all_matching_then_cancel(db_ctx: ServiceContext) -> None:
    matching = {f["id"] for f in queries.iter_failures(db_ctx, state="unresolved", category="contract_mismatch",
                                                       connection="acme")}
    assert len(matching) >= 2
    before = states(db_ctx)
    app = make_app(db_ctx)
    async with app.run_test(notifications=True) as pilot:
        await settle(pilot)
        await pilot.press("3")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, ErrorsScreen)
        await pilot.press("slash")
        await type_text(pilot, "colour=red")  # a filter that cannot be read says why; R starts nothing
        await pilot.press("enter")
        assert screen.query_one(VirtualTable).rows == []
        await pilot.press("R")
        await settle(pilot)
        assert not isinstance(app.screen, ConfirmScreen)
        assert any("unknown filter key 'colour'" in text for text in notices(app))

        screen.set_filter(FILTER)
        await settle(pilot)
        assert [row.key.split("|")[0] for row in screen.query_one(VirtualTable).rows] == ["contract_mismatch"]

        await pilot.press("R")
        await settle(pilot)
        assert isinstance(app.screen, ConfirmScreen)
        message = str(app.screen.query(Label)[1].render())
        assert message.startswith(f"{len(matching)} open failure(s) matching category=contract_mismatch "
                                  "connection=acme:")
        await pilot.press("y")
        await settle(pilot)
        [running] = recovery.status(db_ctx)
        assert (running.state, running.total) == ("running", len(matching))
        assert set(recovery.item_states(db_ctx, running.id)) == matching
        assert any(f"recovery {running.id} started" in text for text in notices(app))
        panel = screen.query_one("#errors-recoveries", Static)
        assert panel.display and f"Recovery {running.id}: 0/{len(matching)} retried" in str(panel.render())

        await pilot.press("C")
        await settle(pilot)
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        await settle(pilot)
    assert recovery.run_batch(db_ctx)  # the engine's next look: cancelled, nothing retried
    [done] = recovery.status(db_ctx)
    assert (done.state, done.done) == ("cancelled", 0)
    assert states(db_ctx) == before
