"""Running the receiver: the directory, the group-commit writer (with its spool writer) and
the applier around a uvicorn server. SIGTERM or SIGINT stop it cleanly: uvicorn stops taking
requests and answers those under way, the writer spools what is queued, the applier moves and
applies everything spooled, and the spool (then empty) is removed."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import uvicorn

from workbench.services import access
from workbench.services.context import ServiceContext
from workbench.services.payload_crypto import Vaults

from .app import build_app
from .applier import ApplierLink
from .directory import Directory
from .presence import Presence, bound_port
from .spool import SpoolClaim, spool_dir, waiting
from .writer import GroupWriter


class _Server(uvicorn.Server):
    """uvicorn's server, except that a stop signal ends `serve` normally: uvicorn would raise
    the signal again once it stopped, killing the process before the writer and the applier
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
    _serve(ctx, host, port, vaults, started)


def _serve(ctx: ServiceContext, host: str, port: int, vaults: Vaults,
           started: Callable[[Directory], None]) -> None:
    directory = Directory(ctx, vaults)
    directory.start()
    presence = Presence(ctx)
    claim = SpoolClaim.new(spool_dir(ctx.engine.url.render_as_string(hide_password=False)))
    # The applier tells the spool writer what it moved, for the writer to delete (mover.py).
    # Both ends stay open here: a spool writer started again reads on from the same pipe.
    moved_read, moved_write = os.pipe()
    applier = ApplierLink(ctx, vaults, claim.spool, hand_off=moved_write)

    async def run() -> None:
        writer = GroupWriter(ctx, claim.spool, moved=moved_read)
        # Both children at once (each takes a second or so to start); the applier also takes
        # over what killed receivers left.
        await asyncio.gather(writer.start(), asyncio.to_thread(applier.start))
        config = uvicorn.Config(build_app(directory, writer, applier), host=host, port=port, log_level="warning",
                                access_log=False, lifespan="off", server_header=False, date_header=False,
                                proxy_headers=False)
        server = _Server(config)

        async def announce() -> None:
            while not server.started and not server.should_exit:
                await asyncio.sleep(0.02)
            if server.started:
                started(directory)
                presence.start(host, bound_port(server, port))

        announcing = asyncio.create_task(announce())
        watching = asyncio.create_task(applier.keep_running())
        try:
            await server.serve()
        finally:
            announcing.cancel()
            watching.cancel()
            await writer.stop()

    try:
        _event_loop_runner()(run())
    finally:
        applier.stop()  # moves what the spool holds first
        claim.release(remove=waiting(claim.spool) == (0, 0))
        presence.stop()
        directory.stop()
        os.close(moved_read)
        os.close(moved_write)


def _event_loop_runner() -> Callable[[Coroutine[Any, Any, None]], None]:
    """uvloop where it is installed (a faster event loop; uvicorn's own choice too), else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run
    runner: Callable[[Coroutine[Any, Any, None]], None] = uvloop.run
    return runner
