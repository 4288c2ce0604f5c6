"""A throwaway PostgreSQL cluster for the test suite.

``PostgresCluster`` runs initdb + pg_ctl in a temporary directory, listening only on
127.0.0.1 on a free port, with durability switched off for speed.  Every failure is
reported as ``PostgresUnavailable`` with a one-line reason, so the caller can decide
whether to skip or fail.

PostgreSQL refuses to run as root: when we are root, initdb/pg_ctl/postgres run as the
``postgres`` system user (or ``nobody``) and the temporary directory is owned by it.

pg_ctl detaches the server into its own session, so it would outlive a killed test
process.  A small watchdog process (see ``_WATCHDOG``) waits for our end of a pipe to
close -- which also happens when we are SIGKILLed -- and then kills the server and
removes the directory.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any

__all__ = ["PostgresCluster", "PostgresUnavailable", "find_bin_dir"]

HOST = "127.0.0.1"
SUPERUSER = "postgres"  # fixed by initdb -U, independent of the OS user
_REQUIRED_BINARIES = ("initdb", "pg_ctl", "postgres")

# Settings for a disposable cluster: no durability, enough connections for pools.
_SERVER_SETTINGS = {
    "listen_addresses": HOST,
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "200",
}

# Runs detached from the test process; blocks on stdin until the test process closes it
# (stop()) or dies, then makes sure the server is gone and the directory removed.
_WATCHDOG = r"""
import os, shutil, signal, sys, time
data_dir, root = sys.argv[1], sys.argv[2]
pid_file = os.path.join(data_dir, "postmaster.pid")
sys.stdin.buffer.read()
try:
    with open(pid_file) as f:
        pid = int(f.readline())
except (OSError, ValueError):
    pid = 0

def alive():
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return os.path.exists(pid_file)  # a clean exit removes it, even if not yet reaped

# SIGQUIT = immediate shutdown of postmaster and backends; SIGKILL if that hangs.
for sig in (signal.SIGQUIT, signal.SIGKILL):
    if pid <= 0 or not alive():
        break
    os.kill(pid, sig)
    deadline = time.monotonic() + 10
    while alive() and time.monotonic() < deadline:
        time.sleep(0.1)
