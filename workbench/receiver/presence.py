"""The receiver's presence in the store (services/processes): announced once the socket
listens, beaten every BEAT_S, marked stopped on a clean stop. On a thread of its own, so the
request path never waits for it; a failure is one log line, never the receiver's end (the
next beat tries again, announcing first if the announcement itself failed)."""

from __future__ import annotations

import logging
import socket
import threading
from typing import Any

from workbench.services import processes
from workbench.services.context import ServiceContext
from workbench.services.ingest_run import one_line

log = logging.getLogger(__name__)

BEAT_S = 5.0


def base_url(host: str, port: int) -> str:
    """The address senders use: a wildcard bind is reached through the machine's name."""
    if host in ("", "0.0.0.0", "::"):
        host = socket.gethostname()
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def bound_port(server: Any, default: int) -> int:
    """The port a started uvicorn server listens on (`--port 0` picks a free one)."""
    for listener in getattr(server, "servers", None) or ():
        for sock in listener.sockets:
            port: int = sock.getsockname()[1]
            return port
    return default


class Presence:
    """Announce, beat, stop."""

    def __init__(self, ctx: ServiceContext) -> None:
        self._ctx = ctx
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._address = ""
        self.process_id: str | None = None

    def start(self, host: str, port: int) -> None:
        self._address = base_url(host, port)
        self._thread = threading.Thread(target=self._run, name="receiver-presence", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            try:
                if self.process_id is None:
                    self.process_id = processes.announce(self._ctx, "receiver", self._address)
                else:
                    processes.beat(self._ctx, self.process_id)
            except Exception as exc:  # the store away for a moment: the next beat tries again
                log.warning("receiver: could not record its presence: %s", one_line(exc))
            if self._stop.wait(BEAT_S):
                return

    def stop(self) -> None:
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join(timeout=5)
        if self.process_id is None:
            return
        try:
            processes.stopped(self._ctx, self.process_id)
        except Exception as exc:
            log.warning("receiver: could not record that it stopped: %s", one_line(exc))
