"""Builders for tests: Stripe-shaped events, captures, and a store-backed service context."""

from __future__ import annotations

import io
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import orjson
from sqlalchemy import func, inspect, select

from store.database import open_store, reading, writing
from store.models import Base, RoleBinding
from workbench.domain.ids import IdFactory
from workbench.services import connections
from workbench.services.captures import Capture
from workbench.services.context import ServiceContext, default_actor

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
bindings = RoleBinding.__table__
R = TypeVar("R")


def together(*calls: Callable[[], R]) -> list[R]:
    """Run independent calls (each typically a `workbench` process, about a second of start-up
    apiece) at once, their results in the order given: checks that read the same state need
    not wait for one another. An exception in any call is raised here."""
    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(lambda call: call(), calls))


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


TESTER = "user:tester"


def make_context(engine: Any, *, deterministic: bool = False) -> ServiceContext:
    """A context acting as user:tester, who (with the OS user the CLI acts as) is an admin of
    the store: see `seed_admins`."""
    seed_admins(engine)
    if deterministic:
        return ServiceContext(engine=engine, clock=FixedClock(), ids=IdFactory(seed=42), actor=TESTER)
    return ServiceContext(engine=engine, actor=TESTER)


def seed_admins(engine: Any) -> None:
    """Bind user:tester (the services' actor in tests) and the OS user (the actor of a CLI run
    in a subprocess or CliRunner) admin, as an existing store would have its admins, without
    an audit entry, so tests about other things see the same trail and clock as before roles.
    Tests about roles bind others with `acting_as`; tests of the first-user rule use a context
    of their own on a store without bindings. A store older than the bindings table (a
    migration test) is left as it is."""
    with reading(engine) as conn:
        if not inspect(conn).has_table("role_bindings"):
            return
        bound = set(conn.execute(select(bindings.c.actor)).scalars())
    missing = [actor for actor in (TESTER, default_actor()) if actor not in bound]
    if missing:
        with writing(engine) as conn:
            conn.execute(bindings.insert(), [{"actor": actor, "role": "admin", "granted_by": "tests.support",
                                              "granted_at": T0} for actor in missing])


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


def acting_as(ctx: ServiceContext, actor: str, role: str) -> ServiceContext:
    """`ctx` acting as `actor` ("user:ana"), bound to `role` by ctx's own actor (a test's
    context is the store's first user, so its admin). Tests that act as several people
    bind each one here rather than weakening the role check."""
    from workbench.services import role_bindings

    role_bindings.grant(ctx, actor, role, "test")
    return ctx.as_actor(actor)
