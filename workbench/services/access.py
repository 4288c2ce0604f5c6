"""Who may do what: roles, and the one check every use case calls before it acts.

The actor is the OS user (ServiceContext.actor, "user:NAME"), or a process acting on its own
("system:engine"). Three roles, each including the one below: viewer (read), operator
(triage, replay, pause, reveal, ingest), admin (configuration, vault, roles, retention). Use
cases call `require(ctx, ACTION)` with one of the action names in LEAST_ROLE before they write
anything; the faces call `allowed` to hide what a role may not do.

Bindings live in the store (role_bindings). Rules:
- On a store with no binding at all, the first actor to act is bound admin (audited). The
  binding carries the unique `founding` flag, so two first users at once give one admin: the
  other's insert fails on the unique key and that actor has no role.
- An actor with no binding has no role, and is told how to get one.
- A refusal raises AccessDenied (one line) after an audit entry `access.denied` committed on
  its own, so it stays although the action does not happen.
- Cost: a write action looks its role up afresh (one primary-key query), so a revoke stops the
  next write at once. A read ("read") and `allowed` use a role remembered per store and actor
  for READ_CACHE_SECONDS, so a screen that reloads every second does not query for it each
  time; a revoke stops reads within that time.
- A read-only store (a read-only file, a standby, a user without INSERT) cannot record a
  first admin or a refusal: reads are allowed there to anyone who could open it (they could
  read the file or the database directly anyway); every other action is checked as usual
  (and fails as a write would).
- The engine (issue 11) acts as "system:engine" and needs a binding like anyone else, made by
  an admin: `workbench access grant system:engine operator`. It never becomes the first admin
  (FIRST_ADMIN_KINDS): only a person can found a store's roles.
"""

from __future__ import annotations

import logging
import time
import weakref
from enum import StrEnum

from sqlalchemy import Engine, exists, select
from sqlalchemy.exc import IntegrityError

from store.database import reading, writing
from store.models import RoleBinding

from .context import ServiceContext
from .errors import ServiceError

log = logging.getLogger(__name__)

bindings = RoleBinding.__table__


class Role(StrEnum):
    VIEWER = "viewer"
    OPERATOR = "operator"
    ADMIN = "admin"


_ROLES = {str(role): role for role in Role}

# Each role's rank: a role may do what any role of lower or equal rank may.
RANK = {Role.VIEWER: 1, Role.OPERATOR: 2, Role.ADMIN: 3}

# Each action a use case may take, and the least role allowed to take it.
LEAST_ROLE: dict[str, Role] = {
    "read": Role.VIEWER,  # listings, views, show, diff, config export, audit verify/export
    "ingest": Role.OPERATOR,  # ingest captures, demo traffic
    "triage": Role.OPERATOR,  # failure act, assign, note, retry
    "replay": Role.OPERATOR,
    "pause": Role.OPERATOR,  # pause and resume connections
    "command": Role.OPERATOR,  # submit a command to the outbox (workbench command submit)
    "call": Role.OPERATOR,  # call a provider's API with the connection's key (the engine, checks)
    "recover": Role.OPERATOR,  # recovery by filter: submit, cancel (workbench recover, failures retry --filter)
    "rewind": Role.OPERATOR,  # move a connection's polling cursor back (workbench connection rewind)
    "reconcile": Role.OPERATOR,  # compare records with the provider, resolve drift findings
    "alerts": Role.OPERATOR,  # acknowledge, resolve and test alerts
    "reveal": Role.OPERATOR,  # vault reveal, a redacted payload value shown in the TUI
    "config": Role.ADMIN,  # connection add/set/import, secret references
    "vault": Role.ADMIN,  # vault init/set/rotate/remove/rekey
    "access": Role.ADMIN,  # grant and revoke roles
    "retention": Role.ADMIN,  # retention run (purges raw bodies)
    "discard": Role.ADMIN,  # remove stuck deliveries from a receiver's spool for good (listen stuck --discard)
}

# How long a read may rely on a role looked up before (a revoke reaches reads within this).
READ_CACHE_SECONDS = 2.0

# Actors that may become a store's first admin: people, not processes.
FIRST_ADMIN_KINDS = ("user:",)


class AccessDenied(ServiceError):
    """The actor's role does not allow the action; an audit entry says who tried what."""


def _known(action: str) -> Role:
    try:
        return LEAST_ROLE[action]
    except KeyError:
        raise ValueError(f"unknown action {action!r}: add it to access.LEAST_ROLE") from None


def permits(role: Role | None, action: str) -> bool:
    """Whether `role` may take `action` (no role may take none)."""
    least = _known(action)
    return role is not None and RANK[role] >= RANK[least]


