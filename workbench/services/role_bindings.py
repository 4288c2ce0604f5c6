"""Managing roles: grant, revoke, list (admin only, audited). A store always keeps an admin:
revoking or demoting the last one is refused."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, select, update

from store.database import reading, writing
from store.models import RoleBinding

from . import access, audit
from .access import Role
from .context import ServiceContext
from .errors import InvalidArgument, NotFound, ServiceError

bindings = RoleBinding.__table__

# OS user names (with a domain's '@' or '\\' user's parts), or "system:NAME" for a process.
NAME_RULE = "an OS user name (letters, digits, '.', '_', '-', '@') or system:NAME"
_VALID = re.compile(r"(?:system:)?[A-Za-z0-9_][A-Za-z0-9._@-]{0,63}")


@dataclass(frozen=True)
class Binding:
    actor: str
    role: str
    granted_by: str
    granted_at: datetime

    def as_dict(self) -> dict[str, Any]:
        return {"user": access.user_name(self.actor), "actor": self.actor, "role": self.role,
                "granted_by": self.granted_by, "granted_at": self.granted_at.isoformat()}


def actor_for(user: str) -> str:
    """The actor a name in `workbench access grant USER` stands for: "ana" -> "user:ana";
    "user:ana" and "system:engine" as they are."""
    name = user.strip().removeprefix("user:")
    if not _VALID.fullmatch(name):
        shown = repr(name) if len(name) <= 64 else repr(name[:64]) + "..."
        raise InvalidArgument(f"{shown} is not a user: use {NAME_RULE}")
    return name if name.startswith("system:") else f"user:{name}"


def _role(role: str) -> Role:
    try:
        return Role(role)
    except ValueError:
        raise InvalidArgument(f"unknown role {role!r}; expected one of {', '.join(Role)}") from None


def _locked_admins(conn: Connection) -> list[str]:
    """Every admin, their rows locked first and in one order (so two changes never deadlock):
    two admins demoting each other at once queue up here, and the second sees the first's
    change (PostgreSQL re-checks a locked row), so one admin remains. SQLite: the write lock."""
    return list(conn.execute(select(bindings.c.actor).where(bindings.c.role == str(Role.ADMIN))
                             .order_by(bindings.c.actor).with_for_update()).scalars())


def _current(conn: Connection, actor: str) -> str | None:
    return conn.execute(select(bindings.c.role).where(bindings.c.actor == actor).with_for_update()).scalar()


def _keep_an_admin(admins: list[str], actor: str) -> None:
    if admins == [actor]:
        raise ServiceError(f"{actor} is the last admin: grant another admin first")


def grant(ctx: ServiceContext, user: str, role: str, reason: str | None = None) -> Binding:
    """Bind `user` to `role` (replacing any role it had)."""
    access.require(ctx, "access")
    actor, wanted = actor_for(user), _role(role)
    now = ctx.clock()
    with writing(ctx.engine) as conn:
        admins = _locked_admins(conn)
        before = _current(conn, actor)
        if before == wanted:
            row = conn.execute(select(bindings).where(bindings.c.actor == actor)).one()
            return Binding(row.actor, row.role, row.granted_by, row.granted_at)
        if before == Role.ADMIN:
            _keep_an_admin(admins, actor)
        if before is None:
            conn.execute(bindings.insert().values(actor=actor, role=str(wanted), granted_by=ctx.actor, granted_at=now))
        else:
            conn.execute(update(bindings).where(bindings.c.actor == actor)
                         .values(role=str(wanted), granted_by=ctx.actor, granted_at=now))
        audit.append(conn, ctx, "access.grant", "actor", actor, before={"role": before} if before else None,
                     after={"role": str(wanted)}, reason=reason)
    access.forget(ctx.engine)
    return Binding(actor, str(wanted), ctx.actor, now)


def revoke(ctx: ServiceContext, user: str, reason: str | None = None) -> str:
    """Remove `user`'s binding; returns the role it had."""
    access.require(ctx, "access")
    actor = actor_for(user)
    with writing(ctx.engine) as conn:
        admins = _locked_admins(conn)
        before = _current(conn, actor)
        if before is None:
            raise NotFound(f"{actor} has no role to revoke")
        if before == Role.ADMIN:
            _keep_an_admin(admins, actor)
        conn.execute(delete(bindings).where(bindings.c.actor == actor))
        audit.append(conn, ctx, "access.revoke", "actor", actor, before={"role": before}, reason=reason)
    access.forget(ctx.engine)
    return str(before)


def list_bindings(ctx: ServiceContext) -> list[Binding]:
    access.require(ctx, "access")
    with reading(ctx.engine) as conn:
        rows = conn.execute(select(bindings).order_by(bindings.c.actor)).all()
    return [Binding(row.actor, row.role, row.granted_by, row.granted_at) for row in rows]
