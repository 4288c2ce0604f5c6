"""Webhook delivery off the request path: one thread posts each event to the target URL,
signed the Standard Webhooks way, with the chaos in force when the event happened (copies for
duplicate delivery; held and later sent newest first for out-of-order delivery)."""

from __future__ import annotations

import queue
import threading
import time

import httpx

from ..signature import signed_headers
from .state import ProviderState

_STOP = ("", b"")


class WebhookDispatcher:
    def __init__(self, state: ProviderState, secret: str | None) -> None:
        self._state = state
        self._secret = secret
        self._queue: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self._held: list[tuple[str, bytes, int]] = []
        self._held_lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="payroll-sandbox-webhooks", daemon=True)
        self._http = httpx.Client(timeout=5.0)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._queue.put(_STOP)
        self._thread.join(timeout=10)
        self._http.close()

    def enqueue(self, msg_id: str, body: bytes) -> None:
        """Called for every event as it happens (the provider's own order)."""
        chaos = self._state.chaos
        if chaos.webhook_url is None or self._secret is None:
            return
        copies = 1 + chaos.duplicate_webhooks
        if chaos.reorder_webhooks:
            with self._held_lock:
                self._held.append((msg_id, body, copies))
            return
        for _ in range(copies):
            self._queue.put((msg_id, body))

    def flush(self) -> int:
        """Send the held deliveries, newest first; how many events were held."""
        with self._held_lock:
            held, self._held = self._held, []
        for msg_id, body, copies in reversed(held):
            for _ in range(copies):
                self._queue.put((msg_id, body))
        return len(held)

    def held(self) -> int:
        with self._held_lock:
            return len(self._held)

    def _run(self) -> None:
        while True:
            msg_id, body = self._queue.get()
            if (msg_id, body) == _STOP:
                return
            self._deliver(msg_id, body)

    def _deliver(self, msg_id: str, body: bytes) -> None:
        url, secret = self._state.chaos.webhook_url, self._secret
        if url is None or secret is None:
            return
        # A redelivery keeps the message ID and is signed afresh (a new timestamp), as
        # Standard Webhooks senders do.
        headers = {"content-type": "application/json", **signed_headers(secret, msg_id, int(time.time()), body)}
        try:
            status: int | None = self._http.post(url, content=body, headers=headers).status_code
            error = None
        except httpx.HTTPError as exc:
            status, error = None, type(exc).__name__
        self._state.record("webhook.delivered" if status is not None else "webhook.failed",
                           msg_id=msg_id, url=url, status_code=status, error=error)
