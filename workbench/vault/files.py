"""Where vault files live, and how one is replaced: a temporary file in the same directory,
fsync, rename, fsync of the directory, all under an exclusive lock file, so a reader sees the
old file or the new one and two writers take turns (or the second is told the vault is busy)."""

from __future__ import annotations

import errno
import fcntl
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from platformdirs import user_data_dir

from .errors import VaultBusy

VAULT_DIR_ENV = "WORKBENCH_VAULT_DIR"
ENVIRONMENTS = ("sandbox", "live")
LOCK_TIMEOUT_S = 3.0
_POLL_S = 0.05


def vault_dir() -> Path:
    """WORKBENCH_VAULT_DIR, else the platform data directory (where the embedded store lives)."""
    override = os.environ.get(VAULT_DIR_ENV, "").strip()
    return Path(override) if override else Path(user_data_dir("integration-workbench", appauthor=False))


def vault_path(environment: str, directory: Path | None = None) -> Path:
    return (directory or vault_dir()) / f"{environment}.vault"


def ensure_private_dir(directory: Path) -> None:
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(directory, 0o700)  # an existing directory too: the vault's neighbours are nobody else's


@contextmanager
def exclusive(path: Path, timeout: float = LOCK_TIMEOUT_S) -> Iterator[None]:
    """Hold `<vault>.lock` exclusively; VaultBusy after `timeout` seconds of waiting."""
    fd = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES) or time.monotonic() >= deadline:
                    if exc.errno in (errno.EAGAIN, errno.EACCES):
                        raise VaultBusy(f"vault busy: another process is writing {path.name}; try again") from None
                    raise
                time.sleep(_POLL_S)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def replace_atomically(path: Path, data: bytes) -> None:
    """Write `data` as `path` so that no reader ever sees a partial file. Call it holding the
    lock: temporary files left by a writer killed half-way are then nobody's, and go."""
    for stale in path.parent.glob(f".{path.name}.*.tmp"):
        stale.unlink(missing_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")  # mode 0600
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # the rename itself survives a power cut
    finally:
        os.close(dir_fd)
