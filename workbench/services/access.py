"""Who may do what: roles, and the one check every use case calls before it acts.

The actor is the OS user (ServiceContext.actor). Three roles, each including the one below:
viewer (read), operator (triage, replay, pause, reveal, ingest), admin (configuration, vault,
roles, retention). Use cases call `require(ctx, ACTION)` with one of the action names in
LEAST_ROLE before they write anything; the faces call `allowed` to hide what a role may not do.

INTERIM (coordinator, issue 9): the names and signatures below are the contract the helpers
build against; the bindings table, the refusal with its audit entry and `access` commands are
being built by the "roles" helper and replace the bodies here.
"""

from __future__ import annotations

from enum import StrEnum

from .context import ServiceContext
from .errors import ServiceError


class Role(StrEnum):
    VIEWER = "viewer"
    OPERATOR = "operator"
    ADMIN = "admin"


# Each action a use case may take, and the least role allowed to take it.
LEAST_ROLE: dict[str, Role] = {
    "read": Role.VIEWER,  # listings, views, show, diff, config export, audit verify/export
    "ingest": Role.OPERATOR,  # ingest captures, demo traffic
    "triage": Role.OPERATOR,  # failure act, assign, note, retry
    "replay": Role.OPERATOR,
    "pause": Role.OPERATOR,  # pause and resume connections
    "reveal": Role.OPERATOR,  # vault reveal, a redacted payload value shown in the TUI
    "config": Role.ADMIN,  # connection add/set/import, secret references
    "vault": Role.ADMIN,  # vault init/set/rotate/remove/rekey
    "access": Role.ADMIN,  # grant and revoke roles
    "retention": Role.ADMIN,  # retention run (purges raw bodies)
}


class AccessDenied(ServiceError):
    """The actor's role does not allow the action; an audit entry says who tried what."""


def _known(action: str) -> Role:
    try:
        return LEAST_ROLE[action]
    except KeyError:
        raise ValueError(f"unknown action {action!r}: add it to access.LEAST_ROLE") from None


def require(ctx: ServiceContext, action: str) -> None:
    """Raise AccessDenied (after auditing the refusal) unless ctx.actor may take `action`."""
    _known(action)


def allowed(ctx: ServiceContext, action: str) -> bool:
    """Whether ctx.actor may take `action` (for hiding it in a face); no audit entry."""
    _known(action)
    return True
