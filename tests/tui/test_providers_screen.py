"""The Providers screen's word on each connection beyond its health: what its provider can do,
its webhook signatures (active secrets by name, never a value; the newest verified and failed
deliveries, with the secret used or tried) and the URL a running receiver takes its webhooks
at. Secrets, signed deliveries and the receiver's presence are made by the real use cases
(secret_refs.add_secret, ingest, processes.announce), on SQLite and PostgreSQL alike."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

import orjson
import pytest
import stripe
from textual.pilot import Pilot
from textual.widgets import Static

from tests.support import FixedClock, capture, pi_event
from tests.tui.conftest import make_app, screen_text, settle
from tests.tui.fixture_store import DISPLAY_NOW
from workbench.services import processes, secret_refs
from workbench.services.context import ServiceContext
from workbench.services.ingest import ingest
from workbench.tui.app import WorkbenchApp
from workbench.tui.screens.providers import ProvidersScreen
from workbench.vault import KdfParams, create, vault_path

FIRST = "whsec_providers_first_value"
SECOND = "whsec_providers_second_value"
RECEIVER = "http://127.0.0.1:8787"


def table(app: WorkbenchApp) -> Any:
    screen = app.screen
    assert isinstance(screen, ProvidersScreen)
    return screen.table


def signed(event: dict[str, Any], secret: str, minutes_ago: int) -> Any:
    at = DISPLAY_NOW - timedelta(minutes=minutes_ago)
    body = orjson.dumps(event)
    header = stripe.WebhookSignature.generate_signature_header(body.decode(), secret, timestamp=int(at.timestamp()))
    return capture(body, at, headers={"Content-Type": "application/json", "Stripe-Signature": header})


def signing_acme(ctx: ServiceContext) -> tuple[str, str]:
    """Two active webhook secrets on acme; a delivery verified 5 minutes before the screen's now
    (with the second secret) and a forged one 20 minutes before; a receiver seen 10 s before.
    The secrets' names, oldest first."""
    vault = create(vault_path("sandbox"), "sandbox", "pass phrase here",
                   params=KdfParams(memory_kib=1024, iterations=1, lanes=1))
    first = secret_refs.add_secret(ctx, vault, secret_refs.plan_secret(ctx, "acme", "webhook_secret", None), FIRST, "t")
    second = secret_refs.add_secret(ctx, vault, secret_refs.plan_secret(ctx, "acme", "webhook_secret", None), SECOND,
                                    "rotation")
    report = ingest(ctx, "acme", [signed(pi_event("evt_forged", "pi_3AcmeZZZ", "succeeded", 1), "whsec_attacker", 20),
                                  signed(pi_event("evt_signed", "pi_3AcmeYYY", "processing", 2), SECOND, 5)],
                    vaults={"sandbox": vault})
    assert report.counts == {"rejected": 1, "applied": 1}
    processes.announce(replace(ctx, clock=FixedClock(DISPLAY_NOW - timedelta(seconds=11))), "receiver", RECEIVER)
    return first.name, second.name


def panel(app: WorkbenchApp) -> str:
    return " ".join(str(app.screen.query_one("#providers-detail", Static).render()).split())


async def shown(pilot: Pilot[Any]) -> None:
    await settle(pilot)
    assert isinstance(pilot.app.screen, ProvidersScreen)


@pytest.mark.asyncio
async def test_the_detail_panel_names_capabilities_secrets_verdicts_and_the_receiver_url(db_ctx: ServiceContext) -> None:
    first, second = signing_acme(db_ctx)
    app = make_app(db_ctx)
    async with app.run_test(size=(120, 40)) as pilot:
        await shown(pilot)
        text = panel(app)  # acme: the first row
        assert ("Can: webhooks signed stripe-v1 · event listing · idempotency keys · lookup by our reference · "
                "cursor pagination · rate limits: HTTP 429, retry-after · no polling cursor") in text
        assert f"Webhook secrets: 2 active: {second}, {first}" in text  # newest first
        assert f"Signatures: last verified 5m ago · last failed 20m ago (tried {first})" in text
        assert f"Receiver: {RECEIVER}/hooks/acme" in text
        assert FIRST not in screen_text(app) and SECOND not in screen_text(app)
        row = table(app).rows[0]
        assert (row.key, row.cells[7]) == ("acme", ("verified", "ok"))
        await pilot.press("down")
        await settle(pilot)
        text = panel(app)  # globex: no secret
        assert "Webhook secrets: none: deliveries are stored unchecked" in text and "Signatures:" not in text
        assert f"Receiver: {RECEIVER}/hooks/globex" in text
        assert table(app).rows[1].cells[7] == "none"


