"""The applier: the receiver's process that moves its spooled deliveries into the store and
applies them (mover.py), off the request path and out of the spool writer's way.

It moves again at once after a full move (MOVE_ROWS: more is waiting), and waits longer the
larger the last move was (see _wait_after), so a busy receiver's deliveries go in up to two
thousand at a time (one transaction, one sync of the store for all of them) and a quiet one's
within a few hundredths of a second; each is applied within half a second while the machine
keeps up.
At start, and every TAKE_OVER_S after, it takes over any spool a killed receiver left in the
same folder (SpoolClaim.take tells which spools those are) and moves it a move at a time
between moves of its own, so its own deliveries are not held up behind a large takeover; at
start it also applies any delivery left held by an active connection (a receiver of an earlier
version killed between storing and applying). Its store connections sync at every commit
(FULL): a delivery leaves the spool only once the store has it on disk.

Stopped (STOP on its pipe, or the receiver gone), it moves everything its spool holds, then
ends. Killed, it loses nothing: what it had not moved is still in the spool.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import sqlite3
import subprocess
import threading
import time
from multiprocessing.connection import Connection as Pipe
from pathlib import Path
from typing import Any

from sqlalchemy import select

from store.database import sync_every_commit, writing
from store.models import Connection as ConnectionRow, Delivery
from workbench.services.connections import _info as connection_info
from workbench.services.context import ServiceContext, open_context
from workbench.services.held import apply_held
from workbench.services.ingest import HELD
from workbench.services.ingest_prepare import between_batches, collecting_between_batches
from workbench.services.ingest_run import one_line
from workbench.services.payload_crypto import Vaults

from . import children
from .mover import MOVE_ROWS, Mover, SpoolReader
from .spool import SpoolClaim, holds_nothing, open_spool, spools_in

log = logging.getLogger(__name__)

deliveries = Delivery.__table__
connections = ConnectionRow.__table__
POLL_S = 0.25
QUIET_S, QUIET_ROWS = 0.02, 50
RETRY_S = 0.5  # after the store refused a move
REFUSALS = 5  # moves of a spool the store refused in a row before it is left for later
CHECKPOINT_S = 0.5  # the spool's WAL copied back at most this often, while moving
STORE_CHECKPOINT_S = 1.0
REMIND_S = 1.0  # while idle: moved batches still in the spool handed to the writer again this often
WATCH_S = 1.0  # how often the receiver looks whether its applier still runs
RESTART_MAX_S = 30.0  # the longest pause between tries to start a failing applier again
STEADY_S = 10.0  # an applier that ran this long before it ended is started again at once
# How often a running applier looks for spools that killed receivers left (each receiver also
# looks when it starts): their deliveries were answered 2xx and must not wait for a restart.
TAKE_OVER_S = 10.0


class ApplierLink:
    """The receiver's end: starts the applier and stops it (both blocking: off the event loop)."""

    def __init__(self, ctx: ServiceContext, vaults: Vaults, spool: Path, hand_off: int | None = None) -> None:
        """`hand_off`: the writing end of the pipe to the spool writer, for what was moved
        (mover.SpoolReader)."""
        self._url = ctx.engine.url.render_as_string(hide_password=False)
        self._actor, self._vaults, self._spool = ctx.actor, vaults, spool
        self._hand_off = hand_off
        self._process: subprocess.Popen[bytes] | None = None
        self._control: Pipe | None = None
        self._started = 0.0

    def start(self) -> None:
        self._started = time.monotonic()
        ours, theirs = multiprocessing.Pipe()
        process = children.launch(__name__, (self._url, self._actor, self._vaults, str(self._spool)), [theirs],
                                  shared=() if self._hand_off is None else (self._hand_off,))
        if not children.ready(ours):
            process.kill()
            process.wait()
            ours.close()
            raise RuntimeError("the receiver's applier did not start")
        self._process, self._control = process, ours

    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    async def keep_running(self) -> None:
        """Start the applier again whenever it has ended (killed, or crashed), until cancelled:
        what is answered 2xx must not wait in the spool for the receiver's restart. The new one
        finds in the store what the old one moved and had not yet seen deleted (SpoolReader).
        One that keeps ending (or failing to start) soon after its start is tried less and
        less often."""
        backoff = 0.0
        while True:
            await asyncio.sleep(WATCH_S)
            if self.alive():
                continue
            if self._process is not None:
                log.error("receiver: the applier ended (exit code %s); starting it again", self._process.returncode)
            if self._control is not None:
                self._control.close()
            self._process = self._control = None
            soon = time.monotonic() - self._started < STEADY_S
            backoff = min(max(backoff * 2, WATCH_S), RESTART_MAX_S) if soon else 0.0
            await asyncio.sleep(backoff)
            try:
                await asyncio.to_thread(self.start)
            except Exception as exc:
                log.error("receiver: the applier could not be started again (%s); trying again", one_line(exc))

    def stop(self, timeout_s: float = 120) -> None:
        """The applier moves what the spool holds, then ends."""
        control, self._control = self._control, None
        if control is not None:
            children.tell_to_stop(control)
        if not children.stop(self._process, timeout_s):
            log.warning("receiver: the applier did not end in %d s; what it had not moved stays in the spool",
                        timeout_s)
        if control is not None:
            control.close()


