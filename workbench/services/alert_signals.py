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
    """Record `signal`. Until alert storage exists this writes the engine's log only."""
    state = "cleared" if signal.cleared else signal.severity
    log.warning("alert %s on %s (%s): %s", signal.rule, signal.connection_id, state, signal.summary)
