"""An unlocked vault: the passphrase held once (the TUI and other long-running processes
unlock once), keys cached per salt, every write a read-modify-write under the file lock."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from . import file_format, kdf
from .contents import Contents
from .errors import VaultError, VaultExists, VaultMissing
from .files import LOCK_TIMEOUT_S, ensure_private_dir, exclusive, replace_atomically
from .kdf import DerivedKeys, KdfParams, derive


def _where(environment: str, path: Path) -> str:
    return f"the {environment} vault at {path}"


def _read(path: Path, environment: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise VaultMissing(f"there is no {environment} vault at {path}: `workbench vault init --environment "
                           f"{environment}` creates one") from None
    except OSError as exc:
        raise VaultError(f"cannot read {_where(environment, path)}: {exc.strerror}") from None


def create(path: Path, environment: str, passphrase: str, contents: Contents | None = None,
           params: KdfParams | None = None, lock_timeout: float = LOCK_TIMEOUT_S) -> UnlockedVault:
    """A new vault file (refused if one exists) under `params`, today's defaults unless given;
    returns it unlocked."""
    ensure_private_dir(path.parent)
    vault = UnlockedVault(path, environment, passphrase, lock_timeout=lock_timeout)
    with exclusive(path, lock_timeout):
        if path.exists():
            raise VaultExists(f"{_where(environment, path)} already exists; it was left as it is")
        vault._write(contents or Contents(environment), params or kdf.current_params())
    return vault


def unlock(path: Path, environment: str, passphrase: str, lock_timeout: float = LOCK_TIMEOUT_S) -> UnlockedVault:
    """Open and check the passphrase now (one key derivation); later reads reuse the key."""
    vault = UnlockedVault(path, environment, passphrase, lock_timeout=lock_timeout)
    vault.read()
    return vault


@dataclass(eq=False)
class UnlockedVault:
    path: Path
    environment: str
    _passphrase: str = field(repr=False)
    lock_timeout: float = LOCK_TIMEOUT_S
    _keys: dict[tuple[bytes, KdfParams], DerivedKeys] = field(default_factory=dict, repr=False)

    @property
    def where(self) -> str:
        return _where(self.environment, self.path)

    def _key_for(self, parsed: file_format.Parsed) -> DerivedKeys:
        cache_key = (parsed.salt, parsed.params)
        if cache_key not in self._keys:
            self._keys[cache_key] = derive(self._passphrase, parsed.salt, parsed.params)
        return self._keys[cache_key]

    def read(self) -> Contents:
        """The current contents, as on disk now (another process may have written since)."""
        return self._decrypt(_read(self.path, self.environment))[0]

    def _decrypt(self, data: bytes) -> tuple[Contents, KdfParams]:
        parsed = file_format.parse(data, self.where)
        if parsed.header.environment != self.environment:  # a copied or renamed file
            raise VaultError(f"{self.path} holds the {parsed.header.environment[:20]!r} vault, not the "
                             f"{self.environment} one: put each environment's file back under its own name")
        keys = self._key_for(parsed)
        try:
            plaintext = file_format.unseal(parsed, keys, self.where)
        except VaultError:
            self._keys.pop((parsed.salt, parsed.params), None)
            raise
        return Contents.from_bytes(plaintext, self.where), parsed.params

    def update(self, change: Callable[[Contents], Contents], params: KdfParams | None = None) -> Contents:
        """Apply `change` to the latest contents and write the result, under the lock. The file's
        own KDF parameters are kept unless `params` says otherwise (rekey)."""
        with exclusive(self.path, self.lock_timeout):
            current, file_params = self._decrypt(_read(self.path, self.environment))
            changed = change(current)
            self._write(changed, params or file_params)
        return changed

    def rekey(self, new_passphrase: str, params: KdfParams | None = None) -> None:
        """Re-encrypt under `new_passphrase` (and today's parameters unless given); the old one
        stops working."""
        with exclusive(self.path, self.lock_timeout):
            current, _ = self._decrypt(_read(self.path, self.environment))
            self._write(current, params or kdf.current_params(), new_passphrase)
            self._passphrase = new_passphrase  # only once the file says so

    def _write(self, contents: Contents, params: KdfParams, passphrase: str | None = None) -> None:
        data, salt, keys = file_format.seal(contents.to_bytes(), passphrase or self._passphrase, self.environment,
                                            params)
        replace_atomically(self.path, data)
        self._keys = {(salt, params): keys}  # our own write reads back without another derivation
