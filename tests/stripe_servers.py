"""Real servers the Stripe client is tested against: localstripe in a subprocess, a proxy that
forwards a request and then loses its response, and a server answering any status asked for."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

API_KEY = "sk_test_workbench_4eC39HqLyjWDarjtT1zdp7dc"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="session")
def localstripe_server() -> Iterator[str]:
    """localstripe (the PyPI package, from the dev extras) on a free port, for the session."""
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "localstripe", "--port", str(port), "--from-scratch"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:  # a fresh interpreter importing aiohttp: poll until it answers
            if process.poll() is not None:
                pytest.fail(f"localstripe exited with status {process.returncode} before answering")
            try:
                httpx.get(f"{url}/v1/events", auth=(API_KEY, ""), timeout=1).raise_for_status()
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    pytest.fail("localstripe did not answer within 30 s")
                time.sleep(0.05)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def localstripe(localstripe_server: str) -> str:
    """The session's localstripe, emptied for this test."""
    httpx.delete(f"{localstripe_server}/_config/data", timeout=5).raise_for_status()
    return localstripe_server


def card_payment_method(url: str) -> str:
    """A test card payment method on localstripe (set-up for a payment intent, not under test)."""
    response = httpx.post(f"{url}/v1/payment_methods", auth=(API_KEY, ""), timeout=5, data={
        "type": "card", "card[number]": "4242424242424242", "card[exp_month]": "12",
        "card[exp_year]": "2034", "card[cvc]": "123"})
    response.raise_for_status()
    return str(response.json()["id"])


def payment_intents(url: str) -> list[dict[str, Any]]:
    """Every payment intent on localstripe (its list is oldest first)."""
    found: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": 100}
    while True:
        page = httpx.get(f"{url}/v1/payment_intents", params=params, auth=(API_KEY, ""), timeout=5).json()
        found.extend(page["data"])
        if not page["has_more"]:
            return found
        params["starting_after"] = page["data"][-1]["id"]


# --------------------------------------------------------------------------------------------
# A proxy that loses responses: the request reaches the server (which acts), the answer never
# comes back. `lose(method, path, before=False)` arms it once; before=True drops the request
# instead, unsent (the server does nothing).
# --------------------------------------------------------------------------------------------


@dataclass
class LossyProxy:
    upstream: str
    url: str = ""
    forwarded: list[tuple[str, str]] = field(default_factory=list)
    _armed: list[tuple[str, str, bool]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def lose(self, method: str, path: str, *, before: bool = False) -> None:
        with self._lock:
            self._armed.append((method, path, before))

    def take(self, method: str, path: str) -> bool | None:
        """Whether to drop this request before (True) or after (False) forwarding; None: pass."""
        with self._lock:
            for i, (m, p, before) in enumerate(self._armed):
                if (m, p) == (method, path):
                    del self._armed[i]
                    return before
        return None


def _proxy_handler(proxy: LossyProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _forward(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            path = self.path.split("?", 1)[0]
            drop = proxy.take(self.command, path)
            if drop is True:
                self.close_connection = True
                return
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length", "connection")}
            answer = httpx.request(self.command, proxy.upstream + self.path, content=body, headers=headers, timeout=10)
            proxy.forwarded.append((self.command, path))
            if drop is False:  # the server has acted: lose its answer
                self.close_connection = True
                return
            self.send_response(answer.status_code)
            for key, value in answer.headers.items():
                if key.lower() not in ("content-length", "transfer-encoding", "connection", "content-encoding"):
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(answer.content)))
            self.end_headers()
            self.wfile.write(answer.content)

        do_GET = do_POST = do_DELETE = _forward

        def log_message(self, *args: object) -> None:
            pass

    return Handler


@pytest.fixture
def lossy_proxy(localstripe: str) -> Iterator[LossyProxy]:
    proxy = LossyProxy(localstripe)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _proxy_handler(proxy))
    proxy.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield proxy
    server.shutdown()
    server.server_close()


# --------------------------------------------------------------------------------------------
# A server that answers what the base URL asks for: <url>/status/<code> with a Stripe-like
# error body, <url>/raw/<name> with a fixed odd answer, <url>/hang/x only once released.
# --------------------------------------------------------------------------------------------

