"""The credential vault: one encrypted file per environment (no store access here).

Argon2id turns the passphrase into a key; AES-256-GCM seals the whole content with the
versioned header as associated data; writes are atomic and serialised by a lock file.
The format is documented in docs/vault.md.
"""

from .contents import Contents, SecretVersion
from .errors import (
    SecretExists,
    SecretNotFound,
    UnknownFormat,
    VaultBusy,
    VaultDamaged,
    VaultError,
    VaultExists,
    VaultMissing,
    WrongPassphrase,
)
from .files import ENVIRONMENTS, VAULT_DIR_ENV, vault_dir, vault_path
from .kdf import DEFAULT_PARAMS, KdfParams
from .vault import UnlockedVault, create, unlock

__all__ = [
    "DEFAULT_PARAMS", "ENVIRONMENTS", "VAULT_DIR_ENV", "Contents", "KdfParams", "SecretExists", "SecretNotFound",
    "SecretVersion", "UnknownFormat", "UnlockedVault", "VaultBusy", "VaultDamaged", "VaultError", "VaultExists",
    "VaultMissing", "WrongPassphrase", "create", "unlock", "vault_dir", "vault_path",
]
