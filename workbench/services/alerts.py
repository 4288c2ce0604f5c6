"""Alerts: opened, grown, repeated and cleared by the rules over the failures table
(alert_evaluation, every few seconds in the engine) and by engine signals (alert_signals.emit),
listed for people, acknowledged and resolved by operators (audited).

One alert per rule and connection is open (or acknowledged) at a time: a condition that keeps
holding adds to its `count`. Every notice (opened, repeat, recovered) is a row per notifier in
the alert_notifications outbox, written in the alert's own transaction; services/alert_notify
delivers them later, outside any transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError
from sqlalchemy import Connection, and_, func, or_, select, update

from store.database import reading, writing
from store.models import Alert, AlertNotification, Connection as ConnectionRow, Failure, StoreSetting
from workbench.domain.alert_rules import DEFAULTS, AlertSettings, RuleConfig, effective
from workbench.domain.connection_config import first_problem
from workbench.domain.redaction import redact_text

from . import access, audit
from .context import ServiceContext
from .errors import InvalidArgument, NotFound, ServiceError
from .leases import insert_ignoring_conflict

log = logging.getLogger("workbench.alerts")

alerts = Alert.__table__
notifications = AlertNotification.__table__
failures = Failure.__table__
connections = ConnectionRow.__table__
store_settings = StoreSetting.__table__

OPEN_STATES = ("open", "acknowledged")
STATES = ("open", "acknowledged", "resolved")
SIGNAL_REPEAT_S = 3600  # a signal no rule names is repeated at most hourly
MAX_NOTE = 2000


# -- configuration ----------------------------------------------------------------------------


DEFAULTS_KEY = "alerts"  # the store_settings row holding the store-wide defaults


def store_defaults(conn: Connection) -> AlertSettings:
    """The store-wide defaults: the store_settings row "alerts", else the defaults in code
    (alert_rules.DEFAULTS). A damaged row falls back to the code's with a warning."""
    raw = conn.execute(select(store_settings.c.value).where(store_settings.c.key == DEFAULTS_KEY)).scalar()
    if raw is None:
        return DEFAULTS
    try:
        return AlertSettings.model_validate(raw)
    except ValidationError:
        log.warning("the store's alert defaults are unreadable: using the workbench's own")
        return DEFAULTS


def alert_settings(settings: Mapping[str, Any], name: str = "", defaults: AlertSettings = DEFAULTS) -> AlertSettings:
    """A connection's alerting over the defaults. Damaged settings (edited in the store by
    hand) fall back to the defaults with a warning: alerts must not stop because of them."""
    raw = settings.get("alerts")
    if raw is None:
        return defaults
    try:
        return effective(AlertSettings.model_validate(raw), defaults)
    except ValidationError:
        log.warning("connection %s has unreadable alert settings: using the defaults", name)
        return defaults


@dataclass(frozen=True)
class AlertTarget:
    """A connection as alerting sees it: its name, vault environment and effective settings."""

    id: str
    name: str
    environment: str
    config: AlertSettings


def alert_targets(conn: Connection, connection_id: str | None = None) -> dict[str, AlertTarget]:
    query = select(connections.c.id, connections.c.name, connections.c.environment, connections.c.settings)
    if connection_id is not None:
        query = query.where(connections.c.id == connection_id)
    defaults = store_defaults(conn)
    return {row.id: AlertTarget(row.id, row.name, row.environment, alert_settings(row.settings or {}, row.name, defaults))
            for row in conn.execute(query)}


# -- notices into the outbox -------------------------------------------------------------------


def payload(row: Mapping[str, Any], connection: str, kind: str) -> dict[str, Any]:
    """What a notifier is told about an alert (never a secret: summaries are redacted)."""
    def at(value: datetime | None) -> str | None:
        return value.isoformat() if value is not None else None
    return {"event": kind, "alert": row["id"], "rule": row["rule"], "connection": connection,
            "severity": row["severity"], "state": row["state"], "summary": redact_text(row["summary"]),
            "count": row["count"], "first_seen_at": at(row["first_seen_at"]), "last_seen_at": at(row["last_seen_at"])}