def _child(url: str, actor: str, vaults: Vaults, spool: str, control: Pipe, hand_off: Pipe | None = None) -> None:
    children.ignore_stop_signals()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    ctx = open_context(url, actor=actor)
    sync_every_commit(ctx.engine)  # a delivery leaves the spool only once it is synced here
    own = Path(spool)
    claim = SpoolClaim.share(own)  # in use while this lives, even after a killed receiver
    if claim is None:
        return  # being taken over: not ours any more (the receiver reports it did not start)
    mover = Mover(ctx, vaults)
    _load_adapters(ctx)
    checkpointer = _Checkpointer(ctx)
    checkpointer.start()
    control.send_bytes(children.READY)
    try:
        _apply_left_held(ctx, vaults)
        if hand_off is not None:  # a full pipe (a writer not reading) must not stop the moving
            os.set_blocking(hand_off.fileno(), False)
        _follow(mover, own, control, None if hand_off is None else hand_off.fileno())
    finally:
        checkpointer.stop()
        claim.release()
        ctx.engine.dispose()


class _Checkpointer:
    """The store's WAL copied back into its file every STORE_CHECKPOINT_S, on a thread and a
    connection of its own. Left to the automatic checkpoint (every 256 MiB, see
    store/database.py), a move every few minutes stopped for the seconds it took to copy and
    sync all of it, and the burst of writes held up the spool's syncs (the receiver's p99).
    A passive checkpoint takes no lock the mover needs: moving goes on meanwhile."""

    def __init__(self, ctx: ServiceContext) -> None:
        self._ctx = ctx
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="receiver-checkpoint", daemon=True)

    def start(self) -> None:
        if self._ctx.engine.dialect.name == "sqlite":
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)

    def _run(self) -> None:
        with self._ctx.engine.connect() as conn:
            driver: Any = conn.connection.driver_connection
            while not self._stop.wait(STORE_CHECKPOINT_S):
                try:
                    driver.execute("PRAGMA wal_checkpoint(PASSIVE)")
                except Exception as exc:  # busy or away: the next one tries again
                    log.debug("receiver: checkpoint skipped (%s)", one_line(exc))


def _load_adapters(ctx: ServiceContext) -> None:
    """Imported now: importing one in the first move held it for tens of milliseconds."""
    with ctx.engine.connect() as conn:
        providers = set(conn.execute(select(connections.c.provider).distinct()).scalars())
    for provider in providers & set(ctx.adapters.names()):
        ctx.adapters.get(provider)


def _follow(mover: Mover, spool: Path, control: Pipe, hand_off: int | None = None) -> None:
    """Move until told to stop (or the receiver is gone), then move what is left; spools that
    killed receivers left are taken over on the way (at once, then every TAKE_OVER_S).
    `hand_off`: moved batches are deleted by the spool writer until the stop (the receiver
    stops its writer first), here after it."""
    conn = open_spool(spool)
    reader = SpoolReader(conn, hand_off)
    taken: dict[Path, _TakenOver] = {}
    checkpointed = reminded = time.monotonic()
    looked = checkpointed - TAKE_OVER_S
    try:
        while True:
            moved = _move_once(mover, reader)
            if moved and time.monotonic() - checkpointed >= CHECKPOINT_S:
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)")  # here, not in a commit that answers requests
                checkpointed = time.monotonic()
            elif not moved and time.monotonic() - reminded >= REMIND_S:
                reader.remind()
                reminded = time.monotonic()
            if time.monotonic() - looked >= TAKE_OVER_S:
                _claim_abandoned(spool, taken)
                looked = time.monotonic()
            # One move of each taken-over spool, then ours again: no waiting while they hold more.
            wait = 0.0 if _move_taken_over(mover, taken) else _wait_after(moved)
            if control.poll(wait) and _stopping(control):
                reader.stop_handing_off()
                _drain(mover, reader)
                for item in taken.values():
                    _drain(mover, item.reader)
                return
    finally:
        conn.close()
        for item in list(taken.values()):
            item.let_go()


def _wait_after(moved: int) -> float:
    """How long to let deliveries gather after a move of `moved` (-1: the store refused it):
    none after a full move (more is waiting); POLL_S after a busy one, so that a busy
    receiver's deliveries go in thousands a transaction (smaller moves cost the receiver
    throughput: docs/benchmarks.md); QUIET_S after a move of a few or none, so that a quiet
    receiver's deliveries are applied within a few hundredths of a second."""
    if moved < 0:
        return RETRY_S
    if moved >= MOVE_ROWS:
        return 0.0
    return QUIET_S if moved < QUIET_ROWS else POLL_S


