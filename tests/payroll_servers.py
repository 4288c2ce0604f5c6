"""The payroll chaos sandbox on a free port, for a test module, and its admin calls."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from adapters.payroll.sandbox import SandboxConfig, bind
from adapters.payroll.sandbox.server import make_app, server_for

PAYROLL_KEY = "sk_test_payroll_reconcile"
RUN = {"employer": "acme", "pay_date": "2026-12-01", "amount": 250_000, "currency": "eur"}


@pytest.fixture(scope="module")
def payroll_sandbox() -> Iterator[str]:
    sock = bind("127.0.0.1", 0)
    app, _ = make_app(SandboxConfig(api_key=PAYROLL_KEY, read_only_key=None))
    server = server_for(app)
    # The socket listens already: requests queue until the server takes them, no wait needed.
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    server.should_exit = True
    thread.join(timeout=10)


def submit_run(base: str, reference: str, **changes: Any) -> dict[str, Any]:
    response = httpx.post(f"{base}/v1/payroll_runs", json={**RUN, "reference": reference, **changes},
                          headers={"Authorization": f"Bearer {PAYROLL_KEY}"})
    assert response.status_code == 201, response.text
    run: dict[str, Any] = response.json()
    return run


def advance_run(base: str, run_id: str, status: str, error_code: str | None = None) -> None:
    """The provider moving a run on behind our back (the sandbox's admin endpoint)."""
    body: dict[str, Any] = {"status": status}
    if error_code:
        body["error_code"] = error_code
    response = httpx.post(f"{base}/_admin/runs/{run_id}/status", json=body)
    assert response.status_code == 200, response.text


def set_chaos(base: str, **knobs: Any) -> None:
    response = httpx.post(f"{base}/_admin/chaos", json=knobs)
    assert response.status_code == 200, response.text
