"""Leases: which engine does a piece of shared work until when (`poll:<connection id>`, the
store-wide `engine:store` on SQLite). A holder renews its lease before it expires; a lease
past its expiry may be taken by any engine, and the takeover is counted. On PostgreSQL the
lease row is read FOR UPDATE SKIP LOCKED, so engines racing for it never wait on each other:
the loser sees nothing and moves on."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import Connection, Table, delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite

from store.database import reading, writing
from store.models import Lease

from .context import ServiceContext

leases = Lease.__table__


@dataclass(frozen=True, slots=True)
class Claim:
    held: bool
    taken_over: bool = False  # held now, after another holder's lease expired


def insert_ignoring_conflict(conn: Connection, table: Table, values: dict[str, object]) -> bool:
    """INSERT ... ON CONFLICT DO NOTHING on either backend; whether the row went in (RETURNING:
    psycopg's rowcount does not say for this statement)."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    key = next(iter(table.primary_key.columns))
    statement = dialect.insert(table).values(**values).on_conflict_do_nothing().returning(key)
    return conn.execute(statement).first() is not None


def acquire(ctx: ServiceContext, resource: str, holder: str, ttl_s: float) -> Claim:
    """Hold (or renew) `resource` for `ttl_s` seconds if it is free, ours, or expired."""
    now = ctx.clock()
    expires = now + timedelta(seconds=ttl_s)
    with writing(ctx.engine) as conn:
        query = select(leases).where(leases.c.resource == resource)
        if conn.dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        row = conn.execute(query).first()
        if row is None:  # free (or, on PostgreSQL, being taken by another engine right now)
            inserted = insert_ignoring_conflict(conn, leases, {
                "resource": resource, "holder": holder, "acquired_at": now, "expires_at": expires, "takeovers": 0})
            return Claim(held=inserted)
        if row.holder == holder:
            conn.execute(update(leases).where(leases.c.resource == resource).values(expires_at=expires))
            return Claim(held=True)
        if row.expires_at > now:
            return Claim(held=False)
        conn.execute(update(leases).where(leases.c.resource == resource).values(
            holder=holder, acquired_at=now, expires_at=expires, takeovers=leases.c.takeovers + 1))
        return Claim(held=True, taken_over=True)


def release(ctx: ServiceContext, holder: str, resource: str | None = None) -> None:
    """Give up `resource` (None: every lease `holder` has), e.g. on a clean stop."""
    with writing(ctx.engine) as conn:
        statement = delete(leases).where(leases.c.holder == holder)
        if resource is not None:
            statement = statement.where(leases.c.resource == resource)
        conn.execute(statement)


@dataclass(frozen=True, slots=True)
class LeaseInfo:
    resource: str
    holder: str
    expires_in_s: float
    takeovers: int


def current(ctx: ServiceContext) -> list[LeaseInfo]:
    """Every lease in the store (engine status shows who holds what, and the takeovers)."""
    now = ctx.clock()
    with reading(ctx.engine) as conn:
        rows = conn.execute(select(leases).order_by(leases.c.resource)).all()
    return [LeaseInfo(r.resource, r.holder, (r.expires_at - now).total_seconds(), r.takeovers) for r in rows]


def total_takeovers(conn: Connection) -> int:
    return int(conn.execute(select(func.coalesce(func.sum(leases.c.takeovers), 0))).scalar_one())
