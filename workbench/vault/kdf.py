"""Passphrase -> key, through Argon2id. The parameters travel in each file's header, so the
defaults can grow with hardware while older files still open (and `rekey` moves them on)."""

from __future__ import annotations

from dataclasses import dataclass, field

from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

# Tuned on the 2-core development machine (docs/vault.md, benchmarks/vault_bench.py): one
# derivation takes about 0.32 s idle (96 MiB and 3 passes fell to 0.18 s on a quiet machine,
# under the 0.2 s floor).
DEFAULT_MEMORY_KIB = 128 * 1024
DEFAULT_ITERATIONS = 5
DEFAULT_LANES = 4
SALT_BYTES = 16
KEY_BYTES = 32


@dataclass(frozen=True)
class KdfParams:
    memory_kib: int = DEFAULT_MEMORY_KIB
    iterations: int = DEFAULT_ITERATIONS
    lanes: int = DEFAULT_LANES


DEFAULT_PARAMS = KdfParams()


def current_params() -> KdfParams:
    """The parameters a new file or a rekey gets: DEFAULT_PARAMS, read when called rather than
    bound as a default argument, so the test suite can make derivations cheap in-process (a
    fixture in tests/conftest.py; there is deliberately no option or variable for it)."""
    return DEFAULT_PARAMS


@dataclass(frozen=True)
class DerivedKeys:
    cipher_key: bytes = field(repr=False)  # AES-256-GCM key
    check_key: bytes = field(repr=False)  # only to tell a wrong passphrase from a damaged file


def derive(passphrase: str, salt: bytes, params: KdfParams) -> DerivedKeys:
    # surrogateescape: a passphrase from the environment that is not UTF-8 is used as its bytes.
    raw = Argon2id(salt=salt, length=2 * KEY_BYTES, iterations=params.iterations, lanes=params.lanes,
                   memory_cost=params.memory_kib).derive(passphrase.encode("utf-8", "surrogateescape"))
    return DerivedKeys(raw[:KEY_BYTES], raw[KEY_BYTES:])
