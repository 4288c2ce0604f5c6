"""Running the sandbox: bind first (so a taken port is one clear error, and port 0 picks a free
one), then serve with uvicorn until SIGTERM or SIGINT (uvicorn's own graceful shutdown)."""

from __future__ import annotations

import signal
import socket
from dataclasses import dataclass

import uvicorn
from starlette.applications import Starlette

from .app import build_app
from .chaos import Chaos
from .state import ProviderState
from .webhooks import WebhookDispatcher


@dataclass(frozen=True)
class SandboxConfig:
    api_key: str = "sk_sandbox_payroll"
    read_only_key: str | None = "rk_sandbox_payroll"
    webhook_secret: str | None = None  # whsec_ + base64; needed to deliver webhooks
    chaos: Chaos = Chaos()


def make_app(config: SandboxConfig) -> tuple[Starlette, ProviderState]:
    state = ProviderState(config.chaos)
    dispatcher = WebhookDispatcher(state, config.webhook_secret)
    state.on_event = dispatcher.enqueue
    return build_app(state, dispatcher, api_key=config.api_key, read_only_key=config.read_only_key), state


def bind(host: str, port: int) -> socket.socket:
    """A listening socket; OSError (port taken, address not ours) for the caller to explain."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    return sock


def server_for(app: Starlette) -> uvicorn.Server:
    # A request held by the timeout chaos must not hold up shutdown for its whole hang.
    config = uvicorn.Config(app, log_level="warning", access_log=False, timeout_graceful_shutdown=1,
                            lifespan="on")
    return uvicorn.Server(config)


def serve(config: SandboxConfig, sock: socket.socket) -> None:
    """Serve until SIGTERM or SIGINT, then return: a stop asked for is a clean exit (uvicorn
    re-raises the signal after its graceful shutdown, to the handlers it found: these)."""
    app, _ = make_app(config)
    stopped: list[int] = []
    previous = {sig: signal.signal(sig, lambda number, _frame: stopped.append(number))
                for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        server_for(app).run(sockets=[sock])
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
