"""Process presence in the store (services/processes): live means seen within the window and
not stopped; a stale heartbeat or a clean stop takes a process out, on both backends. (A real
`workbench listen` announcing itself and stopping on SIGTERM: tests/test_receiver.py.)"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from tests.support import T0, FixedClock
from workbench.services import processes
from workbench.services.context import ServiceContext
from workbench.services.errors import InvalidArgument


def at(ctx: ServiceContext, seconds: int) -> ServiceContext:
    """`ctx` whose next clock reading is T0 + `seconds`."""
    return replace(ctx, clock=FixedClock(T0 + timedelta(seconds=seconds - 1)))


def test_live_means_seen_lately_and_not_stopped(ctx: ServiceContext) -> None:
    first = processes.announce(at(ctx, 0), "receiver", "http://127.0.0.1:8787")
    second = processes.announce(at(ctx, 10), "receiver", "http://127.0.0.1:8788")
    processes.announce(at(ctx, 10), "engine", None)
    now = T0 + timedelta(seconds=20)
    assert [p.address for p in processes.live(ctx, "receiver", now)] == ["http://127.0.0.1:8788", "http://127.0.0.1:8787"]
    # 35 s on, only a beat keeps the first one live; the second stopped cleanly.
    processes.beat(at(ctx, 30), first)
    processes.stopped(at(ctx, 31), second)
    later = T0 + timedelta(seconds=45)
    [live] = processes.live(ctx, "receiver", later)
    assert (live.id, live.seen_at, live.stopped_at) == (first, T0 + timedelta(seconds=30), None)
    assert processes.live(ctx, "receiver", later, within_s=10) == []
    # The engine, seen at 10 s, is live up to 40 s (30 s after its last heartbeat) and not after.
    assert [p.kind for p in processes.live(ctx, "engine", T0 + timedelta(seconds=40))] == ["engine"]
    assert processes.live(ctx, "engine", T0 + timedelta(seconds=40, microseconds=1)) == []


def test_an_unknown_kind_is_refused_in_one_line(ctx: ServiceContext) -> None:
    with pytest.raises(InvalidArgument, match="unknown process kind 'worker': one of receiver, engine"):
        processes.announce(ctx, "worker", None)