def user_name(actor: str) -> str:
    """The name an admin types in `workbench access grant`: "ana" for "user:ana"."""
    return actor.removeprefix("user:")


def require(ctx: ServiceContext, action: str) -> None:
    """Raise AccessDenied (after auditing the refusal) unless ctx.actor may take `action`."""
    least = _known(action)
    if ctx.read_only and action == "read":
        return
    role = role_of(ctx, cached=action == "read")
    if permits(role, action):
        return
    _audit_refusal(ctx, action, role)
    if role is None:
        raise AccessDenied(f"{ctx.actor} has no role on this store, so may not {action}; ask an admin to run "
                           f"`workbench access grant {user_name(ctx.actor)} {least}`")
    raise AccessDenied(f"{ctx.actor} is {role} here; {action} needs the {least} role (an admin can grant it: "
                       f"`workbench access grant {user_name(ctx.actor)} {least}`)")


def allowed(ctx: ServiceContext, action: str) -> bool:
    """Whether ctx.actor may take `action` (for hiding it in a face); no audit entry."""
    _known(action)
    if ctx.read_only and action == "read":
        return True
    return permits(role_of(ctx, cached=True), action)


# ----------------------------------------------------------------- the role lookup

# engine -> actor -> (role, when looked up on the monotonic clock)
_remembered: weakref.WeakKeyDictionary[Engine, dict[str, tuple[Role | None, float]]] = weakref.WeakKeyDictionary()


def forget(engine: Engine) -> None:
    """Drop remembered roles for `engine` (after a grant or revoke in this process)."""
    _remembered.pop(engine, None)


def role_of(ctx: ServiceContext, *, cached: bool = False) -> Role | None:
    """ctx.actor's role (None: no role); binds the first admin on a store with no bindings.
    `cached`: a role looked up in the last READ_CACHE_SECONDS will do."""
    now = time.monotonic()
    known = _remembered.get(ctx.engine, {})
    if cached and ctx.actor in known:
        role, at = known[ctx.actor]
        if now - at < READ_CACHE_SECONDS:
            return role
    role = _look_up(ctx)
    _remembered.setdefault(ctx.engine, {})[ctx.actor] = (role, now)
    return role


def _look_up(ctx: ServiceContext) -> Role | None:
    with reading(ctx.engine) as conn:
        stored = conn.execute(select(bindings.c.role).where(bindings.c.actor == ctx.actor)).scalar()
        if stored is not None:
            return _ROLES.get(stored)  # a value nobody granted (a hand-edited row) is no role
        anyone = conn.execute(select(exists().select_from(bindings))).scalar()
    if anyone or ctx.read_only or not ctx.actor.startswith(FIRST_ADMIN_KINDS):
        return None
    if _bind_first_admin(ctx):
        return Role.ADMIN
    # Someone was first: another person (then no role), or this same person in another
    # process (then admin all the same).
    with reading(ctx.engine) as conn:
        return _ROLES.get(conn.execute(select(bindings.c.role).where(bindings.c.actor == ctx.actor)).scalar() or "")


def _bind_first_admin(ctx: ServiceContext) -> bool:
    """Bind ctx.actor admin if the store still has no binding; False if someone else was first."""
    from . import audit  # audit calls require(): imported when needed, not at import time

    try:
        with writing(ctx.engine) as conn:
            # Under SQLite's write lock the check is exact; on PostgreSQL two first users can
            # both pass it, and the unique `founding` index lets only one insert commit.
            if conn.execute(select(exists().select_from(bindings))).scalar():
                return False
            conn.execute(bindings.insert().values(actor=ctx.actor, role=str(Role.ADMIN), granted_by=ctx.actor,
                                                  granted_at=ctx.clock(), founding=True))
            audit.append(conn, ctx, "access.grant", "actor", ctx.actor, after={"role": str(Role.ADMIN)},
                         reason="the first user of this store is its admin")
    except IntegrityError:
        return False
    return True


def _audit_refusal(ctx: ServiceContext, action: str, role: Role | None) -> None:
    """Record the refusal in a transaction of its own: it stays though the action does not happen."""
    from . import audit
    try:
        with writing(ctx.engine) as conn:
            audit.append(conn, ctx, "access.denied", "action", action,
                         after={"action": action, "role": str(role) if role else None,
                                "needs": str(LEAST_ROLE[action])})
    except Exception as exc:  # a read-only or failing store: still refuse, and say it went unrecorded
        log.warning("refused %s to %s, but could not record the refusal in the audit trail (%s)",
                    action, ctx.actor, type(exc).__name__)
