"""The Drift screen: findings of a real reconciliation (the payroll sandbox, its runs made with
fixed IDs so pictures repeat), resolved with a key as an operator would (accept, push, escalate,
each asked first; bulk over what the filter shows), on SQLite and PostgreSQL; snapshots at 80x24
and 100x30."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from textual.pilot import Pilot

from adapters.payroll.client import PayrollClient
from adapters.payroll.sandbox import SandboxConfig, bind
from adapters.payroll.sandbox.server import make_app as make_sandbox, server_for
from adapters.payroll.sandbox.state import ProviderState, Run
from tests.payroll_servers import PAYROLL_KEY
from tests.support import capture
from tests.tui.conftest import make_app, notices, screen_text, settle, type_text
from workbench.services import audit, connections, drift, queries, reconcile
from workbench.services.context import ServiceContext
from workbench.services.ingest import ingest
from workbench.tui.app import WorkbenchApp
from workbench.tui.screens.dialogs import ConfirmScreen, PromptScreen
from workbench.tui.screens.drift import DriftScreen
from workbench.tui.widgets import VirtualTable


@pytest.fixture
def sandbox() -> Iterator[tuple[str, ProviderState]]:
    sock = bind("127.0.0.1", 0)
    app, state = make_sandbox(SandboxConfig(api_key=PAYROLL_KEY, read_only_key=None))
    server = server_for(app)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{sock.getsockname()[1]}", state
    server.should_exit = True
    thread.join(timeout=10)


def run(n: int) -> Run:
    return Run(f"run_0000000{n}", f"payday-{n}", "acme", "2026-12-01", 100_000 * n, "eur")


def drifted(ctx: ServiceContext, sandbox: tuple[str, ProviderState]) -> None:
    """Runs 1-3 known to both sides; then the provider completes 2 and fails 3 behind our back;
    it has run 4 we never heard of, and we have run 9 it does not know."""
    url, state = sandbox
    connections.add_connection(ctx, "pay", "payroll", "sandbox")
    for n in (1, 2, 3, 4):
        made = run(n)
        state.runs[made.id], state.by_reference[made.reference] = made, made.id
    events = [{"type": "payroll_run.updated", "occurred_at": f"2026-11-01T12:0{n}:00+00:00",
               "run": state.render(run(n))} for n in (1, 2, 3, 9)]
    ingest(ctx, "pay", [capture(event) for event in events], signatures=None)
    state.advance("run_00000002", "COMPLETE", None)
    state.advance("run_00000003", "ERROR", "FUNDING_REJECTED")
    client = PayrollClient(base_url=url, api_key=PAYROLL_KEY, timeout_s=5)
    try:
        report = reconcile.reconcile(ctx, "pay", client=client)
    finally:
        client.close()
    assert report.findings == 7


def rows(app: WorkbenchApp) -> list[Any]:
    return list(app.screen.query_one(VirtualTable).rows)


def record_status(ctx: ServiceContext, record_id: str) -> str:
    return str(next(r for r in queries.iter_records(ctx) if r["id"] == record_id)["status"])


async def open_drift(pilot: Pilot[Any]) -> DriftScreen:
    await settle(pilot)
    await pilot.press("7")
    await settle(pilot)
    screen = pilot.app.screen
    assert isinstance(screen, DriftScreen)
    return screen


@pytest.mark.asyncio
async def test_accept_the_highlighted_finding_after_a_note(db_ctx: ServiceContext,
                                                           sandbox: tuple[str, ProviderState]) -> None:
    drifted(db_ctx, sandbox)
    app = make_app(db_ctx)
    async with app.run_test(size=(100, 30), notifications=True) as pilot:
        await open_drift(pilot)
        assert len(rows(app)) == 7 and "7 open finding(s)" in screen_text(app)
        first = rows(app)[0].data
        assert (first["field"], first["ours"], first["theirs"]) == ("status", "submitted", "completed")
        assert "ours:   submitted" in screen_text(app) and "theirs: completed" in screen_text(app)
        await pilot.press("a")
        assert isinstance(app.screen, PromptScreen)
        await pilot.press("enter")  # a note is required
        assert isinstance(app.screen, PromptScreen)
        await type_text(pilot, "paid on time")
        await pilot.press("enter")
        await settle(pilot)
        assert record_status(db_ctx, first["record"]) == "completed"
        assert [f["id"] for f in drift.list_findings(db_ctx, state="resolved")] == [first["id"]]
        [entry] = [e for e in audit.search(db_ctx, "drift.accept") if e["after"]["finding"] == first["id"]]
        assert "paid on time" in entry["reason"]
        assert first["id"] not in [row.key for row in rows(app)] and len(rows(app)) == 6
        assert any("Accept: 1 accepted" in text for text in notices(app))


@pytest.mark.asyncio
async def test_bulk_escalate_what_the_filter_shows_asks_first(db_ctx: ServiceContext,
                                                              sandbox: tuple[str, ProviderState]) -> None:
    drifted(db_ctx, sandbox)
    app = make_app(db_ctx)
    async with app.run_test(size=(100, 30), notifications=True) as pilot:
        await open_drift(pilot)
        await pilot.press("slash", *"exists", "enter")
        shown = [row.data for row in rows(app)]
        assert sorted(f["provider_id"] for f in shown) == ["run_00000004", "run_00000009"]
        await pilot.press("asterisk", "e")
        await type_text(pilot, "nobody knows these")
        await pilot.press("enter")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")  # cancelled: nothing changes
        await settle(pilot)
        assert len(drift.list_findings(db_ctx)) == 7
        await pilot.press("e")
        await type_text(pilot, "nobody knows these")
        await pilot.press("enter")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        await settle(pilot)
        assert len(drift.list_findings(db_ctx)) == 5
        ours = next(f for f in shown if f["record"] is not None)
        assert record_status(db_ctx, ours["record"]) == "needs_review"
        assert any("Escalate: 2 escalated" in text for text in notices(app))


@pytest.mark.asyncio
async def test_push_without_an_intent_says_so(db_ctx: ServiceContext, sandbox: tuple[str, ProviderState]) -> None:
    drifted(db_ctx, sandbox)
    app = make_app(db_ctx)
    async with app.run_test(size=(100, 30), notifications=True) as pilot:
        await open_drift(pilot)
        await pilot.press("p")
        await type_text(pilot, "we want ours")
        await pilot.press("enter")
        await settle(pilot)
        assert len(drift.list_findings(db_ctx)) == 7
        assert any("1 skipped: the payroll adapter has no intent that sets status to 'submitted'" in text
                   for text in notices(app))


@pytest.mark.parametrize("size", [(80, 24), (100, 30)], ids=["80x24", "100x30"])
def test_snapshot(size: tuple[int, int], store: ServiceContext, sandbox: tuple[str, ProviderState],
                  snap_compare: Any) -> None:
    drifted(store, sandbox)
    app = make_app(store)

    async def run_before(pilot: Pilot[Any]) -> None:
        await open_drift(pilot)

    assert snap_compare(app, terminal_size=size, run_before=run_before)
