"""A local notifier endpoint for the alerting tests: a real HTTP server on a free port that
records each JSON body posted to it, and answers as told per path: /ok (204), /fail (500) or
/hang (no answer until the server stops)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class NotifierEndpoint:
    def __init__(self, server: ThreadingHTTPServer) -> None:
        self.server = server
        self.received: list[tuple[str, dict[str, Any]]] = []
        self.released = threading.Event()  # /hang answers once set (the server is stopping)
        self.lock = threading.Lock()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def bodies(self, path: str) -> list[dict[str, Any]]:
        with self.lock:
            return [body for where, body in self.received if where == path]

    def clear(self) -> None:
        with self.lock:
            self.received.clear()


@contextmanager
def notifier_endpoint() -> Iterator[NotifierEndpoint]:
    holder: list[NotifierEndpoint] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            endpoint = holder[0]
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            with endpoint.lock:
                endpoint.received.append((self.path, json.loads(body)))
            if self.path == "/hang":
                endpoint.released.wait(60)
            status = 500 if self.path == "/fail" else 204
            self.send_response(status)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    endpoint = NotifierEndpoint(server)
    holder.append(endpoint)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield endpoint
    finally:
        endpoint.released.set()
        server.shutdown()
        server.server_close()
        thread.join(5)
