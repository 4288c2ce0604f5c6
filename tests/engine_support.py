"""What the engine's tests share: the payroll sandbox on a free port (per module), a
connection pointed at a provider with its API key in the sandbox vault, and the sandbox's
admin endpoints (chaos knobs, the ledger: the witness of side effects)."""

from __future__ import annotations

import base64
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from adapters.payroll.sandbox import Chaos, SandboxConfig, bind
from adapters.payroll.sandbox.server import make_app, server_for
from workbench.services import connections, provider_calls, secret_refs
from workbench.services.context import ServiceContext
from workbench.vault import KdfParams, UnlockedVault, create, unlock, vault_path

PASS = "correct horse battery"
CHEAP = KdfParams(memory_kib=1024, iterations=1, lanes=1)
SECRET = "whsec_" + base64.b64encode(b"sandbox-webhook-secret-32-bytes!").decode()
KEY = "sk_test_key"
RUN = {"employer": "acme", "pay_date": "2026-12-01", "amount": 250_000, "currency": "eur"}


@pytest.fixture(scope="module")
def sandbox() -> Iterator[str]:
    sock = bind("127.0.0.1", 0)
    app, _ = make_app(SandboxConfig(api_key=KEY, read_only_key="rk_test_key", webhook_secret=SECRET))
    server = server_for(app)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    server.should_exit = True
    thread.join(timeout=10)


def set_chaos(base: str, **knobs: Any) -> None:
    response = httpx.post(base + "/_admin/chaos", json={**Chaos().model_dump(), **knobs})
    assert response.status_code == 200, response.text


def ledger(base: str, action: str | None = None) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = httpx.get(base + "/_admin/ledger").json()["entries"]
    return [e for e in entries if action is None or e["action"] == action]


def vault(environment: str = "sandbox") -> UnlockedVault:
    path = vault_path(environment)
    return unlock(path, environment, PASS) if path.exists() else create(path, environment, PASS, params=CHEAP)


def add_key(ctx: ServiceContext, name: str, key: str) -> UnlockedVault:
    """A new API key reference for connection `name` (the newest: calls use it)."""
    unlocked = vault()
    secret_refs.add_secret(ctx, unlocked, secret_refs.plan_secret(ctx, name, "api_key", None), key, "test key")
    return unlocked


def callable_connection(ctx: ServiceContext, name: str, provider: str, base_url: str, key: str = KEY,
                        settings: dict[str, Any] | None = None) -> UnlockedVault:
    """Connection `name` of `provider` calling `base_url` with `key`; its vault, unlocked."""
    connections.add_connection(ctx, name, provider, "sandbox", settings=settings)
    provider_calls.set_base_url(ctx, name, base_url, "tests: the local provider")
    return add_key(ctx, name, key)


def one_live_record_per_command(commands: list[Any], records: list[Any], refs: list[Any]) -> None:
    """Each command points at its own live record, linked to the provider's object once, and no
    other live record is about one of these commands' objects (an event that beat a command's
    answer made a record the command now points at; the draft it made was closed). Runs made
    by earlier tests on the module's sandbox come in by polling too: they are not counted."""
    live = {r.id: r for r in records if r.status != "cancelled"}
    mine = [c.record_id for c in commands]
    assert len(set(mine)) == len(commands) and set(mine) <= set(live)
    linked = [ref.record_id for ref in refs if ref.record_id in set(mine)]
    assert sorted(linked) == sorted(mine)
    references = {c.operation_id for c in commands}
    about_mine = [r.id for r in live.values() if r.fields.get("reference") in references]
    assert sorted(about_mine) == sorted(mine)
