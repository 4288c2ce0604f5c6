"""Alerts on both backends: rules over the failures table open one alert per rule and
connection whose count grows, repeat no more often than their interval, and clear with a
recovery notice; engine signals (alert_signals.emit) do the same; operators acknowledge and
resolve them (audited, with a note, operator role)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import insert, select

from store.database import reading, writing
from store.models import Alert, AlertNotification, AuditEntry, Failure
from tests.support import T0, acting_as
from workbench.domain.taxonomy import Category
from workbench.services import alert_evaluation, alert_signals, alerts, connections
from workbench.services.access import AccessDenied
from workbench.services.context import ServiceContext
from workbench.services.errors import InvalidArgument, ServiceError
from workbench.services.failures_write import failure_row

OUTAGE_RULES = {"rules": [{"name": "outage", "category": "provider_outage", "more_than": 2, "window_s": 300,
                           "repeat_every_s": 200}]}


class Clock:
    """A clock tests move by hand (every reading the same until moved)."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


def at(ctx: ServiceContext, clock: Clock) -> ServiceContext:
    return replace(ctx, clock=clock)


def add_failures(ctx: ServiceContext, connection_id: str, n: int, when: datetime,
                 category: Category = Category.PROVIDER_OUTAGE) -> None:
    with writing(ctx.engine) as conn:
        conn.execute(insert(Failure.__table__), [
            failure_row(failure_id=ctx.ids.new("fail"), category=category, provider="stripe", code="503",
                        message="the provider answered 503", now=when, connection_id=connection_id)
            for _ in range(n)])


def table(ctx: ServiceContext, model: Any) -> list[Any]:
    with reading(ctx.engine) as conn:
        return list(conn.execute(select(model.__table__).order_by(model.__table__.c.id)))


def connection_with(ctx: ServiceContext, alert_settings: dict[str, Any], name: str = "acme") -> str:
    return connections.add_connection(ctx, name, "stripe", "sandbox", settings={"alerts": alert_settings}).id


def test_a_rule_firing_repeatedly_within_its_interval_is_one_alert_with_a_growing_count(ctx: ServiceContext) -> None:
    clock = Clock(T0)
    ctx = at(ctx, clock)
    acme = connection_with(ctx, OUTAGE_RULES)
    add_failures(ctx, acme, 2, T0)
    clock.now = T0 + timedelta(seconds=1)
    assert alert_evaluation.evaluate(ctx).opened == 0  # two are not "more than 2"

    add_failures(ctx, acme, 1, T0 + timedelta(seconds=1))
    clock.now = T0 + timedelta(seconds=2)
    assert alert_evaluation.evaluate(ctx).opened == 1
    for step in range(3):  # more failures, within the repeat interval: the same alert grows
        add_failures(ctx, acme, 2, T0 + timedelta(seconds=10 + step))
        clock.now = T0 + timedelta(seconds=20 + step)
        report = alert_evaluation.evaluate(ctx)
        assert (report.opened, report.grown) == (0, 1)
    clock.now = T0 + timedelta(seconds=30)
    assert alert_evaluation.evaluate(ctx).grown == 0  # nothing new: the count stays
    [alert] = table(ctx, Alert)
    assert (alert.state, alert.count, alert.rule, alert.source) == ("open", 9, "outage", "rule")
    assert [n.kind for n in table(ctx, AlertNotification)] == ["opened"]  # told once

    add_failures(ctx, acme, 3, T0 + timedelta(seconds=250))  # the interval (200 s) has passed
    clock.now = T0 + timedelta(seconds=260)
    alert_evaluation.evaluate(ctx)
    [alert] = table(ctx, Alert)
    assert alert.count == 12
    assert [n.kind for n in table(ctx, AlertNotification)] == ["opened", "repeat"]

    clock.now = T0 + timedelta(seconds=600)  # the window holds none any more: recovered
    assert alert_evaluation.evaluate(ctx).cleared == 1
    [alert] = table(ctx, Alert)
    assert alert.state == "resolved" and alert.note.startswith("recovered")
    sent = table(ctx, AlertNotification)
    assert [n.kind for n in sent] == ["opened", "repeat", "recovered"]
    assert sent[-1].payload["count"] == 12 and sent[-1].payload["connection"] == "acme"
    assert alert_evaluation.evaluate(ctx).cleared == 0  # once

    add_failures(ctx, acme, 3, T0 + timedelta(seconds=700))  # it happens again: a new alert
    clock.now = T0 + timedelta(seconds=701)
    alert_evaluation.evaluate(ctx)
    assert [(a.state, a.count) for a in table(ctx, Alert)] == [("resolved", 12), ("open", 3)]


