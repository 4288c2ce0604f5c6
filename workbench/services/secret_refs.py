"""Secret references: a connection holds the names of vault secrets (API keys, webhook signing
secrets), never their values. Several may be active at once (a webhook secret being rotated),
each with an optional expiry; retiring one keeps it in the history and the vault.

Adding one writes the vault first and the connection version second; if the version fails,
the value is removed from the vault again, so nothing is left that no reference points to (and
if even that removal fails, the message names the leftover and how to remove it).
"""

from __future__ import annotations

import secrets as random
import string
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pydantic import TypeAdapter, ValidationError

from workbench.domain.connection_config import KINDS, SecretRef, first_problem
from workbench.domain.durations import MAX_DURATION, BadDuration, parse_duration
from workbench.vault import UnlockedVault, VaultError

from . import access, connections, vault as vault_service
from .context import ServiceContext
from .errors import InvalidArgument, NotFound, ServiceError
from .store_faults import explain

_REFERENCES = TypeAdapter(list[SecretRef])


@dataclass(frozen=True)
class SecretValue:
    """A reference with its current value from the vault, for the receiver and the engine."""

    reference: SecretRef
    value: str = field(repr=False)  # never in a repr, a log or a traceback's locals


@dataclass(frozen=True)
class SecretPlan:
    """A checked `secret add` request: asked before the passphrase and the value are."""

    connection: str
    environment: str
    kind: str
    expires_in: timedelta | None


class SecretLeftInVault(ServiceError):
    """The vault kept a value that no connection references (its removal failed too)."""


def references(info: connections.ConnectionInfo) -> list[SecretRef]:
    """The connection's secret references, oldest first."""
    try:
        return _REFERENCES.validate_python(info.settings.get("secrets", []))
    except ValidationError as exc:
        raise ServiceError(f"connection {info.name!r} has damaged secret references "
                           f"(secrets.{first_problem(exc)}): fix them with `workbench connection import`") from None


def list_secrets(ctx: ServiceContext, connection_name: str) -> list[SecretRef]:
    access.require(ctx, "read")
    return references(connections.get_connection(ctx, connection_name))


def check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise InvalidArgument(f"unknown secret kind {kind[:40]!r}: one of {', '.join(KINDS)}")
    return kind


def active_secrets(ctx: ServiceContext, connection_name: str, kind: str, now: datetime) -> list[SecretRef]:
    """The references of `kind` active at `now` (neither expired nor retired), newest first: an
    API client uses the first; a webhook receiver accepts a signature made with any of them."""
    check_kind(kind)
    if now.tzinfo is None:
        raise InvalidArgument("active_secrets needs a timezone-aware `now` (expiry times are in UTC)")
    found = [ref for ref in list_secrets(ctx, connection_name) if ref.kind == kind and ref.state(now) == "active"]
    return sorted(found, key=lambda ref: ref.added_at, reverse=True)


def secret_values(vault: UnlockedVault, refs: list[SecretRef]) -> list[SecretValue]:
    """Each reference with its current value, read from `vault` (one decryption). A reference
    to another environment, or to a secret the vault no longer has, is an error naming it."""
    try:
        contents = vault.read()
    except VaultError as exc:
        raise vault_service.VaultFailure(str(exc)) from None
    resolved = []
    for ref in refs:
        if ref.environment != vault.environment:
            raise InvalidArgument(f"secret {ref.name!r} is in the {ref.environment} vault, not the {vault.environment} one")
        if ref.name not in contents.secrets:
            raise NotFound(f"the {vault.environment} vault has no secret {ref.name!r} (removed outside the workbench?): "
                           "retire the reference and add the secret again with `workbench connection secret add`")
        resolved.append(SecretValue(ref, contents.current(ref.name).value))
    return resolved


def active_secret_values(ctx: ServiceContext, vault: UnlockedVault, connection_name: str, kind: str,
                         now: datetime) -> list[SecretValue]:
    """active_secrets with their values: what a webhook receiver checks a signature against."""
    return secret_values(vault, active_secrets(ctx, connection_name, kind, now))


def plan_secret(ctx: ServiceContext, connection_name: str, kind: str, expires_in: str | timedelta | None) -> SecretPlan:
    """Check everything that needs no vault (role, kind, duration, connection) before the face
    asks for a passphrase and a value."""
    access.require(ctx, "config")
    check_kind(kind)
    if isinstance(expires_in, str):
        try:
            expires_in = parse_duration(expires_in)
        except BadDuration as exc:
            raise InvalidArgument(f"--expires-in: {exc}") from None
    elif expires_in is not None and not timedelta(0) < expires_in <= MAX_DURATION:
        raise InvalidArgument(f"an expiry must be after now and at most {MAX_DURATION.days} days away")
    info = connections.get_connection(ctx, connection_name)
    return SecretPlan(info.name, info.environment, kind, expires_in)