def _stopping(control: Pipe) -> bool:
    try:
        return control.recv_bytes() == children.STOP
    except EOFError:  # the receiver is gone
        return True


def _move_once(mover: Mover, spool: SpoolReader) -> int:
    """Rows moved; -1 when the store refused them (they are then tried one by one). The cyclic
    GC waits for the end of the move, as in bulk ingest: a move of thousands of deliveries
    started it hundreds of times, full collections among them (measured: 29 % of the
    applier's time under load)."""
    try:
        with collecting_between_batches():
            moved = mover.move(spool)
        between_batches()
        return moved
    except Exception as exc:
        log.warning("receiver: moving spooled deliveries into the store failed (%s); trying them one by one",
                    one_line(exc))
        try:
            mover.move_one_by_one(spool, MOVE_ROWS)
        except Exception as again:  # the store itself is away: everything waits in the spool
            log.warning("receiver: the store is not taking deliveries (%s); will retry", one_line(again))
        return -1


def _drain(mover: Mover, spool: SpoolReader) -> None:
    failures = 0
    while (moved := _move_once(mover, spool)) != 0:
        if moved < 0:
            failures += 1
            if failures > REFUSALS:
                log.error("receiver: stopping with deliveries still in the spool %s; the next receiver moves them",
                          spool.conn.execute("PRAGMA database_list").fetchone()[2])
                return
            time.sleep(RETRY_S)


class _TakenOver:
    """A spool nobody holds (its receiver was killed), claimed by this applier: moved a move at
    a time, then removed once empty (stuck deliveries keep it, see mover.py)."""

    def __init__(self, path: Path, claim: SpoolClaim, conn: sqlite3.Connection) -> None:
        self.path, self.claim, self.reader = path, claim, SpoolReader(conn)
        self.failures = 0
        self.retry_at = 0.0

    def let_go(self) -> None:
        conn = self.reader.conn
        try:
            empty = holds_nothing(conn)
        except sqlite3.Error:
            empty = False
        conn.close()
        self.claim.release(remove=empty)  # not empty: another receiver tries it later


def _claim_abandoned(own: Path, taken: dict[Path, _TakenOver]) -> None:
    """Claim every other spool beside ours whose receiver (and its children) are gone."""
    for path in spools_in(own.parent):
        if path == own or path in taken:
            continue
        claim = SpoolClaim.take(path)
        if claim is None:
            continue  # its receiver runs (or another is taking it over)
        try:
            conn = open_spool(path)
        except Exception as exc:  # one damaged spool must not stop this receiver's own moving
            log.error("receiver: could not take over %s (%s)", path.name, one_line(exc))
            claim.release()
            continue
        log.warning("receiver: moving the deliveries a stopped receiver left in %s", path.name)
        taken[path] = _TakenOver(path, claim, conn)


def _move_taken_over(mover: Mover, taken: dict[Path, _TakenOver]) -> bool:
    """One move from each taken-over spool; whether any moved something (more may wait). One
    emptied is let go; one the store keeps refusing is let go after a few tries, RETRY_S apart."""
    progressed = False
    now = time.monotonic()
    for path, item in list(taken.items()):
        if item.retry_at > now:
            continue
        moved = _move_once(mover, item.reader)
        if moved > 0:
            item.failures, progressed = 0, True
            continue
        if moved < 0:
            item.failures += 1
            item.retry_at = now + RETRY_S
            if item.failures <= REFUSALS:
                continue
            log.error("receiver: leaving %s with deliveries still in it; a receiver tries it again later", path.name)
        item.let_go()
        del taken[path]
    return progressed


def _apply_left_held(ctx: ServiceContext, vaults: Vaults) -> None:
    """Held deliveries of active connections: left by a receiver that stored before it
    applied (this version moves and applies in one transaction)."""
    try:
        with ctx.engine.connect() as conn:
            active = [connection_info(row) for row in conn.execute(
                select(connections).where(connections.c.paused.is_(False)))]
            waiting = {connection_id for connection_id in conn.execute(
                select(deliveries.c.connection_id).where(deliveries.c.verdict == str(HELD)).distinct()).scalars()}
        for info in active:
            if info.id not in waiting:
                continue
            with writing(ctx.engine) as conn:  # locked as resuming locks it: a pause meanwhile holds
                locked = connection_info(conn.execute(select(connections).where(connections.c.id == info.id)
                                                      .with_for_update()).one())
                if not locked.paused:
                    apply_held(conn, ctx, locked, vaults)
    except Exception as exc:
        log.warning("receiver: could not apply the held deliveries left by an earlier receiver (%s)", one_line(exc))


if __name__ == "__main__":  # started by ApplierLink.start (children.launch)
    (store_url, actor_name, unlocked, spool_path), (control_end, *hand_off_end) = children.received()
    _child(store_url, actor_name, unlocked, spool_path, control_end, *hand_off_end)
