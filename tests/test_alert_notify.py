"""Notifiers against real endpoints, on both backends: a local HTTP server (answering 204, 500,
or not at all) and a real subprocess. A notifier that times out or answers 500 never blocks the
engine's alerts job and shows as failing (stored error, notifier health, the log); an alert
and its recovery notice reach a local endpoint exactly once each through a running engine; the
webhook URL (a vault secret) is never stored or printed."""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select

from store.database import reading, writing
from store.models import AlertNotification
from tests.engine_harness import wait_until
from tests.engine_support import vault
from tests.notifier_server import NotifierEndpoint, notifier_endpoint
from tests.test_alerts import add_failures
from workbench.domain.taxonomy import Category
from workbench.engine.daemon import Engine, EngineOptions
from workbench.services import alert_notify, alert_signals, alerting, alerts, connections, role_bindings, vault as vault_service
from workbench.services.context import ServiceContext, utc_now
from workbench.vault import UnlockedVault


@pytest.fixture(scope="module")
def endpoint() -> Iterator[NotifierEndpoint]:
    with notifier_endpoint() as served:
        yield served


def webhook(name: str, secret: str, fmt: str = "slack", timeout_s: float = 5) -> dict[str, Any]:
    return {"name": name, "kind": "webhook", "format": fmt, "url_secret": {"name": secret}, "timeout_s": timeout_s}


def setup_hooks(ctx: ServiceContext, endpoint: NotifierEndpoint, paths: dict[str, str]) -> UnlockedVault:
    """Vault secrets `<name>-url` holding the endpoint's URL for each path."""
    unlocked = vault()
    for name, path in paths.items():
        vault_service.set_secret(ctx, unlocked, f"{name}-url", endpoint.url(path))
    return unlocked


def notices(ctx: ServiceContext) -> list[Any]:
    with reading(ctx.engine) as conn:
        table = AlertNotification.__table__
        return list(conn.execute(select(table).order_by(table.c.id)))


def raise_signal(ctx: ServiceContext, connection_id: str, rule: str = "breaker.opened", cleared: bool = False) -> None:
    with writing(ctx.engine) as conn:
        alert_signals.emit(conn, ctx, alert_signals.Signal(rule, connection_id, "critical", f"{rule} on it",
                                                           cleared=cleared))


def test_a_notifier_that_hangs_or_answers_500_blocks_nothing_and_shows_as_failing(
        ctx: ServiceContext, endpoint: NotifierEndpoint, caplog: pytest.LogCaptureFixture) -> None:
    unlocked = setup_hooks(ctx, endpoint, {"hang": "/hang", "fail": "/fail", "good": "/ok"})
    endpoint.clear()
    acme = connections.add_connection(ctx, "acme", "stripe", "sandbox", settings={"alerts": {
        "notifiers": [webhook("hang", "hang-url", timeout_s=1), webhook("fail", "fail-url"),
                      webhook("good", "good-url", fmt="teams")],
        "signal_notifiers": ["hang", "fail", "good", "log"]}}).id
    job = alerting.AlertingJob(ctx, {"sandbox": unlocked}, threads=4)
    try:
        raise_signal(ctx, acme)
        started = time.monotonic()
        job.run("engine-test")
        assert time.monotonic() - started < 0.9  # the hanging webhook (1 s timeout) is not waited for
        wait_until(lambda: all(n.status != "pending" or n.last_error for n in notices(ctx)), 10)
        outcome = {n.notifier_name: (n.status, n.last_error) for n in notices(ctx)}
        assert outcome == {"hang": ("pending", "no answer within 1s"), "fail": ("pending", "the webhook answered HTTP 500"),
                           "good": ("sent", None), "log": ("sent", None)}
        [card] = endpoint.bodies("/ok")
        assert card["@type"] == "MessageCard" and "breaker.opened on acme" in card["title"]
        # while the first hang was under way a new alert went on being evaluated and stored
        raise_signal(ctx, acme, "autopause.warning")
        job.run("engine-test")
        assert {a["rule"] for a in alerts.list_alerts(ctx)} == {"breaker.opened", "autopause.warning"}
    finally:
        job.close()
    health = {h.notifier: h for h in alerts.notifier_health(ctx)}
    assert health["hang"].status == "failing" and health["fail"].status == "failing"
    assert health["good"].status == "ok" and health["fail"].last_error == "the webhook answered HTTP 500"
    logged = caplog.text
    assert "alert notifier fail failing for acme" in logged and "HTTP 500" in logged
    assert endpoint.url("") not in logged  # the URL is a secret
    assert all(endpoint.url("") not in str(n.notifier) + str(n.last_error) for n in notices(ctx))


