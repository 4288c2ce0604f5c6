"""Vault use cases: what the faces call to create, unlock, change and reveal the environment
vaults. Values come in and (for reveal only) go out here; the store gets audit entries only
(environment, name, version: never a value).

Every change (init, set, rotate, remove, rekey) needs the "vault" action, checked before the
file is touched, and is audited after the file is written: the vault file is the truth, and
an entry for a change that never happened would be worse than a change the trail missed,
which the one-line error then says plainly. A reveal is audited first: no value leaves
without its entry."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TypeVar

from store.database import writing
from workbench.vault import (
    ENVIRONMENTS,
    Contents,
    SecretVersion,
    UnlockedVault,
    VaultError,
    create,
    unlock,
    vault_path,
)

from . import access, audit
from .context import ServiceContext, utc_now
from .errors import InvalidArgument, ReadOnlyStore, ServiceError
from .store_faults import explain

# Documented in the README: `workbench demo` creates a sandbox vault under this passphrase.
DEMO_PASSPHRASE = "demo-passphrase"
DEMO_SECRET_NAME = "stripe-sandbox-api-key"
DEMO_SECRET_VALUE = "sk_test_workbench_demo_0000000000000000"

# A connection's payload data key is the vault secret `payload-key.<connection id>`.
PAYLOAD_KEY_PREFIX = "payload-key."
MIN_PASSPHRASE_CHARS = 8
MAX_VALUE_BYTES = 64 * 1024
NAME_RULE = "1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"
T = TypeVar("T")
_VALID_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


class VaultFailure(ServiceError):
    """The vault could not be used (missing, busy, damaged, wrong passphrase...); unchanged."""


class VaultChangeNotAudited(ServiceError):
    """The vault file changed, but the audit entry saying so could not be written."""


@dataclass(frozen=True)
class SecretSummary:
    """What may be shown about a secret: never its value."""

    name: str
    version: int
    created_at: datetime  # when the secret was first set
    rotated_at: datetime | None  # when its current version replaced the one before

    def as_json(self) -> dict[str, object]:
        return {"name": self.name, "version": self.version, "created_at": self.created_at.isoformat(),
                "rotated_at": self.rotated_at.isoformat() if self.rotated_at else None}


def _summary(name: str, versions: tuple[SecretVersion, ...]) -> SecretSummary:
    return SecretSummary(name, versions[-1].version, versions[0].created_at,
                         versions[-1].created_at if len(versions) > 1 else None)


def check_environment(environment: str) -> str:
    if environment not in ENVIRONMENTS:
        raise InvalidArgument(f"unknown environment {environment!r}: one of {', '.join(ENVIRONMENTS)}")
    return environment


def _check_name(name: str) -> str:
    if not _VALID_NAME.fullmatch(name):
        raise InvalidArgument(f"secret name {name[:80]!r} is not allowed: {NAME_RULE}")
    return name


def check_new_passphrase(passphrase: str) -> str:
    if len(passphrase) < MIN_PASSPHRASE_CHARS:
        raise InvalidArgument(f"the passphrase is too short: at least {MIN_PASSPHRASE_CHARS} characters")
    return passphrase


def _check_value(value: str) -> str:
    if not value:
        raise InvalidArgument("the secret's value is empty: give it on standard input or at the prompt")
    if len(value.encode("utf-8")) > MAX_VALUE_BYTES:
        raise InvalidArgument(f"the secret's value is over {MAX_VALUE_BYTES // 1024} KiB")
    return value


def _vault_call(call: Callable[[], T]) -> T:
    try:
        return call()
    except VaultError as exc:
        raise VaultFailure(str(exc)) from None
    except OSError as exc:  # the directory or file cannot be written: the vault is as it was
        raise VaultFailure(f"cannot write the vault ({exc.strerror or type(exc).__name__}): "
                           "check the vault directory's permissions and free space; nothing was changed") from None


def location(environment: str) -> Path:
    return vault_path(check_environment(environment))


def exists(environment: str) -> bool:
    return location(environment).exists()


def may_change(ctx: ServiceContext) -> None:
    """Before the vault is touched: the role allows it, and the store can take its audit entry
    (a read-only store could not, and the change would go unrecorded)."""
    access.require(ctx, "vault")
    if ctx.read_only:
        raise ReadOnlyStore("the store is read-only, so a vault change could not be audited; nothing was changed: "
                            "run with write access to the store")


def _cause(exc: Exception, ctx: ServiceContext) -> str:
    if isinstance(exc, ServiceError):
        return str(exc)
    explained = explain(exc, ctx.location)
    return str(explained) if explained is not None else f"{type(exc).__name__}"


def _audited(ctx: ServiceContext, done: str, action: str, target_type: str, target_id: str,
             entry: dict[str, object], *, removed: bool = False) -> None:
    """The audit entry of a change already in the vault file; `done` says what changed."""
    try:
        with writing(ctx.engine) as conn:
            audit.append(conn, ctx, action, target_type, target_id,
                         before=entry if removed else None, after=None if removed else entry)
    except Exception as exc:
        # What matters first (a face may cut a long line): the vault changed, the trail did not.
        raise VaultChangeNotAudited(
            f"{done}: the vault has the change, the audit trail does not (its entry could not be written: "
            f"{_cause(exc, ctx)})") from exc


def init_vault(ctx: ServiceContext, environment: str, passphrase: str) -> UnlockedVault:
    """Create an empty vault for `environment` (refused if one exists); returned unlocked."""
    may_change(ctx)
    path = location(environment)
    check_new_passphrase(passphrase)
    created = _vault_call(lambda: create(path, environment, passphrase))
    _audited(ctx, f"created the {environment} vault", "vault.init", "vault", environment,
             {"environment": environment})
    return created


def unlock_vault(environment: str, passphrase: str) -> UnlockedVault:
    """Check the passphrase once; the returned vault serves every later call of this process."""
    path = location(environment)
    return _vault_call(lambda: unlock(path, environment, passphrase))


def list_secrets(vault: UnlockedVault) -> list[SecretSummary]:
    contents = _vault_call(vault.read)
    return [_summary(name, versions) for name, versions in sorted(contents.secrets.items())]


def _changed(ctx: ServiceContext, vault: UnlockedVault, name: str, change: Callable[[Contents], Contents],
             action: str, verb: str) -> SecretSummary:
    contents = _vault_call(lambda: vault.update(change))
    summary = _summary(name, contents.secrets[name])
    _audited(ctx, f"{verb} {name} (version {summary.version}) in the {vault.environment} vault", action, "secret",
             f"{vault.environment}/{name}",
             {"environment": vault.environment, "name": name, "version": summary.version})
    return summary


def set_secret(ctx: ServiceContext, vault: UnlockedVault, name: str, value: str,
               now: datetime | None = None) -> SecretSummary:
    """A new secret (version 1); an existing name is refused (rotate it instead)."""
    may_change(ctx)
    _check_name(name)
    _check_value(value)
    at = now or ctx.clock()
    return _changed(ctx, vault, name, lambda c: c.with_new(name, value, at), "vault.set", "stored")


def rotate_secret(ctx: ServiceContext, vault: UnlockedVault, name: str, value: str,
                  now: datetime | None = None) -> SecretSummary:
    """A new version of `name`; the old versions stay, marked rotated."""
    may_change(ctx)
    _check_name(name)
    _check_value(value)
    at = now or ctx.clock()
    return _changed(ctx, vault, name, lambda c: c.with_rotated(name, value, at), "vault.rotate", "rotated")


def remove_secret(ctx: ServiceContext, vault: UnlockedVault, name: str, *, force: bool = False) -> int:
    """Remove `name` with all its versions; returns how many versions went. A connection's
    payload data key only with `force`: without it, the bodies it encrypted are lost for good."""
    may_change(ctx)
    _check_name(name)
    if name.startswith(PAYLOAD_KEY_PREFIX) and not force:
        raise InvalidArgument(f"{name} is a connection's payload data key: without it the bodies it encrypted can "
                              "never be read again; nothing was removed (add --force if that is what you want)")
    removed: list[int] = []

    def drop(contents: Contents) -> Contents:
        removed.append(contents.current(name).version)
        return contents.without(name)

    _vault_call(lambda: vault.update(drop))
    version = removed[-1]
    _audited(ctx, f"removed {name} from the {vault.environment} vault", "vault.remove", "secret",
             f"{vault.environment}/{name}", {"environment": vault.environment, "name": name, "version": version},
             removed=True)
    return version


def reveal_secret(ctx: ServiceContext, vault: UnlockedVault, name: str) -> str:
    """The current value of `name`, after an audit entry saying who revealed which version."""
    access.require(ctx, "reveal")
    _check_name(name)
    current = _vault_call(lambda: vault.read().current(name))
    with writing(ctx.engine) as conn:
        audit.append(conn, ctx, "vault.reveal", "secret", f"{vault.environment}/{name}",
                     after={"environment": vault.environment, "name": name, "version": current.version})
    return current.value


def rekey_vault(ctx: ServiceContext, vault: UnlockedVault, new_passphrase: str) -> None:
    """Re-encrypt under a new passphrase (and today's KDF parameters); the old one stops working."""
    may_change(ctx)
    check_new_passphrase(new_passphrase)
    _vault_call(lambda: vault.rekey(new_passphrase))
    _audited(ctx, f"the {vault.environment} vault has a new passphrase", "vault.rekey", "vault", vault.environment,
             {"environment": vault.environment})


def ensure_demo_vault(now: datetime | None = None) -> bool:
    """The demo's sandbox vault (DEMO_PASSPHRASE, one demo secret), unless a sandbox vault
    exists already. One key derivation. Returns whether it was created."""
    path = location("sandbox")
    if path.exists():
        return False
    contents = Contents("sandbox").with_new(DEMO_SECRET_NAME, DEMO_SECRET_VALUE, now or utc_now())
    try:
        _vault_call(lambda: create(path, "sandbox", DEMO_PASSPHRASE, contents))
    except VaultFailure:
        if path.exists():  # another process made one meanwhile: theirs stands
            return False
        raise
    return True
