"""What can go wrong with a vault file: each is one line for the operator, never a traceback.

Messages name the file and the environment, never a passphrase or a value."""

from __future__ import annotations


class VaultError(Exception):
    """A vault operation failed; the file on disk is as it was."""


class VaultMissing(VaultError):
    pass


class VaultExists(VaultError):
    pass


class WrongPassphrase(VaultError):
    pass


class VaultDamaged(VaultError):
    """Truncated, altered or not a vault at all (an unkeyed digest or the AEAD tag failed)."""


class UnknownFormat(VaultError):
    """A header version (or format name) this workbench does not know."""


class VaultBusy(VaultError):
    pass


class SecretNotFound(VaultError):
    pass


class SecretExists(VaultError):
    pass