def test_a_command_notifier_gets_the_alert_on_stdin_and_is_stopped_at_its_timeout(
        ctx: ServiceContext, tmp_path: Any) -> None:
    out = tmp_path / "alert.json"
    script = f"import sys, pathlib; pathlib.Path({str(out)!r}).write_bytes(sys.stdin.buffer.read())"
    acme = connections.add_connection(ctx, "acme", "stripe", "sandbox", settings={"alerts": {
        "notifiers": [{"name": "file", "kind": "command", "command": [sys.executable, "-c", script]},
                      {"name": "slow", "kind": "command", "command": [sys.executable, "-c", "import time; time.sleep(30)"],
                       "timeout_s": 0.5},
                      {"name": "broken", "kind": "command", "command": [sys.executable, "-c", "raise SystemExit('no pager')"]},
                      {"name": "missing", "kind": "command", "command": ["/nonexistent/notify"]}],
        "signal_notifiers": ["file", "slow", "broken", "missing"]}}).id
    raise_signal(ctx, acme)
    worker = alert_notify.NotificationWorker(ctx, {}, threads=4)
    try:
        assert worker.pump() == 4
        wait_until(lambda: worker.busy == 0, 10)
    finally:
        worker.close()
    outcome = {n.notifier_name: (n.status, n.last_error) for n in notices(ctx)}
    assert outcome["file"] == ("sent", None)
    assert outcome["slow"] == ("pending", "the command did not finish within 0.5s (stopped)")
    assert outcome["broken"] == ("pending", "the command exited 1: no pager")
    assert outcome["missing"][1] is not None and "could not run" in outcome["missing"][1]
    import json
    sent = json.loads(out.read_text())
    assert (sent["rule"], sent["connection"], sent["event"], sent["count"]) == ("breaker.opened", "acme", "opened", 1)


class RunningEngine:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.thread = threading.Thread(target=engine.run, daemon=True)
        self.thread.start()
        wait_until(lambda: engine.process_id != "" and engine.active)

    def stop(self) -> None:
        self.engine.stop()
        self.thread.join(20)
        assert not self.thread.is_alive()


def test_an_alert_and_its_recovery_reach_a_local_endpoint_exactly_once_each(
        ctx: ServiceContext, endpoint: NotifierEndpoint, caplog: pytest.LogCaptureFixture) -> None:
    """Through a running engine, with a second notifier that never answers beside the first."""
    role_bindings.grant(ctx, "system:engine", "operator", "tests")
    unlocked = setup_hooks(ctx, endpoint, {"slack": "/ok", "stuck": "/hang"})
    acme = connections.add_connection(ctx, "acme", "stripe", "sandbox", settings={"alerts": {
        "rules": [{"name": "outage", "category": "provider_outage", "more_than": 0, "window_s": 2,
                   "notifiers": ["stuck", "slack"]}],
        "notifiers": [webhook("slack", "slack-url"), webhook("stuck", "stuck-url", timeout_s=1)]}}).id
    endpoint.clear()
    running = RunningEngine(Engine(ctx.as_actor("system:engine"), {"sandbox": unlocked},
                                   EngineOptions(lease_ttl_s=2, alerts_every_s=0.2)))
    try:
        add_failures(ctx, acme, 3, utc_now(), Category.PROVIDER_OUTAGE)
        wait_until(lambda: len(endpoint.bodies("/ok")) >= 1, 15)
        wait_until(lambda: len(endpoint.bodies("/ok")) >= 2, 15)  # the window (2 s) passes: recovered
        time.sleep(1)  # a few more rounds: nothing is sent twice
    finally:
        running.stop()
    bodies = endpoint.bodies("/ok")
    assert [b["text"].split("]")[0] for b in bodies] == ["[ALERT", "[RECOVERED"]
    assert "3 provider_outage failures" in bodies[0]["text"] and bodies[0]["blocks"][0]["type"] == "section"
    sent = [(n.notifier_name, n.kind, n.status, n.attempts) for n in notices(ctx)]
    assert [s for s in sent if s[0] == "slack"] == [("slack", "opened", "sent", 1), ("slack", "recovered", "sent", 1)]
    stuck = [n for n in notices(ctx) if n.notifier_name == "stuck"]
    assert stuck and all(n.status == "pending" for n in stuck)  # to be retried, never marked sent
    assert any(n.last_error == "no answer within 1s" for n in stuck)
    assert {h.notifier: h.status for h in alerts.notifier_health(ctx)} == {"slack": "ok", "stuck": "failing"}
    assert "alert notifier stuck failing for acme" in caplog.text  # the engine's log


def test_a_locked_vault_is_a_failing_notifier_not_a_crash(ctx: ServiceContext, endpoint: NotifierEndpoint,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    acme = connections.add_connection(ctx, "acme", "stripe", "sandbox", settings={"alerts": {
        "notifiers": [webhook("slack", "slack-url")], "signal_notifiers": ["slack"]}}).id
    raise_signal(ctx, acme)
    caplog.set_level(logging.WARNING)
    worker = alert_notify.NotificationWorker(ctx, {}, threads=1)
    try:
        worker.pump()
        wait_until(lambda: worker.busy == 0, 10)
    finally:
        worker.close()
    [notice] = notices(ctx)
    assert notice.status == "pending" and "the sandbox vault is locked" in notice.last_error


def test_one_engine_evaluates_the_rules_at_a_time(ctx: ServiceContext) -> None:
    """Engines sharing a store take turns by the `alerts` lease: one alert per rule and
    connection needs one evaluator; the other only delivers."""
    first = alerting.AlertingJob(ctx, {}, lease_ttl_s=30)
    second = alerting.AlertingJob(ctx, {}, lease_ttl_s=30)
    try:
        assert first.run("engine-a") is not None
        assert second.run("engine-b") is None
        assert first.run("engine-a") is not None  # renewed by its holder
    finally:
        first.close()
        second.close()