def _queue(conn: Connection, ctx: ServiceContext, row: Mapping[str, Any], target: AlertTarget, kind: str,
           names: list[str], now: datetime) -> None:
    body = payload(row, target.name, kind)
    rows = []
    for name in dict.fromkeys(names):
        try:
            notifier = target.config.notifier(name)
        except KeyError:  # validated away; a hand-edited store may still name one
            log.warning("alert %s on %s names notifier %s, which is not configured", row["rule"], target.name, name)
            continue
        spec = notifier.model_dump(mode="json")
        if spec.get("url_secret") and not spec["url_secret"].get("environment"):
            spec["url_secret"]["environment"] = target.environment  # the connection's vault by default
        rows.append({"id": ctx.ids.new("ntf"), "alert_id": row["id"], "connection_id": target.id,
                     "notifier_name": name, "notifier": spec, "kind": kind, "payload": body, "status": "pending",
                     "attempts": 0, "next_attempt_at": now, "last_error": None, "created_at": now, "sent_at": None})
    if rows:
        conn.execute(notifications.insert(), rows)


# -- raising and clearing ----------------------------------------------------------------------


@dataclass(frozen=True)
class Policy:
    """How one alert is told: through which notifiers, how often again, and on recovery."""

    notifiers: list[str]
    repeat_every_s: int
    recovery: bool

    @classmethod
    def of(cls, rule: RuleConfig) -> Policy:
        return cls(list(rule.notifiers), rule.repeat_every_s, rule.recovery)


def _open_row(conn: Connection, rule: str, connection_id: str) -> Any:
    query = select(alerts).where(alerts.c.rule == rule, alerts.c.connection_id == connection_id,
                                 alerts.c.state.in_(OPEN_STATES))
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    return conn.execute(query).first()


def raise_alert(conn: Connection, ctx: ServiceContext, target: AlertTarget, *, rule: str, source: str, severity: str,
                summary: str, added: int, seen_at: datetime, policy: Policy) -> str:
    """Open the alert for (rule, connection), or add `added` to the open one's count; queue the
    notices due (the first, or a repeat once its interval has passed and the count grew)."""
    now = ctx.clock()
    row = _open_row(conn, rule, target.id)
    if row is None:
        values = {"id": ctx.ids.new("alr"), "rule": rule, "connection_id": target.id, "source": source,
                  "severity": severity, "state": "open", "summary": summary, "count": added,
                  "first_seen_at": seen_at, "last_seen_at": seen_at, "last_notified_at": now,
                  "notified_count": added}
        if insert_ignoring_conflict(conn, alerts, values):
            _queue(conn, ctx, values, target, "opened", policy.notifiers, now)
            return str(values["id"])
        row = _open_row(conn, rule, target.id)  # opened by another transaction just now
        if row is None:
            raise ServiceError(f"alert {rule} on {target.name} could not be opened (try again)")
    changes: dict[str, Any] = {"count": row.count + added, "last_seen_at": max(seen_at, row.last_seen_at),
                               "summary": summary, "severity": severity}
    due = (row.state == "open" and changes["count"] > row.notified_count and
           (row.last_notified_at is None or now - row.last_notified_at >= timedelta(seconds=policy.repeat_every_s)))
    if due:
        changes.update(last_notified_at=now, notified_count=changes["count"])
    conn.execute(update(alerts).where(alerts.c.id == row.id).values(**changes))
    if due:
        _queue(conn, ctx, {**row._mapping, **changes}, target, "repeat", policy.notifiers, now)
    return str(row.id)


def clear_alert(conn: Connection, ctx: ServiceContext, target: AlertTarget, rule: str, policy: Policy | None,
                note: str) -> str | None:
    """Resolve the open alert for (rule, connection), if any, with a recovery notice where the
    policy asks for one (None: no notice, e.g. the rule was removed)."""
    row = _open_row(conn, rule, target.id)
    if row is None:
        return None
    now = ctx.clock()
    changes = {"state": "resolved", "resolved_by": ctx.actor, "resolved_at": now, "note": note}
    conn.execute(update(alerts).where(alerts.c.id == row.id).values(**changes))
    if policy is not None and policy.recovery:
        _queue(conn, ctx, {**row._mapping, **changes}, target, "recovered", policy.notifiers, now)
    return str(row.id)


def record_signal(conn: Connection, ctx: ServiceContext, rule: str, connection_id: str, severity: str,
                  summary: str, cleared: bool) -> str | None:
    """alert_signals.emit's storage, in the caller's transaction."""
    target = alert_targets(conn, connection_id).get(connection_id)
    if target is None:
        raise NotFound(f"no connection with id {connection_id!r} to raise alert {rule} on")
    configured = target.config.rule_for_signal(rule)
    policy = (Policy.of(configured) if configured is not None
              else Policy(list(target.config.signal_notifiers), SIGNAL_REPEAT_S, True))
    if cleared:
        return clear_alert(conn, ctx, target, rule, policy, f"cleared: {redact_text(summary)}")
    return raise_alert(conn, ctx, target, rule=rule, source="signal", severity=severity, summary=summary,
                       added=1, seen_at=ctx.clock(), policy=policy)


