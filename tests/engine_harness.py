"""A real `workbench engine` in a subprocess against a test's store (SQLite file or PostgreSQL
database), its vault unlocked with WORKBENCH_VAULT_PASSPHRASE; the vault directory and audit
key come from the test's environment (tests/conftest.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.engine_support import PASS
from workbench.engine.daemon import Engine

WORKBENCH = str(Path(sys.executable).parent / "workbench")


def wait_until(condition: Callable[[], object], timeout_s: float = 20.0, step_s: float = 0.05) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(step_s)
    raise AssertionError(f"not within {timeout_s} s: {getattr(condition, '__name__', condition)}")


def env_for(db_url: str) -> dict[str, str]:
    env = {**os.environ, "WORKBENCH_DB": db_url, "WORKBENCH_VAULT_PASSPHRASE": PASS, "PYTHONUNBUFFERED": "1"}
    env.pop("WORKBENCH_DEBUG", None)
    return env


def cli(db_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([WORKBENCH, *args], env=env_for(db_url), capture_output=True, text=True, timeout=60)


# `workbench engine ARGS` as the executable runs it, once a line comes on stdin: the imports
# (most of a start's second) are done by then.
HELD = ("import sys; from workbench.cli.main import main; import workbench.cli.engine_commands, "
        "workbench.engine.daemon, workbench.services.reconcile; sys.stdin.readline(); sys.argv[0] = 'workbench'; "
        "main()")


class EngineProcess:
    """`workbench engine ARGS` running; its stderr collected (the start line, the log).
    `held`: started but held back before it touches the store, until `go()` (a spare, warmed
    up while another engine runs, to take over the moment that one is killed)."""

    def __init__(self, db_url: str, *args: str, held: bool = False) -> None:
        command = [sys.executable, "-c", HELD, "engine", *args] if held else [WORKBENCH, "engine", *args]
        self.process = subprocess.Popen(command, env=env_for(db_url), stdin=subprocess.PIPE if held else None,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line.rstrip("\n"))

    @property
    def log(self) -> str:
        return "\n".join(self.lines)

    def go(self) -> None:
        """A held engine starts (it touches the store from now on)."""
        assert self.process.stdin is not None
        self.process.stdin.write("\n")
        self.process.stdin.close()

    def wait_started(self, timeout_s: float = 30.0) -> str:
        """The line saying it runs (active or standing by)."""
        def started() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"the engine exited with {self.process.returncode}:\n{self.log}")
            return any(" running on " in line for line in self.lines)
        wait_until(started, timeout_s)
        return next(line for line in self.lines if " running on " in line)

    def terminate(self, timeout_s: float = 20.0) -> int:
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout_s)
        self._reader.join(5)
        return code

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(10)

    def close(self) -> None:
        if self.process.poll() is None:
            self.kill()


class ListenProcess:
    """`workbench listen` (the webhook receiver) on a free port beside the engine, on the same
    store and vaults; started at once, ready (`wait_ready`) once it answers /healthz, so a test
    can do other work while it starts."""

    def __init__(self, db_url: str, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.output = tempfile.TemporaryFile()  # a file, not a pipe: nobody has to keep reading it
        self.process = subprocess.Popen([WORKBENCH, "listen", "--port", str(port)], env=env_for(db_url),
                                        stdout=self.output, stderr=subprocess.STDOUT)

    def wait_ready(self) -> None:
        def ready() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"the receiver exited with {self.process.returncode}: {self.log}")
            try:
                return httpx.get(f"{self.base}/healthz", timeout=1).status_code == 200
            except httpx.TransportError:
                return False
        wait_until(ready, 30)

    @property
    def log(self) -> str:
        self.output.seek(0)
        return self.output.read().decode(errors="replace")

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.output.close()


class EngineThread:
    """The engine in this process, on a thread (no signal handlers touched); `active`: wait
    until it works (False: until it runs at all, e.g. standing by on SQLite)."""

    def __init__(self, engine: Engine, active: bool = True) -> None:
        self.engine = engine
        self.thread = threading.Thread(target=engine.run, daemon=True)
        self.thread.start()
        wait_until(lambda: engine.process_id != "" and (engine.active or not active))

    def stop(self) -> None:
        self.engine.stop()
        self.thread.join(20)
        assert not self.thread.is_alive()