def test_any_authentication_is_a_default_rule_and_categories_are_told_apart(ctx: ServiceContext) -> None:
    clock = Clock(T0)
    ctx = at(ctx, clock)
    plain = connections.add_connection(ctx, "plain", "stripe", "sandbox").id  # no alerts settings
    add_failures(ctx, plain, 5, T0, Category.VALIDATION)
    clock.now = T0 + timedelta(seconds=1)
    alert_evaluation.evaluate(ctx)
    assert table(ctx, Alert) == []
    add_failures(ctx, plain, 1, T0 + timedelta(seconds=1), Category.AUTHENTICATION)
    clock.now = T0 + timedelta(seconds=2)
    alert_evaluation.evaluate(ctx)
    [alert] = table(ctx, Alert)
    assert (alert.rule, alert.severity, alert.count) == ("authentication", "critical", 1)
    assert "1 authentication failures" in alert.summary


def test_signals_open_grow_and_clear_the_same_way(ctx: ServiceContext) -> None:
    acme = connection_with(ctx, {"rules": [{"name": "breaker", "signal": "breaker.*", "repeat_every_s": 0,
                                            "notifiers": ["log"]}]})
    for _ in range(3):
        with writing(ctx.engine) as conn:
            alert_signals.emit(conn, ctx, alert_signals.Signal("breaker.opened", acme, "critical", "breaker open"))
    with writing(ctx.engine) as conn:  # another signal: its own alert (default policy)
        alert_signals.emit(conn, ctx, alert_signals.Signal("autopause.warning", acme, "warning", "50% of the way"))
    found = {a["rule"]: a for a in alerts.list_alerts(ctx)}
    assert found["breaker.opened"]["count"] == 3 and found["autopause.warning"]["count"] == 1
    # repeat_every_s 0: each growth is told again
    kinds = [n.kind for n in table(ctx, AlertNotification) if n.payload["rule"] == "breaker.opened"]
    assert kinds == ["opened", "repeat", "repeat"]

    with writing(ctx.engine) as conn:
        alert_signals.emit(conn, ctx, alert_signals.Signal("breaker.opened", acme, "info", "closed", cleared=True))
        alert_signals.emit(conn, ctx, alert_signals.Signal("breaker.opened", acme, "info", "closed", cleared=True))
    assert [a["rule"] for a in alerts.list_alerts(ctx)] == ["autopause.warning"]
    kinds = [n.kind for n in table(ctx, AlertNotification) if n.payload["rule"] == "breaker.opened"]
    assert kinds == ["opened", "repeat", "repeat", "recovered"]


def test_an_emit_rolls_back_with_its_callers_transaction(ctx: ServiceContext) -> None:
    acme = connection_with(ctx, {})
    with pytest.raises(RuntimeError), writing(ctx.engine) as conn:
        alert_signals.emit(conn, ctx, alert_signals.Signal("breaker.opened", acme, "critical", "open"))
        raise RuntimeError("the caller's change failed")
    assert table(ctx, Alert) == [] and table(ctx, AlertNotification) == []


