"""A connection's payload settings: whether raw bodies are encrypted at rest, and how long
they are kept. Stored in the connection's settings as `"payloads": {"encrypt": bool}` and
`"retention": {"raw_days": int | null}` (absent: plain, kept forever), each change a new
connection version through `connections.update_settings`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from store.database import writing

from . import access, audit
from .connections import ConnectionInfo, add_connection, get_connection, update_settings
from .context import ServiceContext
from .errors import InvalidArgument, ServiceError
from .payload_crypto import (
    NO_VAULTS,
    PASSPHRASE_ENV,
    PayloadLocked,
    Vaults,
    data_key_name,
    encrypts,
    ensure_data_key,
    new_key_version,
)

MAX_RAW_DAYS = 36_500  # a hundred years: past that, "keep forever" says it better


@dataclass(frozen=True)
class PayloadChange:
    """What to change; None leaves a setting as it is. `keep_forever` clears `raw_days`."""

    encrypt: bool | None = None
    raw_days: int | None = None
    keep_forever: bool = False

    def __post_init__(self) -> None:
        if self.raw_days is not None and self.keep_forever:
            raise InvalidArgument("give either a retention in days or keep forever, not both")
        if self.raw_days is not None and not 1 <= self.raw_days <= MAX_RAW_DAYS:
            raise InvalidArgument(f"raw bodies are kept 1 to {MAX_RAW_DAYS} days, not {self.raw_days}; "
                                  "keep them forever instead")

    @property
    def empty(self) -> bool:
        return self.encrypt is None and self.raw_days is None and not self.keep_forever

    def apply(self, settings: dict[str, Any]) -> dict[str, Any]:
        if self.encrypt is not None:
            settings["payloads"] = {**_section(settings, "payloads"), "encrypt": self.encrypt}
        if self.raw_days is not None or self.keep_forever:
            settings["retention"] = {**_section(settings, "retention"), "raw_days": self.raw_days}
        return settings


def _section(settings: dict[str, Any], key: str) -> dict[str, Any]:
    value = settings.get(key)
    return value if isinstance(value, dict) else {}


def raw_days(settings: dict[str, Any]) -> int | None:
    """How many days a connection keeps its raw bodies (None: forever)."""
    retention = settings.get("retention")
    days = retention.get("raw_days") if isinstance(retention, dict) else None
    return days if isinstance(days, int) and not isinstance(days, bool) and days > 0 else None


def _vault_for_key(vaults: Vaults, environment: str, name: str) -> Any:
    vault = vaults.get(environment)
    if vault is None:
        raise PayloadLocked(f"encrypting {name}'s payloads needs the {environment} vault, to keep its data key: "
                            f"set {PASSPHRASE_ENV}, or run on a terminal to be asked; nothing was changed")
    return vault


def set_payload_settings(ctx: ServiceContext, name: str, change: PayloadChange, reason: str,
                         vaults: Vaults = NO_VAULTS) -> ConnectionInfo:
    """Change a connection's payload settings as one new version (audited "connection.set").
    Turning encryption on makes the connection's data key first, so it needs the environment's
    vault unlocked; bodies already stored stay as they are (plain, or encrypted)."""
    access.require(ctx, "config")
    if change.empty:
        raise InvalidArgument("nothing to set: give --encrypt-payloads/--no-encrypt-payloads, --retain-raw DAYS "
                              "or --keep-raw-forever")
    if not reason.strip():
        raise InvalidArgument("a reason is required: it is kept in the connection's history")
    current = get_connection(ctx, name)
    if change.encrypt and not encrypts(current.settings):
        ensure_data_key(_vault_for_key(vaults, current.environment, name), current.id, ctx.clock())
    return update_settings(ctx, name, change.apply, "connection.set", reason)


def rotate_payload_key(ctx: ServiceContext, name: str, reason: str, vaults: Vaults = NO_VAULTS) -> int:
    """A new version of the connection's data key: new bodies are sealed under it, older ones
    keep opening with theirs. Audited ("connection.rotate_payload_key"); returns the version."""
    access.require(ctx, "config")
    if not reason.strip():
        raise InvalidArgument("a reason is required: it is kept in the audit trail")
    current = get_connection(ctx, name)
    if not encrypts(current.settings):
        raise ServiceError(f"{name} does not encrypt its payloads: `connection set {name} --encrypt-payloads` first")
    vault = vaults.get(current.environment)
    if vault is None:
        raise PayloadLocked(f"rotating {name}'s data key needs the {current.environment} vault: set "
                            f"{PASSPHRASE_ENV}, or run on a terminal to be asked; nothing was changed")
    version = new_key_version(vault, current.id, ctx.clock())
    with writing(ctx.engine) as conn:
        audit.append(conn, ctx, "connection.rotate_payload_key", "connection", current.id,
                     after={"secret": data_key_name(current.id), "environment": current.environment,
                            "version": version}, reason=reason)
    return version


def add_with_payload_settings(ctx: ServiceContext, name: str, provider: str, environment: str,
                              reason: str | None, change: PayloadChange,
                              vaults: Vaults = NO_VAULTS, *, settings: dict[str, Any] | None = None) -> ConnectionInfo:
    """Add a connection with its payload settings in its first version (with `settings`, other
    sections already checked, e.g. `api`). Encrypting checks the vault before anything is
    written and makes the data key once the connection has its ID."""
    access.require(ctx, "config")
    vault = _vault_for_key(vaults, environment, name) if change.encrypt else None
    info = add_connection(ctx, name, provider, environment, reason, settings=change.apply(dict(settings or {})))
    if vault is not None:
        ensure_data_key(vault, info.id, ctx.clock())
    return info
