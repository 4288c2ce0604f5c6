"""Builders for tests: Stripe-shaped events, captures, and a store-backed service context."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import func, select

from store.database import open_store, reading
from store.models import Base
from workbench.domain.ids import IdFactory
from workbench.services import connections
from workbench.services.captures import Capture
from workbench.services.context import ServiceContext

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def pi_event(event_id: str, pi: str, status: str, created: int, event_type: str | None = None,
             amount: int = 2000, currency: str = "usd", **extra: Any) -> dict[str, Any]:
    """A Stripe payment_intent event object."""
    obj = {"id": pi, "object": "payment_intent", "amount": amount, "currency": currency,
           "customer": "cus_test", "description": None, "status": status,
           "client_secret": f"{pi}_secret_abcdefgh12345678", "last_payment_error": None, **extra}
    return {"id": event_id, "object": "event", "type": event_type or f"payment_intent.{status}",
            "created": created, "data": {"object": obj}, "livemode": False}


def capture(event: dict[str, Any] | bytes, received: datetime | None = None, source: str = "file",
            headers: dict[str, str] | None = None) -> Capture:
    body = event if isinstance(event, bytes) else orjson.dumps(event)
    return Capture(received or T0, headers or {"Content-Type": "application/json"}, body, source)


def capture_line(event: dict[str, Any] | bytes, received: datetime | None = None) -> bytes:
    body = event if isinstance(event, bytes) else orjson.dumps(event)
    return orjson.dumps({"received_at": (received or T0).isoformat(), "headers": {"Content-Type": "application/json"},
                         "body": body.decode()})


def jsonl(events: list[dict[str, Any] | bytes]) -> io.BytesIO:
    return io.BytesIO(b"\n".join(capture_line(e, T0 + timedelta(seconds=i)) for i, e in enumerate(events)) + b"\n")


class FixedClock:
    """A clock that advances one second per reading: deterministic and strictly increasing."""

    def __init__(self, start: datetime = T0) -> None:
        self.now = start

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


def make_context(engine: Any, *, deterministic: bool = False) -> ServiceContext:
    if deterministic:
        return ServiceContext(engine=engine, clock=FixedClock(), ids=IdFactory(seed=42), actor="user:tester")
    return ServiceContext(engine=engine, actor="user:tester")


def add_stripe(ctx: ServiceContext, name: str = "acme") -> connections.ConnectionInfo:
    return connections.add_connection(ctx, name, "stripe", "sandbox")


def table_counts(db_url: str, *, create: bool = True) -> dict[str, int]:
    """Rows per table of the store at `db_url` (opened and closed here)."""
    engine = open_store(db_url, create=create)
    try:
        with reading(engine) as conn:
            return {name: conn.execute(select(func.count()).select_from(table)).scalar_one()
                    for name, table in Base.metadata.tables.items()}
    finally:
        engine.dispose()
