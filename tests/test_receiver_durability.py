"""A receiver killed (SIGKILL, its child processes with it) in the middle of a load run loses no
delivery it answered 2xx: each is in its spool or already in the store, and the next receiver
on the store moves and applies what the dead one left in its spool.
Also: two receivers on one store (PostgreSQL, as in production; SQLite too) apply each
delivery once; a spool writer killed on its own is started again and loses nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import fresh_database
from tests.receiver_harness import Receiver, event_body, signature

SECRET = "whsec_durability"


@pytest.fixture(params=[pytest.param("sqlite", id="sqlite"),
                        pytest.param("postgres", id="postgres", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Receiver]:
    with fresh_database(request, request.param, tmp_path / "workbench.db", migrated=True) as url:
        receiver = Receiver.create(url, tmp_path, migrated=True)
        receiver.cli("connection", "add", "acme", "--provider", "stripe")
        receiver.add_secret("acme", SECRET)
        yield receiver


def _load(receiver: Receiver, senders: int, stop: threading.Event, answered: list[str], prefix: str) -> list[threading.Thread]:
    def send(worker: int) -> None:
        with httpx.Client(base_url=receiver.base, timeout=5) as client:
            n = 0
            while not stop.is_set():
                n += 1
                body = event_body(f"evt_{prefix}{worker}_{n}", f"pi_{prefix}{worker}_{n}")
                try:
                    answer = client.post("/hooks/acme", content=body, headers={"Stripe-Signature": signature(body, SECRET)})
                except httpx.TransportError:
                    return  # the receiver died under us: this one was never answered
                if 200 <= answer.status_code < 300:
                    answered.append(answer.json()["delivery"])

    threads = [threading.Thread(target=send, args=(i,), daemon=True) for i in range(senders)]
    for thread in threads:
        thread.start()
    return threads


def test_sigkill_mid_load_loses_nothing_answered_2xx(store: Receiver) -> None:
    store.start()
    stop, answered = threading.Event(), []  # type: ignore[var-annotated]
    threads = _load(store, 8, stop, answered, "k")
    deadline = time.monotonic() + 10
    while len(answered) < 300 and time.monotonic() < deadline:
        time.sleep(0.02)
    store.kill_all()  # mid-load: requests in flight die with it, and nothing moves after
    stop.set()
    for thread in threads:
        thread.join(timeout=10)
    assert len(answered) >= 300
    spooled = store.spooled()  # read first: a row leaves the spool only once the store has it
    in_store = {row.id for row in store.deliveries()}
    assert set(answered) <= spooled | in_store  # every 2xx was on disk
    # A new receiver moves and applies what the killed one left in its spool (if the applier
    # had not moved it all yet), then removes that spool.
    store.start()
    try:
        rows = {row.id: row for row in store.deliveries()}
        assert set(answered) <= set(rows) and {row.verdict for row in rows.values()} == {"applied"}
        assert store.spooled() == set()
        assert len(list((store.home / "spool").glob("*.spool"))) == 1  # the new receiver's own
    finally:
        assert store.stop() == 0
    assert list((store.home / "spool").iterdir()) == []  # stopped cleanly: its empty spool removed


def test_sigterm_to_the_whole_group_stops_cleanly_with_everything_applied(store: Receiver) -> None:
    """As a service manager stops it: SIGTERM to the receiver and its children at once. The
    children leave the stop to the receiver, which spools what it answered, has it all moved
    and applied, and removes its spool."""
    store.start(own_group=True)
    assert store.process is not None
    stop, answered = threading.Event(), []  # type: ignore[var-annotated]
    threads = _load(store, 4, stop, answered, "t")
    deadline = time.monotonic() + 10
    while len(answered) < 100 and time.monotonic() < deadline:
        time.sleep(0.02)
    os.killpg(store.process.pid, signal.SIGTERM)
    assert store.process.wait(timeout=60) == 0
    store.log.close()
    stop.set()
    for thread in threads:
        thread.join(timeout=10)
    rows = {row.id: row for row in store.deliveries()}
    assert len(answered) >= 100 and set(answered) <= set(rows)
    assert {row.verdict for row in rows.values()} == {"applied"}
    assert list((store.home / "spool").iterdir()) == []


def test_two_receivers_on_one_store_apply_each_delivery_once(store: Receiver) -> None:
    first = store
    second = Receiver(store.url, store.home, store.env)
    first.spawn()
    second.spawn()  # both start up at once (they share nothing but the store)
    first.wait_ready()
    second.wait_ready()
    try:
        stop, answered = threading.Event(), []  # type: ignore[var-annotated]
        threads = _load(first, 2, stop, answered, "a") + _load(second, 2, stop, answered, "b")
        deadline = time.monotonic() + 15  # a count, not a time: a loaded machine answers fewer a second
        while len(answered) < 40 and time.monotonic() < deadline:
            time.sleep(0.02)
        stop.set()
        for thread in threads:
            thread.join(timeout=10)
        deadline = time.monotonic() + 10
        while any(row.verdict == "held" for row in store.deliveries()) and time.monotonic() < deadline:
            time.sleep(0.1)
        rows = store.deliveries()
        assert len(answered) >= 40 and {row.id for row in rows} >= set(answered)
        assert {row.verdict for row in rows} == {"applied"} and len({row.record_id for row in rows}) == len(rows)
    finally:
        assert first.stop() == 0 and second.stop() == 0


def _child_pid(receiver: Receiver, module: str) -> int | None:
    """The receiver's child process running `module`, if it has one now."""
    assert receiver.process is not None
    for pid in subprocess.run(["pgrep", "-P", str(receiver.process.pid)], capture_output=True, text=True).stdout.split():
        try:
            if module in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace"):
                return int(pid)
        except FileNotFoundError:  # ended meanwhile
            continue
    return None


