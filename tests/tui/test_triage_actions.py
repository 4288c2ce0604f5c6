"""Every triage action driven through the Failures screen, as an operator would: the store
changed as intended, the audit entry exists, and the screens show it (the list, and the
record's timeline at once). Runs on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest

from tests.tui.conftest import make_app, notices, settle, type_text
from workbench.services import audit, queries, triage
from workbench.services.context import ServiceContext
from workbench.tui.app import WorkbenchApp
from workbench.tui.screens.dialogs import ConfirmScreen, PromptScreen
from workbench.tui.screens.failures import FailuresScreen
from workbench.tui.screens.timeline import TimelineScreen
from workbench.tui.widgets import VirtualTable

pytestmark = pytest.mark.asyncio


async def open_group(app: WorkbenchApp, pilot: Any, ctx: ServiceContext) -> FailuresScreen:
    group = next(g for g in triage.groups(ctx) if g.connection == "acme" and g.category == "contract_mismatch")
    app.open_group(group)
    await settle(pilot)
    assert isinstance(app.screen, FailuresScreen)
    return app.screen


def table_keys(screen: Any) -> list[str]:
    return [row.key for row in screen.query_one(VirtualTable).rows]


def audit_for(ctx: ServiceContext, action: str, failure_id: str) -> list[dict[str, Any]]:
    return [e for e in audit.search(ctx, action) if e["action"] == action and e["target_id"] == failure_id]


async def timeline_summaries(app: WorkbenchApp, pilot: Any, record_id: str) -> list[str]:
    app.open_timeline(record_id)
    await settle(pilot)
    assert isinstance(app.screen, TimelineScreen)
    return [row.cells[2] for row in app.screen.query_one(VirtualTable).rows]  # type: ignore[misc]  # cells are Any


async def test_resolve_one_with_a_note(db_ctx: ServiceContext) -> None:
    app = make_app(db_ctx)
    async with app.run_test(notifications=True) as pilot:
        await settle(pilot)
        screen = await open_group(app, pilot, db_ctx)
        first = table_keys(screen)[0]
        record_id = screen.query_one(VirtualTable).rows[0].data["record_id"]  # type: ignore[index]  # row data is Any
        await pilot.press("d")
        assert isinstance(app.screen, PromptScreen)
        await pilot.press("enter")  # a note is required: nothing happens without one
        assert isinstance(app.screen, PromptScreen)
        await type_text(pilot, "fixed upstream")
        await pilot.press("enter")
        await settle(pilot)

        assert triage.failure_detail(db_ctx, first)["state"] == "resolved"
        [entry] = audit_for(db_ctx, "failure.resolve", first)
        assert entry["reason"] == "fixed upstream" and entry["after"] == {"state": "resolved"}
        assert first not in table_keys(screen)  # the open list no longer has it
        assert any("Resolve: 1 resolved" in text for text in notices(app))
        summaries = await timeline_summaries(app, pilot, record_id)
        assert any("failure.resolve: fixed upstream" in s for s in summaries)
        assert any("fixed upstream" in s and s.startswith("user:tester") for s in summaries)  # the note


async def test_ignore_in_bulk_asks_for_confirmation(db_ctx: ServiceContext) -> None:
    app = make_app(db_ctx)
    async with app.run_test(notifications=True) as pilot:
        await settle(pilot)
        screen = await open_group(app, pilot, db_ctx)
        ids = table_keys(screen)
        assert len(ids) == 2
        await pilot.press("asterisk", "i")
        await type_text(pilot, "known noise")
        await pilot.press("enter")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        await settle(pilot)

        for failure_id in ids:
            assert triage.failure_detail(db_ctx, failure_id)["state"] == "ignored"
            assert len(audit_for(db_ctx, "failure.ignore", failure_id)) == 1
        assert table_keys(screen) == []
        assert any("Ignore: 2 ignored" in text for text in notices(app))


async def test_bulk_cancel_changes_nothing(db_ctx: ServiceContext) -> None:
    app = make_app(db_ctx)
    async with app.run_test() as pilot:
        await settle(pilot)
        screen = await open_group(app, pilot, db_ctx)
        ids = table_keys(screen)
        await pilot.press("asterisk", "r")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")
        await settle(pilot)
        assert app.screen is screen
        for failure_id in ids:
            assert triage.failure_detail(db_ctx, failure_id)["notes"] == []
            assert audit_for(db_ctx, "failure.retry", failure_id) == []


async def test_assign_marked(db_ctx: ServiceContext) -> None:
    app = make_app(db_ctx)
    async with app.run_test() as pilot:
        await settle(pilot)
        screen = await open_group(app, pilot, db_ctx)
        first = table_keys(screen)[0]
        await pilot.press("space")  # marks the first row, moves to the second
        await pilot.press("a")
        await type_text(pilot, "alice")
        await pilot.press("enter")  # one failure: no confirmation step
        await settle(pilot)

        assert triage.failure_detail(db_ctx, first)["assignee"] == "alice"
        [entry] = audit_for(db_ctx, "failure.assign", first)
        assert entry["after"] == {"assignee": "alice"}
        row = next(r for r in screen.query_one(VirtualTable).rows if r.key == first)
        assert row.cells[2] == "alice"
        other = table_keys(screen)[1]
        assert triage.failure_detail(db_ctx, other)["assignee"] is None


async def test_retry_one(db_ctx: ServiceContext) -> None:
    app = make_app(db_ctx)
    async with app.run_test(notifications=True) as pilot:
        await settle(pilot)
        screen = await open_group(app, pilot, db_ctx)
        first = table_keys(screen)[0]
        record_id = screen.query_one(VirtualTable).rows[0].data["record_id"]  # type: ignore[index]  # row data is Any
        events_before = len(list(queries.iter_events(db_ctx, record_id=record_id)))
        await pilot.press("r")
        await settle(pilot)

        detail = triage.failure_detail(db_ctx, first)
        assert detail["notes"] and detail["notes"][0]["note"].startswith("retry:")
        assert len(audit_for(db_ctx, "failure.retry", first)) == 1
        # The retry re-ran the stored event: a replayed copy of the delivery now exists.
        assert len(list(queries.iter_events(db_ctx, record_id=record_id))) == events_before + 1
        assert any(text.startswith("Retry: 1 retried") for text in notices(app))
        summaries = await timeline_summaries(app, pilot, record_id)
        assert any("failure.retry" in s for s in summaries)
        assert any(s.startswith("replay payment_intent.updated") for s in summaries)


async def test_replay_records_in_bulk_with_progress(db_ctx: ServiceContext) -> None:
    app = make_app(db_ctx)
    async with app.run_test(notifications=True) as pilot:
        await settle(pilot)
        screen = await open_group(app, pilot, db_ctx)
        ids = table_keys(screen)
        seen: list[tuple[int, int]] = []
        original = screen._progress

        def spy(action: Any, done: int, total: int) -> None:
            seen.append((done, total))
            original(action, done, total)

        screen._progress = spy  # type: ignore[method-assign, assignment]  # a spy around the real method
        await pilot.press("asterisk", "p")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        await settle(pilot)

        assert seen == [(1, 2), (2, 2)]  # the service's progress reached the screen
        for failure_id in ids:
            assert len(audit_for(db_ctx, "failure.replay", failure_id)) == 1
            assert triage.failure_detail(db_ctx, failure_id)["notes"][0]["note"].startswith("replay:")
        assert not screen.query_one("#action-progress").has_class("-running")
        assert any(text.startswith("Replay: 2 replayed") for text in notices(app))


async def test_triage_from_the_timeline_acts_on_that_records_failure(db_ctx: ServiceContext) -> None:
    [failure] = [f for f in queries.iter_failures(db_ctx, category="contract_mismatch", open_only=True)
                 if f["connection"] == "acme"][:1]
    record_id = failure["record_id"]
    app = make_app(db_ctx)
    async with app.run_test(notifications=True) as pilot:
        await settle(pilot)
        app.open_timeline(record_id)
        await settle(pilot)
        table = app.screen.query_one(VirtualTable)
        failure_row = next(i for i, row in enumerate(table.rows) if row.key == failure["id"])
        table.move_to(0)  # the first entry is the delivery that created the record
        await pilot.press("t")  # not on a failure: says so, stays
        assert isinstance(app.screen, TimelineScreen)
        assert any("cursor on a failure" in text for text in notices(app))
        table.move_to(failure_row)
        await pilot.press("t")
        await settle(pilot)
        assert isinstance(app.screen, FailuresScreen)
        assert table_keys(app.screen) == [failure["id"]]  # only this record's failure
        await pilot.press("d")
        await type_text(pilot, "mapping change requested")
        await pilot.press("enter")
        await settle(pilot)
        assert triage.failure_detail(db_ctx, failure["id"])["state"] == "resolved"
        assert audit_for(db_ctx, "failure.resolve", failure["id"])
        await pilot.press("escape")
        await settle(pilot)
        assert isinstance(app.screen, TimelineScreen)
        summaries = [row.cells[2] for row in app.screen.query_one(VirtualTable).rows]
        assert any("failure.resolve: mapping change requested" in s for s in summaries)
