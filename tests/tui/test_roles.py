"""Roles in the TUI, on both backends: what the actor's role may not do is gone from the footer
and the palette, and refused with one line (and an audit entry) if reached anyway; the Payload
screen's reveal key shows the body unredacted to an operator, audited without the value."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from textual.pilot import Pilot

from tests.support import acting_as
from tests.tui.conftest import make_app, notices, palette_search, settle
from tests.tui.test_read_only import footer_actions
from workbench.domain.redaction import MASK
from workbench.services import audit, queries, triage
from workbench.services.context import ServiceContext
from workbench.tui.screens.failures import FailuresScreen
from workbench.tui.screens.help import screen_keys
from workbench.tui.screens.payload import REVEALED_NOTE, PayloadScreen
from workbench.tui.screens.providers import ProvidersScreen

pytestmark = pytest.mark.asyncio

TRIAGE_VERBS = {"Retry", "Replay", "Resolve", "Ignore", "Assign"}
# In every fixture delivery's body, and masked by the Stripe redaction rules.
CLIENT_SECRET = "_secret_abcdefgh12345678"


def screen_text(pilot: Pilot[Any]) -> str:
    return "\n".join(strip.text for strip in pilot.app.screen._compositor.render_strips())


def denials(ctx: ServiceContext) -> list[tuple[str, str]]:
    return [(e["actor"], e["target_id"]) for e in audit.search(ctx, "access.denied")]


async def palette_commands(pilot: Pilot[Any]) -> list[str]:
    shown = await palette_search(pilot)
    await pilot.press("escape")
    return shown


async def test_a_viewer_sees_no_triage_key_and_is_refused_if_it_reaches_one(db_ctx: ServiceContext) -> None:
    viewer = acting_as(db_ctx, "user:vic", "viewer")
    group = next(g for g in triage.groups(db_ctx) if g.category == "contract_mismatch")
    app = make_app(viewer)
    async with app.run_test(notifications=True) as pilot:
        await settle(pilot)
        app.open_group(group)
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, FailuresScreen) and screen.table.rows
        assert "act" not in footer_actions(app) and "mark" in footer_actions(app)
        palette = await palette_commands(pilot)
        assert "Failures: Open" in palette and not [c for c in palette if c.split(": ")[-1] in TRIAGE_VERBS]
        described = {what for _, what in screen_keys(screen)}  # the help screen's list of keys
        assert "Open" in described and not described & TRIAGE_VERBS
        before = [triage.failure_detail(db_ctx, row.key) for row in screen.table.rows]
        await pilot.press("d")
        await settle(pilot)
        assert screen.is_current  # no prompt for a note
        refusal = "user:vic is viewer here; triage needs the operator role"
        assert notices(app)[-1].startswith(refusal)
        screen.action_act("replay")  # reached another way (a palette remembered from before)
        await settle(pilot)
        assert notices(app)[-1].startswith("user:vic is viewer here; replay needs the operator role")
        assert [triage.failure_detail(db_ctx, row.key) for row in screen.table.rows] == before
        assert denials(db_ctx) == [("user:vic", "replay"), ("user:vic", "triage")]  # newest first


async def test_an_operator_has_the_triage_and_pause_keys_but_not_more(db_ctx: ServiceContext) -> None:
    operator = acting_as(db_ctx, "user:olga", "operator")
    group = next(g for g in triage.groups(db_ctx) if g.category == "contract_mismatch")
    app = make_app(operator)
    async with app.run_test() as pilot:
        await settle(pilot)
        assert isinstance(app.screen, ProvidersScreen) and "pause" in footer_actions(app)
        app.open_group(group)
        await settle(pilot)
        assert "act" in footer_actions(app)
        assert TRIAGE_VERBS <= {c.split(": ")[-1] for c in await palette_commands(pilot)}


async def test_a_viewer_cannot_pause_from_the_providers_screen(db_ctx: ServiceContext) -> None:
    viewer = acting_as(db_ctx, "user:vic", "viewer")
    app = make_app(viewer)
    async with app.run_test(notifications=True) as pilot:
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, ProvidersScreen) and screen.table.rows
        assert "pause" not in footer_actions(app) and "records" in footer_actions(app)
        assert "Providers: Pause/resume" not in await palette_commands(pilot)
        await pilot.press("p")
        await settle(pilot)
        assert screen.is_current
        assert notices(app)[-1].startswith("user:vic is viewer here; pause needs the operator role")
        assert denials(db_ctx) == [("user:vic", "pause")]


async def test_an_actor_without_a_role_sees_why_and_nothing_else(db_ctx: ServiceContext) -> None:
    app = make_app(db_ctx.as_actor("user:nobody"))
    async with app.run_test(notifications=True) as pilot:
        await settle(pilot)
        assert any("user:nobody has no role on this store" in n and "workbench access grant nobody viewer" in n
                   for n in notices(app))
        assert "pause" not in footer_actions(app)


async def test_an_operator_reveals_a_payload_and_the_reveal_is_audited(db_ctx: ServiceContext) -> None:
    operator = acting_as(db_ctx, "user:olga", "operator")
    delivery = next(e["id"] for e in queries.iter_events(db_ctx) if e["event_type"] == "payment_intent.created")
    app = make_app(operator)
    async with app.run_test(size=(160, 60), notifications=True) as pilot:
        await settle(pilot)
        app.push_screen(PayloadScreen(delivery))
        await settle(pilot)
        assert "reveal" in footer_actions(app)
        redacted = screen_text(pilot)
        assert CLIENT_SECRET not in redacted and MASK in redacted
        await pilot.press("r")
        await settle(pilot)
        revealed = screen_text(pilot)
        assert CLIENT_SECRET in revealed and REVEALED_NOTE[:40] in revealed
        await pilot.press("ctrl+r")  # hidden again
        await settle(pilot)
        assert CLIENT_SECRET not in screen_text(pilot)
    [entry] = audit.search(db_ctx, "payload.reveal")
    assert (entry["actor"], entry["target_type"], entry["target_id"]) == ("user:olga", "delivery", delivery)
    exported = audit.search(db_ctx)
    assert not [e for e in exported if CLIENT_SECRET in str(e)]


async def test_a_viewer_has_no_reveal_key_and_is_refused(db_ctx: ServiceContext) -> None:
    viewer = acting_as(db_ctx, "user:vic", "viewer")
    delivery = next(e["id"] for e in queries.iter_events(db_ctx))
    app = make_app(viewer)
    async with app.run_test(size=(160, 60), notifications=True) as pilot:
        await settle(pilot)
        app.push_screen(PayloadScreen(delivery))
        await settle(pilot)
        assert "reveal" not in footer_actions(app) and "diff" in footer_actions(app)
        await pilot.press("r")
        await settle(pilot)
        assert notices(app)[-1].startswith("user:vic is viewer here; reveal needs the operator role")
        assert CLIENT_SECRET not in screen_text(pilot)
        screen = app.screen
        assert isinstance(screen, PayloadScreen)
        screen.action_reveal()  # reached anyway
        await settle(pilot)
        assert CLIENT_SECRET not in screen_text(pilot)
    assert denials(db_ctx) == [("user:vic", "reveal"), ("user:vic", "reveal")]
    assert not audit.search(db_ctx, "payload.reveal")


async def test_no_reveal_on_a_read_only_store(db_ctx: ServiceContext) -> None:
    delivery = next(e["id"] for e in queries.iter_events(db_ctx))
    app = make_app(dataclasses.replace(db_ctx, read_only=True))
    async with app.run_test(size=(160, 60), notifications=True) as pilot:
        await settle(pilot)
        app.push_screen(PayloadScreen(delivery))
        await settle(pilot)
        assert "reveal" not in footer_actions(app)
        await pilot.press("r")
        await settle(pilot)
        assert notices(app)[-1].startswith("Reveal is off: the store is read-only")
    assert not audit.search(db_ctx, "payload.reveal")
