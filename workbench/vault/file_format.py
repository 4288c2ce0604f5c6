"""The vault file, version 1 (documented in docs/vault.md):

    <header: one line of JSON>\\n <AES-256-GCM ciphertext + 16-byte tag> <SHA-256 of all before it>

The header (kdf parameters and salt, nonce, a key check) is the AEAD's associated data, so
editing it breaks the tag. The trailing unkeyed digest only tells accidental damage (a
truncated copy, a flipped bit) apart from a wrong passphrase; the tag is what resists
tampering. A fresh salt and nonce are drawn for every write.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from typing import Any, Final, Literal

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import UnknownFormat, VaultDamaged, WrongPassphrase
from .kdf import SALT_BYTES, DerivedKeys, KdfParams, derive

FORMAT_NAME: Final = "integration-workbench-vault"
FORMAT_VERSION: Final = 1
NONCE_BYTES = 12
DIGEST_BYTES = 32
TAG_BYTES = 16
MAX_HEADER_BYTES = 4096


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class KdfHeader(_Strict):
    name: Literal["argon2id"]
    # Bounded so that a hostile header cannot ask for gigabytes or hours before failing.
    memory_kib: int = Field(ge=64, le=4 * 1024 * 1024)
    iterations: int = Field(ge=1, le=64)
    lanes: int = Field(ge=1, le=16)
    salt: str  # base64


class CipherHeader(_Strict):
    name: Literal["aes-256-gcm"]
    nonce: str  # base64


class Header(_Strict):
    format: Literal["integration-workbench-vault"]
    version: Literal[1]
    environment: str
    kdf: KdfHeader
    cipher: CipherHeader
    key_check: str  # hex: SHA-256 of the derived check key, first 16 bytes


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"), validate=True)


def _key_check(check_key: bytes) -> str:
    return hashlib.sha256(check_key).digest()[:16].hex()


def seal(plaintext: bytes, passphrase: str, environment: str, params: KdfParams) -> tuple[bytes, bytes, DerivedKeys]:
    """The whole file for `plaintext`, with a new salt and nonce; also the salt and the keys
    (so a long-running process reads its own write back without a second derivation)."""
    salt = os.urandom(SALT_BYTES)
    keys = derive(passphrase, salt, params)
    nonce = os.urandom(NONCE_BYTES)
    header = Header(
        format=FORMAT_NAME, version=FORMAT_VERSION, environment=environment,
        kdf=KdfHeader(name="argon2id", memory_kib=params.memory_kib, iterations=params.iterations,
                      lanes=params.lanes, salt=_b64(salt)),
        cipher=CipherHeader(name="aes-256-gcm", nonce=_b64(nonce)),
        key_check=_key_check(keys.check_key),
    )
    header_line = orjson.dumps(header.model_dump(), option=orjson.OPT_SORT_KEYS) + b"\n"
    body = header_line + AESGCM(keys.cipher_key).encrypt(nonce, plaintext, header_line)
    return body + hashlib.sha256(body).digest(), salt, keys


class Parsed:
    """A file that passed its digest and header checks, not yet decrypted."""

    def __init__(self, header: Header, header_line: bytes, ciphertext: bytes) -> None:
        self.header = header
        self.header_line = header_line
        self.ciphertext = ciphertext
        self.salt = _unb64(header.kdf.salt)
        self.nonce = _unb64(header.cipher.nonce)
        self.params = KdfParams(header.kdf.memory_kib, header.kdf.iterations, header.kdf.lanes)


def parse(data: bytes, where: str) -> Parsed:
    """Check the file's shape; raises VaultDamaged or UnknownFormat naming `where`."""
    damaged = VaultDamaged(f"{where} is damaged (truncated, altered or not a vault): restore it from a "
                           "backup; it was left as it is")
    end = data.find(b"\n", 0, MAX_HEADER_BYTES)
    if end < 0:
        raise damaged
    header_line = data[: end + 1]
    try:
        loose: Any = orjson.loads(header_line)
    except orjson.JSONDecodeError:
        raise damaged from None
    if not isinstance(loose, dict) or loose.get("format") != FORMAT_NAME:
        raise damaged
    if loose.get("version") != FORMAT_VERSION:
        # Checked before the digest: a later version may lay the rest of the file out otherwise.
        shown = str(loose.get("version"))[:20]
        raise UnknownFormat(f"{where} has vault format version {shown}, which this workbench does not know "
                            f"(it reads version {FORMAT_VERSION}): use the workbench that wrote it")
    body, digest = data[:-DIGEST_BYTES], data[-DIGEST_BYTES:]
    if len(body) < len(header_line) + TAG_BYTES or not hmac.compare_digest(hashlib.sha256(body).digest(), digest):
        raise damaged
    try:
        header = Header.model_validate(loose)
        parsed = Parsed(header, header_line, body[len(header_line):])
    except (ValidationError, ValueError):
        raise damaged from None
    if len(parsed.salt) < 8 or len(parsed.nonce) != NONCE_BYTES or parsed.params.memory_kib < 8 * parsed.params.lanes:
        raise damaged
    return parsed


def unseal(parsed: Parsed, keys: DerivedKeys, where: str) -> bytes:
    if not hmac.compare_digest(_key_check(keys.check_key), parsed.header.key_check):
        raise WrongPassphrase(f"wrong passphrase for {where}: nothing was changed")
    try:
        return AESGCM(keys.cipher_key).decrypt(parsed.nonce, parsed.ciphertext, parsed.header_line)
    except InvalidTag:
        raise VaultDamaged(f"{where} was altered (its authentication tag does not match): restore it from "
                           "a backup; it was left as it is") from None