RAW_ANSWERS: dict[str, tuple[int, bytes, dict[str, str]]] = {
    "html": (200, b"<html>maintenance</html>", {"Content-Type": "text/html"}),
    "no-object": (200, b'{"id": "pi_1"}', {"Content-Type": "application/json"}),
    "list": (200, b'[1, 2]', {"Content-Type": "application/json"}),
    "redirect": (302, b"", {"Location": "https://example.invalid/"}),
    "bad-events": (200, b'{"object": "list", "data": "nope", "has_more": false}', {"Content-Type": "application/json"}),
}


@dataclass
class StatusServer:
    url: str
    release: threading.Event
    seen_headers: list[dict[str, str]]


def _status_handler(release: threading.Event, seen: list[dict[str, str]],
                    error_body: Callable[[int, dict[str, str]], bytes]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            headers = dict(self.headers.items())
            seen.append(headers)
            # The client's base URL picks the answer: <url>/<kind>/<arg>, then Stripe's path.
            _, kind, arg, *_ = self.path.split("?", 1)[0].split("/") + ["", ""]
            extra: dict[str, str] = {"Content-Type": "application/json"}
            if kind == "hang":
                release.wait(10)
                status, body = 200, b'{"object": "payment_intent", "id": "pi_late"}'
            elif kind == "raw":
                status, body, extra = RAW_ANSWERS[arg]
            else:  # status/<code>
                status = int(arg)
                body = error_body(status, headers)
                if status == 429:
                    extra["Retry-After"] = "7"
            self.send_response(status)
            for key, value in extra.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = _answer

        def log_message(self, *args: object) -> None:
            pass

    return Handler


@pytest.fixture(scope="module")
def status_server() -> Iterator[StatusServer]:
    import orjson

    def error_body(status: int, headers: dict[str, str]) -> bytes:
        # A careless server echoing the credentials it was sent: the client must not pass them on.
        return orjson.dumps({"error": {"type": "invalid_request_error",
                                       "message": f"status {status} for {headers.get('Authorization', '')}"}})

    release, seen = threading.Event(), list[dict[str, str]]()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _status_handler(release, seen, error_body))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield StatusServer(f"http://127.0.0.1:{server.server_address[1]}", release, seen)
    release.set()
    server.shutdown()
    server.server_close()


# --------------------------------------------------------------------------------------------
# Stripe's own event list, as its API reference describes it (localstripe lists the other way):
# newest first; `starting_after=X` the next older page, `ending_before=X` the page of events
# just newer than X (still newest first); `has_more` in the direction asked.
# --------------------------------------------------------------------------------------------


@dataclass
class NewestFirstEvents:
    url: str
    events: list[dict[str, Any]]  # newest first, as Stripe keeps them

    def add(self, count: int) -> list[str]:
        made: list[dict[str, Any]] = [{"id": f"evt_{len(self.events) + i:04d}", "object": "event", "type": "payment_intent.created",
                 "created": 1_700_000_000, "data": {"object": {"id": f"pi_{len(self.events) + i}"}}}
                for i in range(count)]
        self.events[:0] = reversed(made)
        return [event["id"] for event in made]


def _newest_first_handler(store: NewestFirstEvents) -> type[BaseHTTPRequestHandler]:
    from urllib.parse import parse_qs, urlsplit

    import orjson

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # http.server's naming
            query = {key: values[0] for key, values in parse_qs(urlsplit(self.path).query).items()}
            limit, ids = int(query.get("limit", "10")), [event["id"] for event in store.events]
            if "ending_before" in query:
                newer = store.events[:ids.index(query["ending_before"])]
                data, has_more = newer[-limit:], len(newer) > limit
            else:
                start = ids.index(query["starting_after"]) + 1 if "starting_after" in query else 0
                older = [event for event in store.events[start:]  # Stripe's created[lt] filter too
                         if "created[lt]" not in query or event["created"] < int(query["created[lt]"])]
                data, has_more = older[:limit], len(older) > limit
            body = orjson.dumps({"object": "list", "url": "/v1/events", "data": data, "has_more": has_more})
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    return Handler


@pytest.fixture
def newest_first_events() -> Iterator[NewestFirstEvents]:
    store = NewestFirstEvents("", [])
    server = ThreadingHTTPServer(("127.0.0.1", 0), _newest_first_handler(store))
    store.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield store
    server.shutdown()
    server.server_close()