_LETTERS = string.ascii_lowercase


def new_secret_name(connection_name: str, kind: str, now: datetime) -> str:
    """<connection>-<kind>-<date>-<6 random letters>: readable in `vault list`, unique, within 64
    characters. Letters, not hex: the date's digits and random digits would now and then form a
    Luhn-valid run that redaction masks as a card number."""
    suffix = "".join(random.choice(_LETTERS) for _ in range(6))
    return f"{connection_name[:33]}-{kind.replace('_', '-')}-{now:%Y%m%d}-{suffix}"


def add_secret(ctx: ServiceContext, vault: UnlockedVault, plan: SecretPlan, value: str,
               reason: str | None = None) -> SecretRef:
    """Store `value` in the connection's environment's vault under a new name, then reference
    it on a new connection version (audited as connection.secret.add)."""
    access.require(ctx, "config")
    if vault.environment != plan.environment:
        raise InvalidArgument(f"connection {plan.connection!r} is in {plan.environment}; "
                              f"its secrets go in the {plan.environment} vault, not the {vault.environment} one")
    now = ctx.clock()
    ref = SecretRef.model_validate({
        "name": new_secret_name(plan.connection, plan.kind, now), "kind": plan.kind, "environment": plan.environment,
        "added_at": now, "expires_at": now + plan.expires_in if plan.expires_in else None})

    def with_reference(settings: dict[str, Any]) -> dict[str, Any]:
        settings["secrets"] = [*settings.get("secrets", []), ref.as_settings()]
        return settings

    stored = False  # whether the vault holds the value (then a failure below must take it out)
    try:
        try:
            vault_service.set_secret(ctx, vault, ref.name, value, now)  # audited as vault.set
        except vault_service.VaultChangeNotAudited:
            stored = True  # in the vault, but the store could not record it: undone below
            raise
        stored = True
        connections.update_settings(ctx, plan.connection, with_reference, "connection.secret.add", reason)
    except BaseException as exc:  # ctrl+c too: no value is left in the vault that nothing references
        if not stored:
            raise
        cause: ServiceError | None
        if isinstance(exc, vault_service.VaultChangeNotAudited):  # the store failed under the vault's entry
            underlying = exc.__cause__
            why = (underlying if isinstance(underlying, ServiceError)
                   else explain(underlying, ctx.location) if isinstance(underlying, Exception) else None)
            cause = ServiceError(f"the audit trail could not record the new secret ({why or 'its entry could not be written'})")
        else:
            cause = exc if isinstance(exc, ServiceError) else explain(exc, ctx.location) if isinstance(exc, Exception) else None
        try:
            vault_service.remove_secret(ctx, vault, ref.name)
        except vault_service.VaultChangeNotAudited:
            pass  # removed; only its audit entry is missing (the store that failed the version too)
        except ServiceError:
            raise SecretLeftInVault(
                f"{cause or 'the connection version failed'}; the value stays in the {vault.environment} vault as "
                f"{ref.name}, referenced by nothing: `workbench vault remove {ref.name} --environment "
                f"{vault.environment}` removes it") from exc
        if cause is None:
            raise  # an interruption or a bug, reported as such; the vault is as it was
        raise type(cause)(f"{cause}; the secret was not added (its value was removed from the vault again)") from exc
    return ref


def retire_secret(ctx: ServiceContext, connection_name: str, secret_name: str, reason: str) -> SecretRef:
    """Mark a reference retired now (a new version, audited as connection.secret.retire). The
    value stays in the vault (`workbench vault remove` deletes it)."""
    access.require(ctx, "config")
    now = ctx.clock()
    retired: list[SecretRef] = []

    def retire(settings: dict[str, Any]) -> dict[str, Any]:
        refs = _REFERENCES.validate_python(settings.get("secrets", []))
        for index, ref in enumerate(refs):
            if ref.name == secret_name:
                if ref.retired_at is not None:
                    raise ServiceError(f"secret {secret_name!r} of {connection_name!r} was retired at "
                                       f"{ref.retired_at.isoformat()}")
                changed = ref.model_copy(update={"retired_at": now})
                settings["secrets"][index] = changed.as_settings()
                retired.append(changed)
                return settings
        raise NotFound(f"connection {connection_name!r} has no secret {secret_name[:80]!r} "
                       f"(`workbench connection secret list {connection_name}` shows them)")

    connections.update_settings(ctx, connection_name, retire, "connection.secret.retire", reason)
    return retired[-1]
