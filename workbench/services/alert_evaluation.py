"""The rules over the failures table: for each connection and failure rule, whether more than
`more_than` failures of its category were recorded in the last `window_s` seconds; an alert
opens (or grows by the failures since it last looked) while that holds and clears when it no
longer does. The engine's alerts job runs `evaluate` every few seconds, on one engine at a time.

Cost per run: one grouped count per distinct window (ix_failures_created), plus one query per
open alert still holding and per rule about to open."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, func, select

from store.database import reading, writing
from workbench.domain.alert_rules import ANY, RuleConfig

from .alerts import OPEN_STATES, AlertTarget, Policy, alert_targets, alerts, clear_alert, failures, raise_alert
from .context import ServiceContext


@dataclass
class EvaluationReport:
    opened: int = 0
    grown: int = 0
    cleared: int = 0


def _counts(conn: Connection, since: datetime, connection_id: str | None = None,
            category: str | None = None) -> dict[tuple[str, str], tuple[int, datetime]]:
    """(connection, category) -> (failures since `since`, the newest one's time)."""
    query = (select(failures.c.connection_id, failures.c.category, func.count(), func.max(failures.c.created_at))
             .where(failures.c.created_at > since, failures.c.connection_id.is_not(None))
             .group_by(failures.c.connection_id, failures.c.category))
    if connection_id is not None:
        query = query.where(failures.c.connection_id == connection_id)
    if category is not None and category != ANY:
        query = query.where(failures.c.category == category)
    return {(row[0], row[1]): (int(row[2]), row[3]) for row in conn.execute(query)}


def _matching(counts: Mapping[tuple[str, str], tuple[int, datetime]], connection_id: str,
              category: str) -> tuple[int, datetime | None]:
    total, newest = 0, None
    for (cid, cat), (n, at) in counts.items():
        if cid == connection_id and (category == ANY or cat == category):
            total += n
            newest = at if newest is None or at > newest else newest
    return total, newest


def evaluate(ctx: ServiceContext) -> EvaluationReport:
    """Evaluate every connection's failure rules once: open, grow or clear their alerts (one
    transaction each). One grouped count per distinct window; a query more per open alert."""
    now = ctx.clock()
    report = EvaluationReport()
    with reading(ctx.engine) as conn:
        targets = alert_targets(conn)
        windows = {rule.window_s for t in targets.values() for rule in t.config.rules if rule.category}
        counts = {w: _counts(conn, now - timedelta(seconds=w)) for w in windows}
        open_rows = {(row.rule, row.connection_id): row for row in conn.execute(
            select(alerts).where(alerts.c.state.in_(OPEN_STATES), alerts.c.source == "rule"))}
    for target in targets.values():
        for rule in target.config.rules:
            if rule.category is None:
                continue
            total, newest = _matching(counts[rule.window_s], target.id, rule.category)
            existing = open_rows.pop((rule.name, target.id), None)
            if total > rule.more_than and newest is not None:
                report_key = _raise_for_rule(ctx, target, rule, existing, total, newest, now)
                if report_key == "opened":
                    report.opened += 1
                elif report_key == "grown":
                    report.grown += 1
            elif existing is not None:
                with writing(ctx.engine) as conn:
                    clear_alert(conn, ctx, target, rule.name, Policy.of(rule),
                                f"recovered: no longer {rule.describe()}")
                report.cleared += 1
    for (rule_name, connection_id), _row in open_rows.items():  # rules removed from the settings
        gone = targets.get(connection_id)
        if gone is not None:
            with writing(ctx.engine) as conn:
                clear_alert(conn, ctx, gone, rule_name, None, "the rule is no longer configured")
            report.cleared += 1
    return report


def _raise_for_rule(ctx: ServiceContext, target: AlertTarget, rule: RuleConfig, existing: Any, total: int,
                    newest: datetime, now: datetime) -> str | None:
    with writing(ctx.engine) as conn:
        if existing is None:
            # After a person resolved it, only failures since then count towards a new one.
            resolved_at = conn.execute(select(func.max(alerts.c.resolved_at)).where(
                alerts.c.rule == rule.name, alerts.c.connection_id == target.id,
                alerts.c.resolved_by.like("user:%"))).scalar()
            if resolved_at is not None and resolved_at > now - timedelta(seconds=rule.window_s):
                total, found = _matching(_counts(conn, resolved_at, target.id, rule.category), target.id,
                                         rule.category or ANY)
                if total <= rule.more_than or found is None:
                    return None
                newest = found
            raise_alert(conn, ctx, target, rule=rule.name, source="rule", severity=rule.severity,
                        summary=f"{total} {_what(rule)} in the last {_span(rule.window_s)} ({rule.describe()})",
                        added=total, seen_at=newest, policy=Policy.of(rule))
            return "opened"
        added, found = _matching(_counts(conn, existing.last_seen_at, target.id, rule.category), target.id,
                                 rule.category or ANY)
        if added == 0 or found is None:
            return None
        raise_alert(conn, ctx, target, rule=rule.name, source="rule", severity=rule.severity,
                    summary=f"{total} {_what(rule)} in the last {_span(rule.window_s)} ({rule.describe()})",
                    added=added, seen_at=found, policy=Policy.of(rule))
        return "grown"


def _what(rule: RuleConfig) -> str:
    return "failures" if rule.category == ANY else f"{rule.category} failures"


def _span(seconds: int) -> str:
    if seconds % 3600 == 0:
        return f"{seconds // 3600}h"
    if seconds % 60 == 0:
        return f"{seconds // 60} min"
    return f"{seconds}s"