shutil.rmtree(root, ignore_errors=True)
"""


class PostgresUnavailable(RuntimeError):
    """The throwaway cluster cannot be provided; ``reason`` is a one-line explanation."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _one_line(text: str, limit: int = 400) -> str:
    """Collapse (the tail of) tool output into a single line for error messages."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    # Prefer the error lines themselves over the HINT/LOG noise around them.
    errors = [line for line in lines if any(tag in line for tag in ("FATAL", "PANIC", "ERROR", "error:"))]
    joined = " | ".join(errors[-3:] or lines[-5:])
    return joined[-limit:] if joined else "(no output)"


def _has_binaries(bin_dir: Path) -> bool:
    return all(os.access(bin_dir / name, os.X_OK) for name in _REQUIRED_BINARIES)


def find_bin_dir() -> Path:
    """PG_BIN, else the newest /usr/lib/postgresql/*/bin, else ``pg_config --bindir``."""
    explicit = os.environ.get("PG_BIN")
    if explicit:  # an explicit choice is honoured or reported, never silently ignored
        if not _has_binaries(Path(explicit)):
            raise PostgresUnavailable(f"PG_BIN={explicit} does not contain {', '.join(_REQUIRED_BINARIES)}")
        return Path(explicit)

    def version(path: str) -> tuple[int, ...]:
        name = Path(path).parent.name
        return tuple(int(p) for p in name.split(".") if p.isdigit())

    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version, reverse=True):
        if _has_binaries(Path(candidate)):
            return Path(candidate)

    pg_config = shutil.which("pg_config")
    if pg_config:
        try:
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, timeout=10)
            if out.returncode == 0 and _has_binaries(Path(out.stdout.strip())):
                return Path(out.stdout.strip())
        except (OSError, subprocess.SubprocessError):
            pass
    raise PostgresUnavailable(
        "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found: "
        "set PG_BIN or install the postgresql package"
    )


def _free_port() -> int:
    # Racy by nature (the port is released before postgres binds it); start() retries.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _conf_value(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


class PostgresCluster:
    """A disposable PostgreSQL cluster; use ``with PostgresCluster() as pg:`` or start()/stop()."""

    def __init__(self, bin_dir: Path | None = None, timeout: float = 30.0) -> None:
        self.bin_dir = bin_dir
        self.timeout = timeout
        self.user = SUPERUSER
        self.port: int | None = None
        self.root: Path | None = None
        self._watchdog: subprocess.Popen[bytes] | None = None
        # When root, drop to an unprivileged account: (uid, gid) or None.
        self._run_as: tuple[int, int] | None = None

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> PostgresCluster:
        if self.root is not None:
            return self
        self.bin_dir = self.bin_dir or find_bin_dir()
        self._run_as = self._unprivileged_account()
        try:
            self._make_root()
            self._initdb()
            self._start_server()
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop the server (immediate mode) and remove the directory; idempotent."""
        root = self.root
        if root is not None:
            if (root / "data" / "postmaster.pid").exists():
                try:
                    self._run(["pg_ctl", "stop", "-D", str(root / "data"), "-m", "immediate", "-w", "-t", "30"])
                except (OSError, subprocess.SubprocessError):
                    pass  # the watchdog below kills the postmaster by pid
            shutil.rmtree(root, ignore_errors=True)
        self.root = self.port = None
        watchdog, self._watchdog = self._watchdog, None
        if watchdog is not None:
            assert watchdog.stdin is not None
            watchdog.stdin.close()  # EOF: watchdog checks for leftovers and exits
            try:
                watchdog.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass

    def __enter__(self) -> PostgresCluster:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- databases ---------------------------------------------------------

    def url(self, dbname: str) -> str:
        """SQLAlchemy URL (psycopg 3 driver) for ``dbname`` in this cluster."""
        if self.port is None:
            raise PostgresUnavailable("cluster is not running")
        return f"postgresql+psycopg://{self.user}@{HOST}:{self.port}/{dbname}"

    def create_database(self, name: str, template: str | None = None) -> None:
        from psycopg import sql

        stmt = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template is not None:
            stmt = sql.SQL("{} TEMPLATE {}").format(stmt, sql.Identifier(template))
        self._admin_execute(stmt)

    def drop_database(self, name: str) -> None:
        """Drop ``name``, terminating any connections still open to it (PG >= 13)."""
        from psycopg import sql

        self._admin_execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    def sessions_on(self, name: str) -> int:
        """How many sessions (other than ours, which is on `postgres`) are connected to ``name``."""
        with self.connect("postgres") as conn:
            return int(conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (name,)).fetchone()[0])

    def connect(self, dbname: str = "postgres", **kwargs: Any) -> Any:
        """A raw psycopg connection (autocommit) for admin work."""
        if self.port is None:
            raise PostgresUnavailable("cluster is not running")
        try:
            import psycopg
        except ImportError as exc:
            raise PostgresUnavailable(f"psycopg is not installed ({exc})") from exc
        kwargs.setdefault("autocommit", True)
        kwargs.setdefault("connect_timeout", 10)
        return psycopg.connect(host=HOST, port=self.port, user=self.user, dbname=dbname, **kwargs)

    def _admin_execute(self, stmt: Any) -> None:
        with self.connect("postgres") as conn:
            conn.execute(stmt)

    # -- internals ---------------------------------------------------------

    @staticmethod
    def _unprivileged_account() -> tuple[int, int] | None:
        if os.geteuid() != 0:
            return None
        for name in ("postgres", "nobody"):
            try:
                entry = pwd.getpwnam(name)
            except KeyError:
                continue
            return entry.pw_uid, entry.pw_gid
        raise PostgresUnavailable("running as root and neither a 'postgres' nor a 'nobody' user exists")

    def _base_dir(self) -> str:
        """TMPDIR, unless the unprivileged server user cannot traverse it (then /tmp)."""
        base = tempfile.gettempdir()
        if self._run_as is None:
            return base
        for part in [Path(base), *Path(base).parents]:
            if not os.stat(part).st_mode & stat.S_IXOTH:
                return "/tmp"
        return base

    def _make_root(self) -> None:
        # Short prefix: the unix socket path must stay under ~107 bytes.
        self.root = Path(tempfile.mkdtemp(prefix="wb-pg-", dir=self._base_dir()))
        if self._run_as is not None:
            os.chown(self.root, *self._run_as)
        self._watchdog = subprocess.Popen(
            [sys.executable, "-c", _WATCHDOG, str(self.root / "data"), str(self.root)],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # survive a Ctrl-C / kill aimed at our process group
        )

    def _env(self) -> dict[str, str]:
        # Drop PG* variables (PGDATA, PGPORT, PGHOST, ...) that would redirect the tools.
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C"
        return env

    def _run(self, args: list[str], timeout: float | None = None) -> subprocess.CompletedProcess[str]:
        assert self.bin_dir is not None and self.root is not None
        extra: dict[str, Any] = {}
        if self._run_as is not None:
            extra = {"user": self._run_as[0], "group": self._run_as[1], "extra_groups": []}
        return subprocess.run(
            [str(self.bin_dir / args[0]), *args[1:]],
            cwd=self.root,  # postgres tools fail if they cannot access the cwd (e.g. /root)
            env=self._env(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout or self.timeout + 30,
            **extra,
        )

    def _initdb(self) -> None:
        assert self.root is not None
        data = self.root / "data"
        try:
            result = self._run(
                ["initdb", "-D", str(data), "-U", SUPERUSER, "--auth=trust",
                 "--locale=C", "--encoding=UTF8", "-N"],
                timeout=120,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            raise PostgresUnavailable(f"initdb could not run: {exc}") from exc
        if result.returncode != 0:
            raise PostgresUnavailable(f"initdb failed (exit {result.returncode}): {_one_line(result.stderr + result.stdout)}")
        settings = {**_SERVER_SETTINGS, "unix_socket_directories": str(self.root)}
        with open(data / "postgresql.conf", "a", encoding="utf-8") as conf:
            conf.write("\n# integration-workbench test cluster\n")
            conf.writelines(f"{key} = {_conf_value(value)}\n" for key, value in settings.items())

    def _start_server(self) -> None:
        assert self.root is not None
        data, log = self.root / "data", self.root / "server.log"
        detail = ""
        for _attempt in range(3):
            self.port = _free_port()
            try:
                # -l: the server must not inherit our stdout/stderr, or anything piping
                # pytest's output (CI, `| tee`) would wait for the server to exit.
                result = self._run(
                    ["pg_ctl", "start", "-D", str(data), "-l", str(log),
                     "-w", "-t", str(int(self.timeout)), "-o", f"-p {self.port}"],
                )
            except (OSError, subprocess.SubprocessError) as exc:
                raise PostgresUnavailable(f"pg_ctl start could not run: {exc}") from exc
            if result.returncode == 0:
                return
            detail = (log.read_text(errors="replace") if log.exists() else "") or result.stderr + result.stdout
            if "could not bind" not in detail and "already in use" not in detail:
                break
            # Lost the race for the port: stop whatever started, retry on another one.
            self._run(["pg_ctl", "stop", "-D", str(data), "-m", "immediate"])
            log.unlink(missing_ok=True)
        raise PostgresUnavailable(f"server did not start: {_one_line(detail)}")

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                self._admin_execute("SELECT 1")
                return
            except PostgresUnavailable:
                raise
            except Exception as exc:  # psycopg.OperationalError while starting up
                if time.monotonic() > deadline:
                    raise PostgresUnavailable(
                        f"server did not accept connections on {HOST}:{self.port} "
                        f"within {self.timeout:.0f}s: {_one_line(str(exc))}"
                    ) from exc
                time.sleep(0.1)
