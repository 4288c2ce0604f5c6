"""What the audit chain keeps outside the database: its key and its checkpoint.

The key (32 random bytes, mode 0600) is created on first use, so a triage action never asks
for a passphrase. The checkpoint is the chain head (sequence number, MAC, first keyed entry),
rewritten after every commit that appended entries; `audit verify` holds the table to it, so
cutting off the tail and rewinding `audit_head` no longer passes. See docs/audit.md for what
either can and cannot protect.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import secrets
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import orjson
from platformdirs import user_data_dir
from sqlalchemy import Engine

from store.database import sqlite_file
from workbench.domain.audit_chain import Anchor

from .errors import ServiceError

KEY_FILE_ENV = "WORKBENCH_AUDIT_KEY_FILE"
KEY_BYTES = 32


class AuditKeyError(ServiceError):
    """The audit key cannot be read, is unsafe, or is missing where entries need it."""


@dataclass(frozen=True)
class AnchorFiles:
    key: Path
    checkpoint: Path


def anchor_files(engine: Engine) -> AnchorFiles:
    """Where this store's key and checkpoint live: WORKBENCH_AUDIT_KEY_FILE, else beside the
    SQLite file, else in the platform data directory. One key may serve several stores; each
    store has its own checkpoint beside the key, named after the store."""
    url = engine.url
    db_file = sqlite_file(url.render_as_string(hide_password=False))
    override = os.environ.get(KEY_FILE_ENV, "").strip()
    if override:
        key = Path(override).expanduser()
    elif db_file is not None:
        key = db_file.with_name(db_file.name + ".audit-key")
    else:
        key = Path(user_data_dir("integration-workbench", appauthor=False)) / "audit.key"
    identity = str(db_file.resolve()) if db_file is not None else url.render_as_string(hide_password=True)
    tag = hashlib.sha256(identity.encode()).hexdigest()[:16]
    return AnchorFiles(key, key.with_name(f"{key.name}.{tag}.head"))


def load_key(files: AnchorFiles, *, create: bool) -> bytes | None:
    """The audit key; made on first use when `create` (an appender), else None if absent.
    The one place the key comes from: a vault could supply it here instead."""
    path = files.key
    try:
        return _read_key(path)
    except FileNotFoundError:
        if not create:
            return None
    # Written whole under a temporary name, then linked into place: a process that races us
    # either wins the link or reads our complete key, never an empty file.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, secrets.token_bytes(KEY_BYTES))
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)
        except FileExistsError:  # another process made it first: use theirs
            pass
        _fsync_dir(path.parent)
    except OSError as exc:
        raise AuditKeyError(f"cannot create the audit key at {path}: {exc.strerror}; "
                            f"set {KEY_FILE_ENV} to a file this user may write") from None
    finally:
        tmp.unlink(missing_ok=True)
    return _read_key(path)


def _read_key(path: Path) -> bytes:
    try:
        with open(path, "rb") as handle:
            mode = os.fstat(handle.fileno()).st_mode
            data = handle.read(KEY_BYTES + 1)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise AuditKeyError(f"cannot read the audit key at {path}: {exc.strerror}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise AuditKeyError(f"the audit key at {path} may be read by other users; run `chmod 600 {path}`")
    if len(data) != KEY_BYTES:
        raise AuditKeyError(f"the audit key at {path} is not a {KEY_BYTES}-byte key; restore it from a backup")
    return data


def read_checkpoint(files: AnchorFiles) -> Anchor | None:
    try:
        raw = files.checkpoint.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise AuditKeyError(f"cannot read the audit checkpoint at {files.checkpoint}: {exc.strerror}") from None
    try:
        data = orjson.loads(raw)
        return Anchor(int(data["seq"]), str(data["mac"]), int(data["first_keyed"]))
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        # Written atomically, so never half-written by us: someone edited it.
        raise AuditKeyError(f"the audit checkpoint at {files.checkpoint} is not one the workbench wrote; "
                            "restore it from a backup") from None


def write_checkpoint(files: AnchorFiles, seq: int, mac: str, first_keyed: int) -> None:
    """Record the head after a commit, never moving it backwards: two processes committing
    entries 7 and 8 may reach here in either order, and 8 must stay."""
    path = files.checkpoint
    with _locked(path):
        current = read_checkpoint(files)
        if current is not None:
            if current.seq >= seq:
                return
            first_keyed = min(first_keyed, current.first_keyed)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, orjson.dumps({"seq": seq, "mac": mac, "first_keyed": first_keyed}) + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        _fsync_dir(path.parent)


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
