"""The receiver's HTTP face: `POST /hooks/{connection}` and `GET /healthz` (Starlette).

Every answer is a short JSON object written here; an unexpected error is answered 500 with
one line and logged, never with a traceback."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from adapters.protocol import SignatureCheck
from workbench.services.captures import Headers
from workbench.services.ingest_prepare import signature_problem
from workbench.services.signatures import UNCHECKED

from .applier import ApplierLink
from .directory import Directory
from .spool import waiting_in
from .writer import GroupWriter, Pending

log = logging.getLogger(__name__)


def _json(status: int, content: dict[str, Any]) -> Response:
    return Response(orjson.dumps(content), status_code=status, media_type="application/json")


class _BodyUnreadable(Exception):
    """The client went away (or sent something the server could not read) mid-body."""


async def _answer(send: Send, status: int, content: dict[str, Any]) -> None:
    """The JSON answer, as Starlette's Response would write it (for the hook, which bypasses it)."""
    body = orjson.dumps(content)
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]})
    await send({"type": "http.response.body", "body": body})


def _headers(raw: list[tuple[bytes, bytes]]) -> tuple[Headers, dict[str, str]]:
    """The headers as stored (an object; `[name, value]` pairs when a name repeats) and in
    lower case for the signature check (ASGI gives names in lower case already)."""
    lowered = {name.decode("latin-1"): value.decode("latin-1") for name, value in raw}
    if len(lowered) == len(raw):
        return lowered, lowered
    return [[name.decode("latin-1"), value.decode("latin-1")] for name, value in raw], lowered


async def _read_limited(receive: Receive, declared: str | None, limit: int) -> bytes | None:
    """The body, or None once it is longer than `limit` (the rest is not read)."""
    if declared is not None and declared.isdigit() and int(declared) > limit:
        return None
    parts: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":  # http.disconnect
            raise _BodyUnreadable
        part = message.get("body", b"")
        size += len(part)
        if size > limit:
            return None
        parts.append(part)
        if not message.get("more_body", False):
            return parts[0] if len(parts) == 1 else b"".join(parts)


HOOKS = "/hooks/"


def build_app(directory: Directory, writer: GroupWriter, applier: ApplierLink) -> ASGIApp:
    """`POST /hooks/{connection}` straight on ASGI: it is the one hot path, and Starlette's
    request, response and middleware objects cost about a fifth of the receiver's time per
    delivery (measured: docs/benchmarks.md). Everything else (health, 404s, 405s) is Starlette."""

    async def hook(name: str, scope: Scope, receive: Receive) -> tuple[int, dict[str, Any]]:
        """The answer to a POST to a hook (sent by `app`, once, whatever happens here)."""
        entry = directory.get(name)
        if entry is None:
            return 404, {"error": f"no connection named {name[:80]!r} here: nothing was stored"}
        headers, lowered = _headers(scope["headers"])
        try:
            body = await _read_limited(receive, lowered.get("content-length"), entry.max_body_bytes)
        except Exception:  # the client went away mid-body: nothing to answer, nothing kept
            return 400, {"error": "the body could not be read"}
        received = writer.now()
        refusal: str | None = None
        check: SignatureCheck = UNCHECKED
        status, answer = 200, "stored"
        if body is None:
            body, refusal = b"", f"body over the {entry.max_body_bytes:,}-byte limit: not kept"
            status = 413
        elif entry.unavailable is not None:
            refusal, status = f"not accepted: {entry.unavailable}", 503
        elif entry.checker is not None:
            check = entry.checker.check(lowered, body, received)
            if check.verdict == "failed":
                status = 401 if (check.reason or "").startswith("no ") and "header" in (check.reason or "") else 400
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        writer.submit(Pending(entry, received, headers, body, check, refusal, future))
        try:
            delivery_id = await future
        except Exception:
            return 503, {"error": "the delivery could not be stored: send it again"}
        content: dict[str, Any] = {"delivery": delivery_id, "signature": check.verdict}
        if status == 200:
            try:
                orjson.loads(body)
            except orjson.JSONDecodeError:
                status, answer = 400, "stored, but the body is not JSON: it will not be applied"
            else:
                if entry.info.paused:
                    status, answer = 202, "stored and held: the connection is paused"
        elif refusal is not None:
            answer = refusal
        else:
            answer = f"rejected: {signature_problem(check).message}"
        content["result"] = answer
        return status, content

    async def healthz(request: Request) -> Response:
        """Ready, and how far the applying is behind: `spooled` deliveries received on this
        machine and not yet in the store (in the spools of its receivers on the store, and of
        killed ones being taken over), the oldest of them received `behind_s` seconds ago;
        `stuck` ones the store refused (kept, see the log)."""
        ready = writer.alive and applier.alive() and directory.refreshed.is_set()
        try:
            spooled, stuck, oldest = await asyncio.to_thread(waiting_in, writer.spool.parent)
            behind_s = 0.0 if oldest is None else round(max(0.0, (datetime.now(UTC) - oldest).total_seconds()), 3)
        except Exception as exc:
            log.warning("receiver: could not read the spool: %s", type(exc).__name__)
            spooled = stuck = -1
            behind_s = -1.0
        return _json(200 if ready else 503, {"ready": ready, "connections": len(directory.entries),
                                             "spooled": spooled, "stuck": stuck, "behind_s": behind_s})

    async def server_error(request: Request, exc: Exception) -> Response:
        log.error("receiver: %s on %s", type(exc).__name__, request.url.path[:100])
        return _json(500, {"error": "internal error: the request was not handled"})

    async def posted(request: Request) -> Response:  # never called: `app` takes every POST to this path
        raise AssertionError("a POST to a hook reached Starlette")

    # The hook's route stays declared so that other methods on it get Starlette's 405.
    rest = Starlette(routes=[Route("/hooks/{connection}", posted, methods=["POST"]),
                             Route("/healthz", healthz, methods=["GET"])],
                     exception_handlers={500: server_error})

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] == "http" and scope["method"] == "POST" and path.startswith(HOOKS) \
                and len(path) > len(HOOKS) and "/" not in path[len(HOOKS):]:
            try:
                status, content = await hook(path[len(HOOKS):], scope, receive)
            except Exception as exc:
                log.error("receiver: %s on %s", type(exc).__name__, path[:100])
                status, content = 500, {"error": "internal error: the request was not handled"}
            try:
                await _answer(send, status, content)
            except Exception as exc:  # the connection broke under the answer: one line, no traceback
                log.warning("receiver: could not answer on %s: %s", path[:100], type(exc).__name__)
            return
        await rest(scope, receive, send)

    return app