# -- for people --------------------------------------------------------------------------------


def _alert_dict(row: Any, connection: str) -> dict[str, Any]:
    def at(value: datetime | None) -> str | None:
        return value.isoformat() if value is not None else None
    return {"id": row.id, "rule": row.rule, "connection": connection, "source": row.source,
            "severity": row.severity, "state": row.state, "summary": redact_text(row.summary), "count": row.count,
            "first_seen_at": at(row.first_seen_at), "last_seen_at": at(row.last_seen_at),
            "last_notified_at": at(row.last_notified_at), "acknowledged_by": row.acknowledged_by,
            "acknowledged_at": at(row.acknowledged_at), "resolved_by": row.resolved_by,
            "resolved_at": at(row.resolved_at), "note": redact_text(row.note) if row.note else None}


def list_alerts(ctx: ServiceContext, *, state: str | None = None, connection: str | None = None,
                limit: int = 500) -> list[dict[str, Any]]:
    """Alerts, newest first: open and acknowledged ones (state None), or those in `state`
    ("all": every one)."""
    access.require(ctx, "read")
    if state not in (None, "all", *STATES):
        raise InvalidArgument(f"state is one of {', '.join(STATES)} or all, not {state[:40]!r}")
    query = (select(alerts, connections.c.name.label("connection_name"))
             .join(connections, connections.c.id == alerts.c.connection_id)
             .order_by(alerts.c.last_seen_at.desc(), alerts.c.id.desc()).limit(limit))
    if state is None:
        query = query.where(alerts.c.state.in_(OPEN_STATES))
    elif state != "all":
        query = query.where(alerts.c.state == state)
    if connection is not None:
        query = query.where(connections.c.name == connection)
    with reading(ctx.engine) as conn:
        return [_alert_dict(row, row.connection_name) for row in conn.execute(query)]


def get_alert(ctx: ServiceContext, alert_id: str) -> dict[str, Any]:
    access.require(ctx, "read")
    with reading(ctx.engine) as conn:
        row = conn.execute(select(alerts, connections.c.name.label("connection_name"))
                           .join(connections, connections.c.id == alerts.c.connection_id)
                           .where(alerts.c.id == alert_id)).first()
        if row is None:
            raise NotFound(f"no alert {alert_id[:60]!r} (`workbench alerts` lists them)")
        found = _alert_dict(row, row.connection_name)
        found["notifications"] = [
            {"id": n.id, "notifier": n.notifier_name, "kind": n.kind, "status": n.status, "attempts": n.attempts,
             "last_error": n.last_error, "created_at": n.created_at.isoformat(),
             "sent_at": n.sent_at.isoformat() if n.sent_at else None}
            for n in conn.execute(select(notifications).where(notifications.c.alert_id == alert_id)
                                  .order_by(notifications.c.created_at, notifications.c.id))]
    return found


def open_counts(ctx: ServiceContext) -> dict[str, int]:
    """Open (unacknowledged and acknowledged) alerts per connection id: the Providers badge."""
    access.require(ctx, "read")
    with reading(ctx.engine) as conn:
        return {row[0]: int(row[1]) for row in conn.execute(
            select(alerts.c.connection_id, func.count()).where(alerts.c.state.in_(OPEN_STATES))
            .group_by(alerts.c.connection_id))}


def _note(note: str) -> str:
    text = (note or "").strip()
    if not text:
        raise InvalidArgument("a note is required: say why (--note)")
    if len(text) > MAX_NOTE:
        raise InvalidArgument(f"a note is at most {MAX_NOTE} characters")
    return text


def acknowledge(ctx: ServiceContext, alert_id: str, note: str) -> dict[str, Any]:
    """Someone is on it: no more repeat notices (a recovery notice still goes out). Audited."""
    return _operator_change(ctx, alert_id, note, "acknowledged")


def resolve(ctx: ServiceContext, alert_id: str, note: str) -> dict[str, Any]:
    """Close the alert by hand (no recovery notice); the rule opens a new one if its condition
    holds again with failures after now. Audited."""
    return _operator_change(ctx, alert_id, note, "resolved")


