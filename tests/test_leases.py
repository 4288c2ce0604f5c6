"""Leases on both backends: the first engine to ask holds a free lease, another cannot while
it is renewed, anyone takes it over once it expired (counted), and release gives it up."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

from tests.support import T0
from workbench.services import leases
from workbench.services.context import ServiceContext


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def test_hold_renew_expire_take_over_and_release(ctx: ServiceContext) -> None:
    clock = Clock()
    at = replace(ctx, clock=clock)
    assert leases.acquire(at, "poll:con_1", "prc_a", 10) == leases.Claim(held=True)
    assert leases.acquire(at, "poll:con_1", "prc_b", 10) == leases.Claim(held=False)
    clock.now += timedelta(seconds=8)
    assert leases.acquire(at, "poll:con_1", "prc_a", 10).held  # renewed to T0 + 18 s
    clock.now += timedelta(seconds=9)
    assert not leases.acquire(at, "poll:con_1", "prc_b", 10).held
    clock.now += timedelta(seconds=2)  # prc_a stopped renewing: expired
    assert leases.acquire(at, "poll:con_1", "prc_b", 10) == leases.Claim(held=True, taken_over=True)
    assert not leases.acquire(at, "poll:con_1", "prc_a", 10).held
    (lease,) = leases.current(at)
    assert (lease.holder, lease.takeovers) == ("prc_b", 1)
    leases.release(at, "prc_b")
    assert leases.current(at) == []
    assert leases.acquire(at, "poll:con_1", "prc_a", 10).held
