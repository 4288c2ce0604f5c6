"""Raw bodies encrypted at rest, per connection (envelope encryption; docs/vault.md).

Each connection that encrypts has its own random data key, kept in its environment's vault as
the secret `payload-key.<connection id>`; the vault's versions of that secret are the key's
versions, and new bodies are sealed under the newest. A sealed body is a fresh 96-bit nonce
followed by the AES-256-GCM ciphertext and tag, with the delivery's ID as associated data (a
body moved onto another delivery's row does not open). The delivery's `body_key_version` says
which version sealed it (NULL: a plain body).

The payload hash, dedupe key and capture key are all taken from the plain bytes before
sealing (ingest_prepare), so deduplication works the same on encrypted connections.
"""

from __future__ import annotations

import os
import secrets
from base64 import urlsafe_b64decode, urlsafe_b64encode
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from workbench.vault import Contents, UnlockedVault, VaultError

from .context import utc_now
from .errors import ServiceError
from .vault import PAYLOAD_KEY_PREFIX, VaultFailure

KEY_BYTES = 32
NONCE_BYTES = 12
KEY_PREFIX = PAYLOAD_KEY_PREFIX
PASSPHRASE_ENV = "WORKBENCH_VAULT_PASSPHRASE"
T = TypeVar("T")

Vaults = Mapping[str, UnlockedVault]  # unlocked vaults by environment (the TUI's app.unlocked_vaults)
NO_VAULTS: Vaults = {}


class PayloadLocked(ServiceError):
    """An encrypted body was needed and its environment's vault is not unlocked."""


class PayloadKeyError(ServiceError):
    """The vault holds no usable data key for a body (removed, replaced by hand, or damaged)."""


def encrypts(settings: Mapping[str, Any]) -> bool:
    """Whether a connection's settings ask for its raw bodies to be encrypted."""
    payloads = settings.get("payloads")
    return isinstance(payloads, Mapping) and payloads.get("encrypt") is True


def data_key_name(connection_id: str) -> str:
    return f"{KEY_PREFIX}{connection_id}"


def locked_message(environment: str) -> str:
    return (f"this body is encrypted: unlock the {environment} vault (Vault screen, u) or set "
            f"{PASSPHRASE_ENV}")


def _vault_call(call: Callable[[], T]) -> T:
    try:
        return call()
    except VaultError as exc:
        raise VaultFailure(str(exc)) from None
    except OSError as exc:
        raise VaultFailure(f"cannot write the vault ({exc.strerror or type(exc).__name__}); nothing was "
                           "changed") from None


