"""A real `workbench listen` in a subprocess on a free port, with its own store (SQLite file or
a PostgreSQL database), vault and audit key, set up through the CLI; and signed deliveries."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import stripe
from sqlalchemy import select

from store.database import open_store, reading
from store.models import Delivery, Process
from workbench.receiver.spool import delivery_ids
from workbench.vault import KdfParams, vault_path
from workbench.vault.vault import create as create_vault_file

WORKBENCH = [str(Path(sys.executable).parent / "workbench")]
PASSPHRASE = "receiver test passphrase"
CHEAP_KDF = KdfParams(memory_kib=1024, iterations=1, lanes=1)  # as tests/conftest.py's


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def event_body(event_id: str, pi: str = "pi_1", status: str = "processing", created: int = 1) -> bytes:
    return orjson.dumps({"id": event_id, "object": "event", "type": f"payment_intent.{status}", "created": created,
                         "livemode": False, "data": {"object": {"id": pi, "object": "payment_intent", "status": status,
                                                                "amount": 100, "currency": "usd"}}})


def signature(body: bytes, secret: str, at: float | None = None) -> str:
    return stripe.WebhookSignature.generate_signature_header(body.decode(), secret, timestamp=int(at or time.time()))


@dataclass
class Receiver:
    url: str  # the store's URL
    home: Path
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    port: int = 0

    @classmethod
    def create(cls, url: str, home: Path, *, migrated: bool = False) -> Receiver:
        """`migrated`: the store is at the newest migration already (a copy of the session's
        template): no `db upgrade` (a CLI process, a second or more)."""
        env = {**os.environ, "WORKBENCH_DB": url, "WORKBENCH_VAULT_DIR": str(home / "vault"),
               "WORKBENCH_AUDIT_KEY_FILE": str(home / "audit" / "audit.key"), "WORKBENCH_VAULT_PASSPHRASE": PASSPHRASE,
               "WORKBENCH_SPOOL_DIR": str(home / "spool"),
               "PYTHONUNBUFFERED": "1"}
        env.pop("WORKBENCH_DEBUG", None)
        receiver = cls(url, home, env)
        if not migrated:
            receiver.cli("db", "upgrade")
        # The vault file made here, under the cheap parameters the other tests use (conftest's
        # CHEAP_KDF): the header records them, so the receiver and every CLI call unlock it in
        # milliseconds rather than paying the tuned Argon2id cost each (`vault init` itself is
        # tested in test_vault).
        create_vault_file(vault_path("sandbox", home / "vault"), "sandbox", PASSPHRASE, params=CHEAP_KDF)
        return receiver

    def cli(self, *args: str, stdin: str | None = None) -> str:
        done = subprocess.run([*WORKBENCH, *args], env=self.env, input=stdin.encode() if stdin else None,
                              capture_output=True, timeout=60)
        assert done.returncode == 0, done.stderr.decode()
        return done.stdout.decode() + done.stderr.decode()

    def add_secret(self, connection: str, value: str) -> str:
        out = self.cli("connection", "secret", "add", connection, "--kind", "webhook_secret", stdin=value)
        return out.split("added webhook_secret ", 1)[1].split()[0]

    def start(self, *, own_group: bool = False) -> None:
        """`own_group`: in a process group of its own, as a service manager starts it (so that
        a signal can go to the whole group, children included)."""
        self.spawn(own_group=own_group)
        self.wait_ready()

    def spawn(self, *, own_group: bool = False) -> None:
        """`start` without waiting for it to answer: two receivers start up side by side."""
        self.port = free_port()
        self.log = (self.home / f"listen-{self.port}.log").open("wb")
        self.process = subprocess.Popen([*WORKBENCH, "listen", "--port", str(self.port)], env=self.env,
                                        stdout=self.log, stderr=subprocess.STDOUT, start_new_session=own_group)

    def wait_ready(self) -> None:
        """Until it answers /healthz (30 s at most)."""
        assert self.process is not None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.process.poll() is None, (self.home / f"listen-{self.port}.log").read_text()
            try:
                if httpx.get(f"{self.base}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.05)
        raise AssertionError("the receiver did not become ready")

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def post(self, connection: str, body: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
        return httpx.post(f"{self.base}/hooks/{connection}", content=body, headers=headers or {}, timeout=10)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        assert self.process is not None
        self.process.send_signal(sig)
        code = self.process.wait(timeout=30)
        self.log.close()
        return code

    def kill_all(self) -> None:
        """SIGKILL the receiver and its child processes (spool writer, applier) at once: nothing
        it was doing is finished, not even by its children."""
        assert self.process is not None
        children = subprocess.run(["pgrep", "-P", str(self.process.pid)], capture_output=True, text=True).stdout.split()
        for pid in [self.process.pid, *map(int, children)]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.process.wait(timeout=30)
        self.log.close()

    def spooled(self) -> set[str]:
        """The IDs of the deliveries in the receivers' spool files (stored, not yet moved)."""
        return {delivery for path in (self.home / "spool").glob("*.spool") for delivery in delivery_ids(path)}

    def moved(self, timeout: float = 10.0) -> None:
        """Wait until a running receiver has moved everything it spooled into the store."""
        deadline = time.monotonic() + timeout
        while self.process is not None and self.process.poll() is None and time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.base}/healthz", timeout=2).json().get("spooled") == 0:
                    return
            except httpx.TransportError:
                return
            time.sleep(0.02)

    def deliveries(self) -> list[Any]:
        """Every delivery in the store (a running receiver's spool moved there first)."""
        self.moved()
        engine = open_store(self.url)
        try:
            with reading(engine) as conn:
                return list(conn.execute(select(Delivery.__table__).order_by(Delivery.__table__.c.id)).all())
        finally:
            engine.dispose()

    def processes(self) -> list[Any]:
        """Every row the receivers of this store announced themselves with (services/processes)."""
        engine = open_store(self.url)
        try:
            with reading(engine) as conn:
                return list(conn.execute(select(Process.__table__).order_by(Process.__table__.c.started_at)).all())
        finally:
            engine.dispose()

    def delivery(self, delivery_id: str, *, settled: bool = True, timeout: float = 3.0) -> Any:
        """The stored delivery; with `settled`, once it is applied (not held)."""
        deadline = time.monotonic() + timeout
        while True:
            found = {row.id: row for row in self.deliveries()}.get(delivery_id)
            if found is not None and (not settled or found.verdict != "held"):
                return found
            if time.monotonic() > deadline:
                return found
            time.sleep(0.05)
