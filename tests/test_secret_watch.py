"""The secret rotation watch on both backends, with deliveries really signed and verified by
ingest: a webhook secret within the lead time of its expiry while deliveries still verify only
with it raises one `secret.expiring` alert; a delivery verified with the newer secret clears it
(with a recovery notice); a retired secret is no longer watched."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import orjson
import stripe

from tests.support import T0, add_stripe, capture, pi_event
from tests.test_alerts import Clock
from workbench.services import alerts, secret_refs, secret_watch
from workbench.services.captures import Capture
from workbench.services.context import ServiceContext
from workbench.services.ingest import ingest
from workbench.vault import KdfParams, UnlockedVault, create, vault_path

CHEAP = KdfParams(memory_kib=1024, iterations=1, lanes=1)


def signed_capture(event_id: str, secret: str, clock: Clock) -> Capture:
    body = orjson.dumps(pi_event(event_id, "pi_1", "processing", int(clock.now.timestamp())))
    header = stripe.WebhookSignature.generate_signature_header(body.decode(), secret,
                                                              timestamp=int(clock.now.timestamp()))
    return capture(body, clock.now, headers={"Content-Type": "application/json", "Stripe-Signature": header})


def add_webhook_secret(ctx: ServiceContext, vault: UnlockedVault, value: str, expires_in: str | None) -> str:
    plan = secret_refs.plan_secret(ctx, "acme", "webhook_secret", expires_in)
    return secret_refs.add_secret(ctx, vault, plan, value, "test").name


def test_an_expiring_secret_still_in_use_alerts_until_the_sender_switches(ctx: ServiceContext) -> None:
    clock = Clock(T0)
    ctx = replace(ctx, clock=clock)
    add_stripe(ctx)
    vault = create(vault_path("sandbox"), "sandbox", "pass phrase here", params=CHEAP)
    old = add_webhook_secret(ctx, vault, "whsec_old_secret_value", "10d")
    assert ingest(ctx, "acme", [signed_capture("evt_1", "whsec_old_secret_value", clock)],
                  vaults={"sandbox": vault}).counts == {"applied": 1}
    assert secret_watch.check(ctx) == []  # 10 days left: outside the 7-day lead

    clock.now = T0 + timedelta(days=4)  # 6 days left, and the only secret in use
    assert secret_watch.check(ctx) == ["acme"]
    assert secret_watch.check(ctx) == []  # one alert, not one per look
    [alert] = alerts.list_alerts(ctx)
    assert (alert["rule"], alert["source"], alert["count"], alert["severity"]) == ("secret.expiring", "signal", 1,
                                                                                  "warning")
    assert old in alert["summary"] and "no newer webhook secret exists" in alert["summary"]
    assert "whsec_old_secret_value" not in alert["summary"]

    clock.now += timedelta(minutes=1)
    new = add_webhook_secret(ctx, vault, "whsec_new_secret_value", None)
    clock.now += timedelta(minutes=1)
    ingest(ctx, "acme", [signed_capture("evt_2", "whsec_old_secret_value", clock)], vaults={"sandbox": vault})
    secret_watch.check(ctx)  # a newer secret exists, but the sender still signs with the old one
    [alert] = alerts.list_alerts(ctx)
    assert f"the newer secret {new} has verified none of them" in alert["summary"]

    clock.now += timedelta(minutes=1)
    ingest(ctx, "acme", [signed_capture("evt_3", "whsec_new_secret_value", clock)], vaults={"sandbox": vault})
    secret_watch.check(ctx)
    assert alerts.list_alerts(ctx) == []
    [resolved] = alerts.list_alerts(ctx, state="resolved")
    assert [n["kind"] for n in alerts.get_alert(ctx, resolved["id"])["notifications"]] == ["opened", "recovered"]


def test_a_retired_secret_is_not_watched(ctx: ServiceContext) -> None:
    clock = Clock(T0)
    ctx = replace(ctx, clock=clock)
    add_stripe(ctx)
    vault = create(vault_path("sandbox"), "sandbox", "pass phrase here", params=CHEAP)
    old = add_webhook_secret(ctx, vault, "whsec_old_secret_value", "3d")
    ingest(ctx, "acme", [signed_capture("evt_1", "whsec_old_secret_value", clock)], vaults={"sandbox": vault})
    assert secret_watch.check(ctx) == ["acme"]
    clock.now += timedelta(hours=1)
    secret_refs.retire_secret(ctx, "acme", old, "rotated")
    secret_watch.check(ctx)
    assert alerts.list_alerts(ctx) == []