def _key(value: str, name: str, version: int) -> bytes:
    try:
        key = urlsafe_b64decode(value.encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        key = b""
    if len(key) != KEY_BYTES:
        raise PayloadKeyError(f"version {version} of {name} in the vault is not a payload data key "
                              "(32 bytes, base64): restore the vault from a backup")
    return key


def ensure_data_key(vault: UnlockedVault, connection_id: str, now: datetime | None = None) -> None:
    """Give the connection a data key in `vault` unless it has one (one vault write, under the
    vault's lock: two processes asking at once end with one key)."""
    name = data_key_name(connection_id)
    if name in _vault_call(vault.read).secrets:
        return
    at = now or utc_now()

    def add(contents: Contents) -> Contents:
        if name in contents.secrets:  # made meanwhile by another process
            return contents
        return contents.with_new(name, urlsafe_b64encode(secrets.token_bytes(KEY_BYTES)).decode("ascii"), at)

    _vault_call(lambda: vault.update(add))


def new_key_version(vault: UnlockedVault, connection_id: str, now: datetime | None = None) -> int:
    """Rotate the connection's data key: new bodies use the new version, older ones keep
    opening with theirs. Returns the new version."""
    name = data_key_name(connection_id)
    ensure_data_key(vault, connection_id, now)
    value = urlsafe_b64encode(secrets.token_bytes(KEY_BYTES)).decode("ascii")
    contents = _vault_call(lambda: vault.update(lambda c: c.with_rotated(name, value, now or utc_now())))
    return contents.current(name).version


class Sealer:
    """Seals the bodies of one ingest under the newest data key: one AESGCM for the whole run,
    one call to the system's random source per chunk for the nonces."""

    def __init__(self, key: bytes, version: int) -> None:
        self._aead = AESGCM(key)
        self.version = version

    def seal_rows(self, rows: list[list[Any]], id_col: int, body_col: int, version_col: int) -> None:
        """Replace each row's body by its sealed form, in place, and record the key version."""
        if not rows:
            return
        encrypt, version = self._aead.encrypt, self.version
        nonces = os.urandom(NONCE_BYTES * len(rows))
        for i, row in enumerate(rows):
            nonce = nonces[i * NONCE_BYTES:(i + 1) * NONCE_BYTES]
            row[body_col] = nonce + encrypt(nonce, row[body_col], row[id_col].encode())
            row[version_col] = version


def sealer_for(vaults: Vaults, connection_id: str, environment: str) -> Sealer:
    """The sealer for an encrypted connection's new bodies (its data key made on first use).
    PayloadLocked, before anything is stored, when the vault is not unlocked."""
    vault = vaults.get(environment)
    if vault is None:
        raise PayloadLocked(f"this connection encrypts its payloads: unlock the {environment} vault (set "
                            f"{PASSPHRASE_ENV}, or run on a terminal to be asked); nothing was stored")
    ensure_data_key(vault, connection_id)
    name = data_key_name(connection_id)
    current = _vault_call(lambda: vault.read().current(name))
    return Sealer(_key(current.value, name, current.version), current.version)


class Opener:
    """Opens one connection's sealed bodies, whichever key version sealed them."""

    def __init__(self, vault: UnlockedVault, connection_id: str) -> None:
        self._name = data_key_name(connection_id)
        contents = _vault_call(vault.read)
        self._versions = {v.version: v for v in contents.secrets.get(self._name, ())}
        self._aeads: dict[int, AESGCM] = {}

    def open(self, delivery_id: str, version: int, sealed: bytes) -> bytes:
        aead = self._aeads.get(version)
        if aead is None:
            stored = self._versions.get(version)
            if stored is None:
                raise PayloadKeyError(f"the vault has no version {version} of {self._name}, which sealed "
                                      f"delivery {delivery_id}'s body: restore the vault from a backup")
            aead = self._aeads[version] = AESGCM(_key(stored.value, self._name, version))
        try:
            return aead.decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], delivery_id.encode())
        except InvalidTag:
            raise PayloadKeyError(f"delivery {delivery_id}'s encrypted body does not open with version "
                                  f"{version} of {self._name}: the body was altered in the store, or the key "
                                  "was removed from the vault and made again (restore the vault from a backup)"
                                  ) from None


@dataclass(frozen=True)
class Body:
    """A delivery's body as a reader may see it: the plain bytes, or why there are none."""

    data: bytes | None
    problem: str | None = None  # encrypted with the vault locked, or purged
    purged_at: datetime | None = None
    encrypted: bool = False

    @property
    def available(self) -> bool:
        return self.data is not None


class BodyReader:
    """Reads stored bodies for a use case: plain ones as stored, encrypted ones through the
    unlocked vaults (one Opener per connection), purged ones as gone. Rows need the columns
    id, connection_id, body, body_key_version, body_purged_at and `environment` (the
    connection's)."""

    def __init__(self, vaults: Vaults = NO_VAULTS) -> None:
        self._vaults = vaults
        self._openers: dict[str, Opener] = {}

    def body(self, row: Any) -> Body:
        if row.body_purged_at is not None:
            when = row.body_purged_at.isoformat(timespec="seconds")
            return Body(None, f"the body of delivery {row.id} is gone: purged by retention at {when} "
                              "(its identifiers, hash, verdict and timeline stay)", row.body_purged_at)
        version = row.body_key_version
        if version is None:
            return Body(bytes(row.body))
        opener = self._openers.get(row.connection_id)
        if opener is None:
            vault = self._vaults.get(row.environment)
            if vault is None:
                return Body(None, locked_message(row.environment), encrypted=True)
            opener = self._openers[row.connection_id] = Opener(vault, row.connection_id)
        return Body(opener.open(row.id, version, bytes(row.body)), encrypted=True)

    def plain(self, row: Any) -> bytes:
        """The plain body, or a ServiceError saying why there is none."""
        body = self.body(row)
        if body.data is None:
            raise (PayloadLocked if body.encrypted else BodyGone)(str(body.problem))
        return body.data


class BodyGone(ServiceError):
    """The body was purged by retention."""