@pytest.mark.asyncio
async def test_without_a_live_receiver_the_panel_says_how_to_start_one(db_ctx: ServiceContext) -> None:
    # A receiver whose heartbeat stopped 31 s before now, and one that stopped cleanly: neither runs.
    stale = processes.announce(replace(db_ctx, clock=FixedClock(DISPLAY_NOW - timedelta(seconds=32))), "receiver",
                               RECEIVER)
    assert stale
    stopped = processes.announce(replace(db_ctx, clock=FixedClock(DISPLAY_NOW - timedelta(seconds=5))), "receiver",
                                 "http://127.0.0.1:9999")
    processes.stopped(replace(db_ctx, clock=FixedClock(DISPLAY_NOW - timedelta(seconds=3))), stopped)
    app = make_app(db_ctx)
    async with app.run_test(size=(120, 40)) as pilot:
        await shown(pilot)
        assert "Receiver: no receiver running: start `workbench listen`" in panel(app)
        assert "8787" not in screen_text(app) and "9999" not in screen_text(app)


@pytest.mark.parametrize("size", [(80, 24), (100, 30)], ids=["80x24", "100x30"])
def test_snapshot(size: tuple[int, int], store: ServiceContext, snap_compare: Any,
                  monkeypatch: pytest.MonkeyPatch) -> None:
    # Secret names end in random letters: fixed ones here, so the picture is the same every run.
    names = iter(["acme-webhook-secret-20261101-first", "acme-webhook-secret-20261101-second"])
    monkeypatch.setattr(secret_refs, "new_secret_name", lambda *_args: next(names))
    signing_acme(store)
    app = make_app(store)

    async def run_before(pilot: Pilot[Any]) -> None:
        await settle(pilot)

    assert snap_compare(app, terminal_size=size, run_before=run_before)


@pytest.mark.asyncio
async def test_the_panel_shows_the_engine_its_polling_and_stopped_calls(db_ctx: ServiceContext) -> None:
    from store.database import writing
    from workbench.services import connections, sync_state

    vault = create(vault_path("sandbox"), "sandbox", "pass phrase here",
                   params=KdfParams(memory_kib=1024, iterations=1, lanes=1))
    key = secret_refs.add_secret(db_ctx, vault, secret_refs.plan_secret(db_ctx, "acme", "api_key", None), "sk_x", "t")
    # FixedClock moves one second on at each reading: the heartbeat is 3 s old, the stop under 3 min.
    processes.announce(replace(db_ctx, clock=FixedClock(DISPLAY_NOW - timedelta(seconds=4))), "engine", None)
    then = replace(db_ctx, clock=FixedClock(DISPLAY_NOW - timedelta(minutes=3)))
    acme = connections.get_connection(db_ctx, "acme")
    sync_state.save_poll(then, acme.id, "evt_9", newest_event_at=DISPLAY_NOW - timedelta(minutes=3, seconds=7),
                         polled_at=DISPLAY_NOW - timedelta(minutes=2))
    with writing(db_ctx.engine) as conn:
        sync_state.stop_calls(conn, then, acme, "invalid_api_key: the API key was refused")
    app = make_app(db_ctx)
    async with app.run_test(size=(120, 40)) as pilot:
        await shown(pilot)
        text = panel(app)  # acme
        assert "Engine: 1 running (heartbeat 3s ago) · last poll 2m ago · lag 67s · 0 command(s) queued" in text
        assert (f"Calls STOPPED 2m ago: invalid_api_key: the API key was refused · API key {key.name} failed: "
                "rotate it (`workbench connection secret add acme --kind api_key`)") in text
        await pilot.press("down")
        await settle(pilot)
        assert "Engine: 1 running" in panel(app) and "STOPPED" not in panel(app)  # globex


@pytest.mark.asyncio
async def test_the_panel_shows_the_pace_the_drain_time_and_an_open_breaker(db_ctx: ServiceContext) -> None:
    from workbench.domain.taxonomy import Category
    from workbench.services import breaker, command_submit, connections

    processes.announce(replace(db_ctx, clock=FixedClock(DISPLAY_NOW - timedelta(seconds=4))), "engine", None)
    for amount in range(100, 150):
        command_submit.submit(db_ctx, "acme", "payment.create", {"amount": amount, "currency": "usd"})
    acme = connections.get_connection(db_ctx, "acme")
    breaker.CallGate(db_ctx).observed([(acme, Category.PROVIDER_OUTAGE)] * 20)
    app = make_app(db_ctx)
    async with app.run_test(size=(140, 40)) as pilot:
        await shown(pilot)
        text = panel(app)  # acme: Stripe's declared 25/s, 50 queued
        assert "50 command(s) queued, drains in ~2s · paced 25/s" in text
        assert ("Circuit breaker OPEN: 20 of 20 calls failed as provider_outage within 60 s (trips at 50%) · "
                "commands wait, nothing is dropped") in text