@pytest.mark.parametrize("child", ["spool_writer", "applier"])
def test_a_child_killed_under_load_is_started_again_and_nothing_answered_2xx_is_lost(store: Receiver,
                                                                                     child: str) -> None:
    """The spool writer (the one process that writes the spool) SIGKILLed mid-load: requests in
    flight get 503 (never 2xx for what was not committed), the receiver starts a new writer, and
    it goes on: every 2xx applied, and what the applier moved deleted from the spool by the new
    writer (the applier's marks reach it), so the spool empties while the receiver runs. The
    applier SIGKILLed: the receiver starts a new one within a second or two, which moves the
    rest (and finds in the store what the killed one had moved) without a restart."""
    store.start()
    try:
        first = _child_pid(store, child)
        assert first is not None
        stop, answered = threading.Event(), []  # type: ignore[var-annotated]
        threads = _load(store, 4, stop, answered, "w")
        deadline = time.monotonic() + 10
        while len(answered) < 100 and time.monotonic() < deadline:
            time.sleep(0.02)
        os.kill(first, signal.SIGKILL)
        killed_at = len(answered)
        while len(answered) < killed_at + 100 and time.monotonic() < deadline + 20:
            time.sleep(0.02)
        stop.set()
        for thread in threads:
            thread.join(timeout=10)
        assert len(answered) >= killed_at + 100  # answering all along, or again through a new writer
        deadline = time.monotonic() + 10
        while _child_pid(store, child) in (first, None) and time.monotonic() < deadline:  # not yet started again
            time.sleep(0.1)
        assert _child_pid(store, child) not in (first, None)
        while ((health := httpx.get(f"{store.base}/healthz", timeout=5).json())["spooled"] or not health["ready"]) \
                and time.monotonic() < deadline:
            time.sleep(0.1)
        assert health["spooled"] == 0 and health["ready"]
        rows = {row.id: row for row in store.deliveries()}
        assert set(answered) <= set(rows) and {row.verdict for row in rows.values()} == {"applied"}
    finally:
        assert store.stop() == 0
