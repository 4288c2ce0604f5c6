"""Conditions the engine notices about a connection (its breaker opened, it nears its
auto-pause, a webhook secret nears expiry while deliveries still verify only with it) handed to
alerting in one shape, so the parts that notice them need not know how people are told.

`emit` is the one entry point. It runs inside the caller's transaction so the alert is stored
with the change that caused it; delivery to notifiers happens later, outside any transaction,
so a slow or failing notifier never holds up the engine."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import Connection

from . import alerts
from .context import ServiceContext

Severity = Literal["info", "warning", "critical"]

log = logging.getLogger("workbench.alerts")


@dataclass(frozen=True)
class Signal:
    rule: str  # a stable name, e.g. "breaker.opened", "autopause.warning", "secret.expiring"
    connection_id: str
    severity: Severity
    summary: str  # one line for people; never a secret value
    cleared: bool = False  # True: the condition is over (a recovery notice)


def emit(conn: Connection, ctx: ServiceContext, signal: Signal) -> None:
    """Record `signal` in the caller's transaction: open the alert for (rule, connection) or
    add to its count, or (cleared) resolve it; its notices go into the notifications outbox.
    Which notifiers, how often again, and whether a recovery notice goes out: the connection's
    rule whose `signal` matches signal.rule, else its `signal_notifiers` (default: the log)."""
    state = "cleared" if signal.cleared else signal.severity
    log.info("alert %s on %s (%s): %s", signal.rule, signal.connection_id, state, signal.summary)
    alerts.record_signal(conn, ctx, signal.rule, signal.connection_id, signal.severity, signal.summary,
                         signal.cleared)
