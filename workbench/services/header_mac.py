"""The key that credential headers are stored under (a keyed MAC, not a bare hash).

A bare SHA-256 of a bearer token lets anyone holding the store confirm a guessed token; an
HMAC-SHA256 under a key kept outside the store does not. Ingest must never ask for a passphrase,
so the key is derived (HKDF-SHA256, its own label) from the audit key file beside the store
(services/audit_anchor): one file to protect, two independent keys. See docs/audit.md.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import Engine

from .audit_anchor import anchor_files, load_key

HEADER_MAC_LABEL = b"integration-workbench credential-header mac v1"


def derive_header_key(audit_key: bytes) -> bytes:
    return HKDF(algorithm=SHA256(), length=32, salt=None, info=HEADER_MAC_LABEL).derive(audit_key)


def header_key(engine: Engine) -> bytes:
    """This store's header MAC key (the audit key file made on first use, as appending does)."""
    key = load_key(anchor_files(engine), create=True)
    assert key is not None  # create=True makes it or raises AuditKeyError
    return derive_header_key(key)
