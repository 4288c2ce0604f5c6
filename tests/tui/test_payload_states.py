"""The Payload screen with a body it cannot show: encrypted with the vault locked (until the
Vault screen unlocks it), or purged by retention (and when)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.support import T0, FixedClock, capture, pi_event
from tests.tui.conftest import make_app, notices, settle
from tests.tui.test_redaction_screens import screen_text
from workbench.services import queries, retention, triage
from workbench.services.context import ServiceContext
from workbench.services.ingest import ingest
from workbench.services.payload_settings import PayloadChange, add_with_payload_settings
from workbench.tui.screens.failures import FailuresScreen
from workbench.tui.screens.payload import PayloadScreen
from workbench.vault import KdfParams, create, vault_path


@pytest.mark.asyncio
async def test_payload_screen_says_when_a_body_is_encrypted_or_purged(ctx: ServiceContext) -> None:
    vault = create(vault_path("sandbox"), "sandbox", "correct horse battery",
                   params=KdfParams(memory_kib=1024, iterations=1, lanes=1))
    add_with_payload_settings(ctx, "acme", "stripe", "sandbox", "test", PayloadChange(encrypt=True, raw_days=30),
                              {"sandbox": vault})
    ingest(ctx, "acme", [capture(pi_event("evt_1", "pi_sealed_1", "processing", int(T0.timestamp())), T0)],
           vaults={"sandbox": vault})
    (event,) = [e["id"] for e in queries.iter_events(ctx)]
    app = make_app(ctx)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        app.open_payload(event)
        await settle(pilot)
        assert isinstance(app.screen, PayloadScreen)
        text = " ".join(screen_text(pilot).split())
        assert "body (encrypted, vault locked)" in text and "this body is encrypted: unlock the sandbox" in text
        assert "pi_sealed_1" not in text and "evt_1" in text  # the delivery itself still shows
        app.pop_screen()
        app.unlocked_vaults = {"sandbox": vault}
        app.open_payload(event)
        await settle(pilot)
        text = screen_text(pilot)
        assert "pi_sealed_1" in text and "encrypted at rest" in text
        app.pop_screen()
        retention.run_retention(ServiceContext(engine=ctx.engine, clock=FixedClock(T0 + timedelta(days=31))))
        app.open_payload(event)
        await settle(pilot)
        text = " ".join(screen_text(pilot).split())
        assert "body (purged)" in text and "is gone: purged by retention at" in text


@pytest.mark.asyncio
async def test_retry_from_the_failures_screen_opens_an_encrypted_event_with_the_apps_vault(
        ctx: ServiceContext) -> None:
    vault = create(vault_path("sandbox"), "sandbox", "correct horse battery",
                   params=KdfParams(memory_kib=1024, iterations=1, lanes=1))
    add_with_payload_settings(ctx, "acme", "stripe", "sandbox", "test", PayloadChange(encrypt=True),
                              {"sandbox": vault})
    created = int(T0.timestamp())
    story = [pi_event("evt_1", "pi_1", "processing", created), pi_event("evt_2", "pi_1", "succeeded", created + 1),
             pi_event("evt_3", "pi_1", "processing", created + 2)]  # refused after completion: a failure
    ingest(ctx, "acme", [capture(e, T0 + timedelta(seconds=i)) for i, e in enumerate(story)],
           vaults={"sandbox": vault})
    (group,) = triage.groups(ctx)
    (failure,) = queries.iter_failures(ctx)
    app = make_app(ctx)
    async with app.run_test(notifications=True) as pilot:
        await settle(pilot)
        app.open_group(group)
        await settle(pilot)
        assert isinstance(app.screen, FailuresScreen)
        await pilot.press("r")  # the vault locked: skipped, saying why
        await settle(pilot)
        assert any("this body is encrypted" in text for text in notices(app))
        assert triage.failure_detail(ctx, failure["id"])["notes"] == []
        app.unlocked_vaults = {"sandbox": vault}
        await pilot.press("r")
        await settle(pilot)
        assert triage.failure_detail(ctx, failure["id"])["notes"][0]["note"].startswith("retry: rejected")