def _operator_change(ctx: ServiceContext, alert_id: str, note: str, to: str) -> dict[str, Any]:
    access.require(ctx, "alerts")
    text = _note(note)
    now = ctx.clock()
    with writing(ctx.engine) as conn:
        row = conn.execute(select(alerts).where(alerts.c.id == alert_id)).first()
        if row is None:
            raise NotFound(f"no alert {alert_id[:60]!r} (`workbench alerts` lists them)")
        if row.state == "resolved" or row.state == to:
            raise ServiceError(f"alert {alert_id} is {row.state} already")
        who = {"acknowledged": {"acknowledged_by": ctx.actor, "acknowledged_at": now},
               "resolved": {"resolved_by": ctx.actor, "resolved_at": now}}[to]
        conn.execute(update(alerts).where(and_(alerts.c.id == alert_id, alerts.c.state == row.state))
                     .values(state=to, note=text, **who))
        audit.append(conn, ctx, "alert.ack" if to == "acknowledged" else "alert.resolve", "alert", alert_id,
                     before={"state": row.state, "rule": row.rule, "count": row.count},
                     after={"state": to, "rule": row.rule, "count": row.count}, reason=text)
    return get_alert(ctx, alert_id)


@dataclass(frozen=True)
class NotifierHealth:
    connection: str
    notifier: str
    status: str  # ok | failing (retrying) | gave up
    last_error: str | None
    at: str | None  # the last attempt's outcome time (sent, or when it failed)

    def as_json(self) -> dict[str, Any]:
        return {"connection": self.connection, "notifier": self.notifier, "status": self.status,
                "last_error": self.last_error, "at": self.at}


def notifier_health(ctx: ServiceContext) -> list[NotifierHealth]:
    """Each notifier's latest delivery outcome per connection: a failing one is visible here
    (the Alerts screen, `workbench alerts`), never silent."""
    access.require(ctx, "read")
    # The newest notice with an outcome (sent, given up, or a failed try), per notifier.
    newest = (select(func.max(notifications.c.id).label("id"))
              .where(or_(notifications.c.status != "pending", notifications.c.last_error.is_not(None)))
              .group_by(notifications.c.connection_id, notifications.c.notifier_name).subquery())
    query = (select(notifications, connections.c.name.label("connection_name"))
             .join(newest, newest.c.id == notifications.c.id)
             .join(connections, connections.c.id == notifications.c.connection_id)
             .order_by(connections.c.name, notifications.c.notifier_name))
    out = []
    with reading(ctx.engine) as conn:
        for row in conn.execute(query):
            status = {"sent": "ok", "failed": "gave up"}.get(row.status, "failing")
            when = row.sent_at if row.status == "sent" else row.created_at
            out.append(NotifierHealth(row.connection_name, row.notifier_name, status, row.last_error,
                                      when.isoformat() if when else None))
    return out


# -- the store-wide defaults ----------------------------------------------------------------------


def show_defaults(ctx: ServiceContext) -> tuple[AlertSettings, bool]:
    """The store-wide alert defaults, and whether they are the store's own (False: the code's)."""
    access.require(ctx, "read")
    with reading(ctx.engine) as conn:
        stored = conn.execute(select(store_settings.c.key).where(store_settings.c.key == DEFAULTS_KEY)).first()
        return store_defaults(conn), stored is not None


def set_defaults(ctx: ServiceContext, document: Mapping[str, Any] | None, reason: str) -> AlertSettings:
    """Replace the store-wide defaults with `document` (validated whole; None: back to the
    code's). Admin (action "config"), audited as alerts.defaults."""
    access.require(ctx, "config")
    if document is None:
        chosen = DEFAULTS
    else:
        try:
            chosen = AlertSettings.model_validate(document)
        except ValidationError as exc:
            raise InvalidArgument(first_problem(exc)) from None
    now = ctx.clock()
    with writing(ctx.engine) as conn:
        before = store_defaults(conn)
        conn.execute(store_settings.delete().where(store_settings.c.key == DEFAULTS_KEY))
        if document is not None:
            conn.execute(store_settings.insert().values(key=DEFAULTS_KEY, value=chosen.model_dump(mode="json"),
                                                        updated_by=ctx.actor, updated_at=now))
        audit.append(conn, ctx, "alerts.defaults", "store_setting", DEFAULTS_KEY,
                     before=before.model_dump(mode="json"), after=chosen.model_dump(mode="json"), reason=reason)
    return chosen