def scheduled_acme(ctx: ServiceContext) -> None:
    """acme polled every 5 min and reconciled every 6 h by one engine (heartbeat 3 s old); polled
    2 min before the screen's now; its last full reconciliation started 2.5 h before (it failed:
    the provider was down, which counts: the next one is due 6 h after it started)."""
    from adapters.stripe.client import StripeClient
    from workbench.services import connections, reconcile, sync_state

    connections.update_settings(ctx, "acme", lambda s: {**s, "sync": {"interval_s": 300,
                                                                      "reconcile_interval_s": 6 * 3600}},
                                "connection.set", "tests: a schedule")
    processes.announce(replace(ctx, clock=FixedClock(DISPLAY_NOW - timedelta(seconds=4))), "engine", None)
    acme = connections.get_connection(ctx, "acme")
    sync_state.save_poll(ctx, acme.id, "evt_9", newest_event_at=DISPLAY_NOW - timedelta(minutes=2, seconds=30),
                         polled_at=DISPLAY_NOW - timedelta(minutes=2))
    down = StripeClient(base_url="http://127.0.0.1:9", api_key="sk_test_down", timeout_s=2)
    try:
        with pytest.raises(reconcile.ReconcileFailed):
            reconcile.reconcile(replace(ctx, clock=FixedClock(DISPLAY_NOW - timedelta(hours=2, minutes=30))), "acme",
                                    client=down)
    finally:
        down.close()


@pytest.mark.asyncio
async def test_the_panel_says_when_the_engine_polls_and_reconciles_next(db_ctx: ServiceContext) -> None:
    scheduled_acme(db_ctx)
    app = make_app(db_ctx)
    async with app.run_test(size=(120, 40)) as pilot:
        await shown(pilot)
        assert ("Schedule: next poll in 3m (every 5m) · next reconcile in 3h (every 6h, last 2h ago)"
                in panel(app))  # acme
        await pilot.press("down")
        await settle(pilot)
        assert ("Schedule: next poll due now (every 5m) · reconcile on demand only (r; sync.reconcile_interval_s "
                "schedules it)" in panel(app))  # globex: never polled, no reconciliation schedule


@pytest.mark.asyncio
async def test_pause_resume_and_reconcile_now_ask_why_and_are_audited(db_ctx: ServiceContext) -> None:
    from sqlalchemy import select

    from store.database import reading
    from store.models import ReconcileRun, SyncState
    from tests.tui.conftest import notices, type_text, until
    from workbench.services import audit, connections

    app = make_app(db_ctx)
    async with app.run_test(size=(120, 40), notifications=True) as pilot:
        await shown(pilot)
        await pilot.press("p")
        await settle(pilot)
        assert "Pause acme" in screen_text(app) and "Reason (recorded in the audit trail)" in screen_text(app)
        await type_text(pilot, "provider incident")
        await pilot.press("enter")
        await until(pilot, lambda: bool(notices(app)))
        assert connections.get_connection(db_ctx, "acme").paused
        assert notices(app)[-1] == "acme paused"
        assert table(app).rows[0].cells[6] == ("paused", "warn")

        await pilot.press("r")
        await settle(pilot)
        assert "Reconcile acme now" in screen_text(app)
        await pilot.press("escape")  # cancelled: nothing asked
        await settle(pilot)
        await pilot.press("r")
        await settle(pilot)
        await pilot.press("enter")  # a reason is required
        await settle(pilot)
        assert "A value is required" in screen_text(app)
        await type_text(pilot, "after the incident")
        await pilot.press("enter")
        await until(pilot, lambda: notices(app)[-1].startswith("acme: reconciliation"))
        with reading(db_ctx.engine) as conn:
            runs = list(conn.execute(select(ReconcileRun.__table__)))
            (state,) = list(conn.execute(select(SyncState.__table__)))
        (run,) = runs
        assert (run.status, run.record_id, run.dry_run) == ("requested", None, False)
        assert state.reconcile_requested_at is not None
        assert notices(app)[-1] == f"acme: reconciliation {run.id} requested; a running engine carries it out"

        await pilot.press("p")
        await settle(pilot)
        assert "Resume acme" in screen_text(app)
        await type_text(pilot, "incident over")
        await pilot.press("enter")
        await until(pilot, lambda: notices(app)[-1] == "acme resumed")
        assert not connections.get_connection(db_ctx, "acme").paused

    reasons = {e["action"]: e["reason"] for e in audit.search(db_ctx, "connection.")}
    assert reasons["connection.pause"] == "provider incident"
    assert reasons["connection.resume"] == "incident over"
    assert reasons["connection.reconcile_requested"] == f"after the incident (run {run.id})"


@pytest.mark.parametrize("size", [(120, 40)], ids=["120x40"])
def test_snapshot_engine_schedule_and_reconcile_prompt(size: tuple[int, int], store: ServiceContext,
                                                       snap_compare: Any) -> None:
    scheduled_acme(store)
    app = make_app(store)

    async def run_before(pilot: Pilot[Any]) -> None:
        await settle(pilot)
        await pilot.press("r")
        await settle(pilot)

    assert snap_compare(app, terminal_size=size, run_before=run_before)
