"""Every screen, at 80x24 and at 120x40, on the deterministic fixture store.

Regenerate after a deliberate change with `pytest tests/tui --snapshot-update`, then look at
the report (or the SVGs) before committing them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from textual.pilot import Pilot

from tests.tui.conftest import make_app, palette_search, settle
from workbench.services import queries, triage, views
from workbench.services.context import ServiceContext
from workbench.tui.app import WorkbenchApp

SIZES = [pytest.param((80, 24), id="80x24"), pytest.param((120, 40), id="120x40")]

Step = Callable[[WorkbenchApp, Pilot[Any], ServiceContext], Awaitable[None]]


def deliveries_of(ctx: ServiceContext, external_id: str) -> tuple[str, list[str]]:
    record = next(r for r in queries.iter_records(ctx) if r["provider_refs"][0]["external_id"] == external_id)
    return record["id"], [e["id"] for e in queries.iter_events(ctx, record_id=record["id"])]


async def providers(app: WorkbenchApp, pilot: Pilot[Any], ctx: ServiceContext) -> None:
    pass


async def records(app: WorkbenchApp, pilot: Pilot[Any], ctx: ServiceContext) -> None:
    await pilot.press("2")


async def records_filtered(app: WorkbenchApp, pilot: Pilot[Any], ctx: ServiceContext) -> None:
    await pilot.press("2")
    await settle(pilot)
    await pilot.press("slash", *"needs_review")


async def timeline(app: WorkbenchApp, pilot: Pilot[Any], ctx: ServiceContext) -> None:
    app.open_timeline("pi_3AcmeCCC")


async def payload(app: WorkbenchApp, pilot: Pilot[Any], ctx: ServiceContext) -> None:
    record, deliveries = deliveries_of(ctx, "pi_3AcmeCCC")
    app.open_payload(deliveries[1], record)


async def diff_deliveries(app: WorkbenchApp, pilot: Pilot[Any], ctx: ServiceContext) -> None:
    _, deliveries = deliveries_of(ctx, "pi_3AcmeCCC")
    left, right = deliveries[1], deliveries[2]
    app.open_diff(lambda c: views.deliveries_pair(c, left, right))


async def diff_state(app: WorkbenchApp, pilot: Pilot[Any], ctx: ServiceContext) -> None:
    record, deliveries = deliveries_of(ctx, "pi_3AcmeAAA")
    app.open_state_diff(deliveries[1], record)


async def errors(app: WorkbenchApp, pilot: Pilot[Any], ctx: ServiceContext) -> None:
    await pilot.press("3")


async def failures(app: WorkbenchApp, pilot: Pilot[Any], ctx: ServiceContext) -> None:
    app.open_group(triage.groups(ctx)[0])
    await settle(pilot)
    await pilot.press("space")


async def bulk_confirm(app: WorkbenchApp, pilot: Pilot[Any], ctx: ServiceContext) -> None:
    app.open_group(triage.groups(ctx)[0])
    await settle(pilot)
    await pilot.press("asterisk", "r")


async def note_prompt(app: WorkbenchApp, pilot: Pilot[Any], ctx: ServiceContext) -> None:
    app.open_group(triage.groups(ctx)[0])
    await settle(pilot)
    await pilot.press("d", *"duplicate of an incident")


async def audit(app: WorkbenchApp, pilot: Pilot[Any], ctx: ServiceContext) -> None:
    await pilot.press("4")


async def audit_entry(app: WorkbenchApp, pilot: Pilot[Any], ctx: ServiceContext) -> None:
    await pilot.press("4")
    await settle(pilot)
    await pilot.press("enter")


async def help_screen(app: WorkbenchApp, pilot: Pilot[Any], ctx: ServiceContext) -> None:
    await pilot.press("2")
    await settle(pilot)
    await pilot.press("question_mark")


async def palette(app: WorkbenchApp, pilot: Pilot[Any], ctx: ServiceContext) -> None:
    shown = await palette_search(pilot, "go to")
    assert shown == [f"Go to {title}" for title in app.MODE_TITLES.values()]


SCREENS: dict[str, Step] = {
    "providers": providers, "records": records, "records_filtered": records_filtered, "timeline": timeline,
    "payload": payload, "diff_deliveries": diff_deliveries, "diff_state": diff_state, "errors": errors,
    "failures": failures, "bulk_confirm": bulk_confirm, "note_prompt": note_prompt, "audit": audit,
    "audit_entry": audit_entry, "help": help_screen, "palette": palette,
}


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("screen", list(SCREENS))
def test_screen(screen: str, size: tuple[int, int], store: ServiceContext, snap_compare: Any) -> None:
    app = make_app(store)

    async def run_before(pilot: Pilot[Any]) -> None:
        await settle(pilot)
        await SCREENS[screen](app, pilot, store)
        await settle(pilot)

    assert snap_compare(app, terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("theme", ["workbench-light", "workbench-high-contrast"])
def test_themes(theme: str, store: ServiceContext, snap_compare: Any) -> None:
    app = make_app(store, theme=theme)

    async def run_before(pilot: Pilot[Any]) -> None:
        await settle(pilot)
        app.open_timeline("pi_3AcmeCCC")
        await settle(pilot)

    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)


def test_read_only(store: ServiceContext, snap_compare: Any) -> None:
    """A read-only store: the banner under the status line, and a footer without the triage
    actions (the failures of a group, where they would otherwise be)."""
    app = make_app(dataclasses.replace(store, read_only=True))

    async def run_before(pilot: Pilot[Any]) -> None:
        await settle(pilot)
        app.open_group(triage.groups(store)[0])
        await settle(pilot)

    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)
