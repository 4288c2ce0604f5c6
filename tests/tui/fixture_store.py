"""A small deterministic store for the TUI tests: fixed clock, fixed IDs, fixed captures.

Two Stripe connections; payment intents that complete, cancel, and stop on a provider status
the mapping does not know (contract-mismatch failures, two of them sharing a fingerprint);
a redelivery; a body that is not JSON (a validation failure).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from store.database import open_store
from tests.support import T0, capture, make_context, pi_event
from workbench.services import connections
from workbench.services.context import ServiceContext
from workbench.services.ingest import ingest

# What the screens show as "now": an hour after the captures, so ages read "1h".
DISPLAY_NOW = datetime(2026, 11, 1, 13, 0, 0, tzinfo=UTC)


def _lifecycle(prefix: str, pi: str, statuses: list[str], start: int, amount: int = 2000) -> list[dict[str, Any]]:
    created = int(T0.timestamp()) + start
    events = []
    for n, status in enumerate(statuses):
        event_type = {"requires_payment_method": "payment_intent.created", "canceled": "payment_intent.canceled",
                      "requires_review": "payment_intent.updated"}.get(status, f"payment_intent.{status}")
        if n and status == "requires_payment_method":
            event_type = "payment_intent.payment_failed"
        events.append(pi_event(f"evt_{prefix}{n}", pi, status, created + n * 10, event_type, amount=amount,
                               metadata={"order_id": f"ord_{pi[-3:]}", "attempt": n}))
    return events


def acme_events() -> list[dict[str, Any] | bytes]:
    a = _lifecycle("a", "pi_3AcmeAAA", ["requires_payment_method", "processing", "succeeded"], 0)
    b = _lifecycle("b", "pi_3AcmeBBB", ["requires_payment_method", "requires_payment_method", "canceled"], 5)
    c = _lifecycle("c", "pi_3AcmeCCC", ["requires_payment_method", "processing", "requires_review"], 9, 4999)
    d = _lifecycle("d", "pi_3AcmeDDD", ["requires_payment_method", "requires_review"], 13, 15000)
    e = _lifecycle("e", "pi_3AcmeEEE", ["requires_payment_method", "processing"], 17, 1299)
    return [*a, a[-1], *b, *c, *d, *e, b'{"id": "evt_broken", "object": "ev']


def globex_events() -> list[dict[str, Any] | bytes]:
    f = _lifecycle("f", "pi_3GlobFFF", ["requires_payment_method", "succeeded"], 2, 99900)
    g = _lifecycle("g", "pi_3GlobGGG", ["requires_payment_method", "requires_review"], 4, 500)
    return [*f, *g]


def build_store(path: Path) -> ServiceContext:
    """A fresh store at `path`, filled; returns the deterministic context that filled it (the
    app under test uses it too, so IDs and times keep following one sequence)."""
    engine = open_store(f"sqlite:///{path}", auto_upgrade=True)
    return fill(make_context(engine, deterministic=True))


def fill(ctx: ServiceContext) -> ServiceContext:
    connections.add_connection(ctx, "acme", "stripe", "sandbox")
    connections.add_connection(ctx, "globex", "stripe", "live")
    for name, events in (("acme", acme_events()), ("globex", globex_events())):
        captures = [capture(event, T0 + timedelta(seconds=i * 7), source="webhook") for i, event in enumerate(events)]
        ingest(ctx, name, captures)
    return ctx