def test_operators_acknowledge_and_resolve_with_a_note_audited(ctx: ServiceContext) -> None:
    acme = connection_with(ctx, {})
    with writing(ctx.engine) as conn:
        alert_signals.emit(conn, ctx, alert_signals.Signal("breaker.opened", acme, "critical", "open"))
    [alert] = alerts.list_alerts(ctx)
    viewer = acting_as(ctx, "user:vic", "viewer")
    with pytest.raises(AccessDenied, match="alerts needs the operator role"):
        alerts.acknowledge(viewer, alert["id"], "mine")
    operator = acting_as(ctx, "user:ola", "operator")
    with pytest.raises(InvalidArgument, match="a note is required"):
        alerts.acknowledge(operator, alert["id"], "  ")
    acked = alerts.acknowledge(operator, alert["id"], "looking at the provider status page")
    assert (acked["state"], acked["acknowledged_by"]) == ("acknowledged", "user:ola")
    with writing(ctx.engine) as conn:  # still holding: it grows, but no repeat after an ack
        alert_signals.emit(conn, ctx, alert_signals.Signal("breaker.opened", acme, "critical", "open"))
    assert alerts.get_alert(ctx, alert["id"])["count"] == 2
    assert [n["kind"] for n in alerts.get_alert(ctx, alert["id"])["notifications"]] == ["opened"]
    resolved = alerts.resolve(operator, alert["id"], "provider fixed it")
    assert resolved["state"] == "resolved" and resolved["note"] == "provider fixed it"
    with pytest.raises(ServiceError, match="resolved already"):
        alerts.resolve(operator, alert["id"], "again")
    with reading(ctx.engine) as conn:
        trail = [(e.action, e.actor, e.reason) for e in conn.execute(select(AuditEntry.__table__))
                 if e.action.startswith("alert.")]
    assert trail == [("alert.ack", "user:ola", "looking at the provider status page"),
                     ("alert.resolve", "user:ola", "provider fixed it")]
    assert alerts.list_alerts(ctx) == [] and len(alerts.list_alerts(ctx, state="all")) == 1
    assert alerts.open_counts(ctx) == {}


@pytest.mark.parametrize(("alerts_section", "message"), [
    ({"rules": [{"name": "x", "category": "outage"}]}, "alerts.rules.0.category: unknown category"),
    ({"rules": [{"name": "x"}]}, "either category (a failure condition) or signal"),
    ({"rules": [{"name": "x", "category": "any", "notifiers": ["slack"]}]}, "names notifier 'slack', which is not"),
    ({"rules": [{"name": "x", "category": "any", "more_than": "20"}]}, "alerts.rules.0.more_than: Input should be"),
    ({"notifiers": [{"name": "slack", "kind": "webhook"}]}, "needs url_secret"),
    ({"notifiers": [{"name": "slack", "kind": "webhook", "url": "https://hooks.slack.com/x"}]},
     "alerts.notifiers.0.url: Extra inputs are not permitted"),
])
def test_alert_settings_are_refused_in_one_line_naming_the_field(alerts_section: dict[str, Any], message: str) -> None:
    from pydantic import ValidationError

    from workbench.domain.connection_config import Settings, first_problem
    with pytest.raises(ValidationError) as refused:
        Settings.model_validate({"alerts": alerts_section})
    line = first_problem(refused.value)
    assert message in line and "\n" not in line and "hooks.slack.com" not in line


def test_store_wide_defaults_apply_where_a_connection_says_nothing(ctx: ServiceContext) -> None:
    clock = Clock(T0)
    ctx = at(ctx, clock)
    plain = connections.add_connection(ctx, "plain", "stripe", "sandbox").id
    own = connection_with(ctx, {"rules": [{"name": "outage", "category": "provider_outage", "more_than": 100}]},
                          name="own")
    with pytest.raises(InvalidArgument, match=r"^rules\.0\.window_s: Input should be greater than 0$"):
        alerts.set_defaults(ctx, {"rules": [{"name": "outage", "category": "any", "window_s": 0}]}, "typo")
    alerts.set_defaults(ctx, {"rules": [{"name": "outage", "category": "provider_outage", "more_than": 1}]},
                        "every connection")
    assert alerts.show_defaults(ctx)[1] is True
    for connection_id in (plain, own):
        add_failures(ctx, connection_id, 3, T0)
    clock.now = T0 + timedelta(seconds=1)
    alert_evaluation.evaluate(ctx)
    # the store's rule on `plain`; `own` keeps its own rule of that name (more than 100)
    assert [(a["connection"], a["rule"]) for a in alerts.list_alerts(ctx)] == [("plain", "outage")]
    with reading(ctx.engine) as conn:
        [entry] = [e for e in conn.execute(select(AuditEntry.__table__)) if e.action == "alerts.defaults"]
    assert entry.reason == "every connection" and entry.after["rules"][0]["more_than"] == 1
    alerts.set_defaults(ctx, None, "back to the workbench's")
    settings, stored = alerts.show_defaults(ctx)
    assert stored is False and [r.name for r in settings.rules] == ["authentication", "failure-storm"]
