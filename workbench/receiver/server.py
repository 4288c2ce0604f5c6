"""Running the receiver: the directory, the group-commit writer and the follower around a
uvicorn server. SIGTERM or SIGINT stop it cleanly: uvicorn stops taking requests and answers
those under way, the writer stores what is queued, the follower applies what was stored."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import threading
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import uvicorn

from workbench.services import access
from workbench.services.context import ServiceContext
from workbench.services.payload_crypto import Vaults

from .app import build_app
from .directory import Directory
from .follower import Follower
from .presence import Presence, bound_port
from .writer import GroupWriter

SWITCH_INTERVAL_S = 0.0005


class _Server(uvicorn.Server):
    """uvicorn's server, except that a stop signal ends `serve` normally: uvicorn would raise
    the signal again once it stopped, killing the process before the writer and the follower
    finish (and making a clean stop look like a crash to whatever supervises the receiver)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        originals = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in originals.items():
                signal.signal(sig, handler)


def serve(ctx: ServiceContext, host: str, port: int, vaults: Vaults,
          started: Callable[[Directory], None] = lambda directory: None) -> None:
    """Serve until SIGTERM or SIGINT. `started`: called once the socket listens."""
    access.require(ctx, "ingest")  # the receiver's writes; as the OS user that runs it
    # The writer thread gives up the GIL at every step of a commit (the database works without
    # it) and then waits for the busy event loop to hand it back: up to the switch interval
    # (5 ms by default) each time, which would make a commit of a few rows take milliseconds.
    # Set for as long as this call serves, and put back after: never left flipped for a
    # process that goes on (a test, a TUI that starts a receiver).
    previous_interval = sys.getswitchinterval()
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    try:
        _serve(ctx, host, port, vaults, started)
    finally:
        sys.setswitchinterval(previous_interval)


def _serve(ctx: ServiceContext, host: str, port: int, vaults: Vaults,
           started: Callable[[Directory], None]) -> None:
    directory = Directory(ctx, vaults)
    directory.start()
    # The writer and the follower take turns at the store through this lock: waiting on
    # SQLite's busy handler instead sleeps in steps of up to 100 ms.
    turns = threading.Lock()
    follower = Follower(ctx, vaults, turns)
    follower.start()
    presence = Presence(ctx, turns)

    async def run() -> None:
        writer = GroupWriter(ctx, asyncio.get_running_loop(), follower.stored, turns)
        writer.start()
        config = uvicorn.Config(build_app(directory, writer), host=host, port=port, log_level="warning",
                                access_log=False, lifespan="off", server_header=False, date_header=False)
        server = _Server(config)

        async def announce() -> None:
            while not server.started and not server.should_exit:
                await asyncio.sleep(0.02)
            if server.started:
                started(directory)
                presence.start(host, bound_port(server, port))

        announcing = asyncio.create_task(announce())
        try:
            await server.serve()
        finally:
            announcing.cancel()
            await asyncio.to_thread(writer.stop)

    try:
        _event_loop_runner()(run())
    finally:
        presence.stop()
        follower.stop()
        directory.stop()


def _event_loop_runner() -> Callable[[Coroutine[Any, Any, None]], None]:
    """uvloop where it is installed (a faster event loop; uvicorn's own choice too), else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run
    runner: Callable[[Coroutine[Any, Any, None]], None] = uvloop.run
    return runner
