"""The text of the TUI's screens, as rendered, holds none of the canaries a provider put in its
events (IDs, types, statuses, bodies, header names and values), on both backends."""

from __future__ import annotations

from typing import Any

import pytest
from textual.pilot import Pilot

from tests.canaries import assert_no_canary, canary_captures
from tests.support import add_stripe
from tests.tui.conftest import make_app, settle
from workbench.domain.redaction import MASK
from workbench.services import queries
from workbench.services.context import ServiceContext
from workbench.services.ingest import ingest
from workbench.tui.screens.payload import PayloadScreen
from workbench.tui.screens.timeline import TimelineScreen


def screen_text(pilot: Pilot[Any]) -> str:
    # What the terminal shows, line by line, as plain text (the compositor's rendered strips).
    return "\n".join(strip.text for strip in pilot.app.screen._compositor.render_strips())


@pytest.mark.asyncio
async def test_timeline_and_payload_screens_show_no_canary(ctx: ServiceContext) -> None:
    add_stripe(ctx)
    ingest(ctx, "acme", canary_captures())
    records = [r["id"] for r in queries.iter_records(ctx)]
    events = [e["id"] for e in queries.iter_events(ctx)]
    assert len(records) == 20 and len(events) == 21
    app = make_app(ctx)
    async with app.run_test(size=(240, 80)) as pilot:
        await settle(pilot)
        for index in ("2", "3", "4"):  # the records, failures and audit lists
            await pilot.press(index)
            await settle(pilot)
            assert_no_canary(screen_text(pilot), f"screen {index}")
        # Each screen is opened over the one before, not after popping it: a pop resumes the
        # audit list below, which reloads and redraws itself (41 times, a quarter of the time).
        for record in records:
            app.open_timeline(record)
            await settle(pilot)
            assert isinstance(app.screen, TimelineScreen) and app.screen.record_ref == record
            assert_no_canary(screen_text(pilot), f"timeline of {record}")
        shown_masks = 0
        for event in events:
            app.open_payload(event)
            await settle(pilot)
            assert isinstance(app.screen, PayloadScreen) and app.screen.delivery_id == event
            text = screen_text(pilot)
            assert_no_canary(text, f"payload of {event}")
            shown_masks += MASK in text
        assert shown_masks == len(events)
