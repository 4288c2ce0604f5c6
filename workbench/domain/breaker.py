"""A connection's circuit breaker, as a pure state machine: closed (calls go out, counted in a
window), open (no calls until a delay has passed), half-open (one probe call decides: success
closes, failure opens again). It trips on the share of calls that failed as `provider_outage`
or `timeout` within the window, once the window holds at least `min_calls` calls; the other
categories say the provider answered and never trip it.

It also tracks how long the connection has been failing without a break (`failing_since`: the
first breaker-category failure after the provider last answered), which drives the auto-pause
and its warnings at 50% and 90% of the threshold. Pure: no I/O, time passed in.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Literal

TRIPPING = ("provider_outage", "timeout")  # categories that say the provider itself is failing
WARN_AT = (50, 90)  # auto-pause warnings, percent of the threshold


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True)
class BreakerPolicy:
    window_s: float = 60.0
    min_calls: int = 20
    # failure rate (0 < rate <= 1) per tripping category; None: that category never trips it
    rates: dict[str, float | None] = field(default_factory=lambda: {"provider_outage": 0.5, "timeout": 0.5})
    open_s: float = 30.0  # open this long before a probe
    probe_s: float = 30.0  # a probe not answered by then (its engine died): another may probe
    auto_pause_after_s: float | None = None  # failing this long without a break: paused


@dataclass(frozen=True)
class Breaker:
    state: BreakerState = BreakerState.CLOSED
    window_started_at: datetime | None = None
    calls: int = 0
    failures: dict[str, int] = field(default_factory=dict)  # tripping category -> count in the window
    opened_at: datetime | None = None
    probe_at: datetime | None = None  # open: when a probe may go; half-open: when the probe expires
    failing_since: datetime | None = None
    warned: int = 0  # the highest auto-pause warning given (0, 50 or 90) since failing_since
    reason: str | None = None


Change = Literal["opened", "half_opened", "reopened", "closed"]


@dataclass(frozen=True)
class Observed:
    breaker: Breaker
    change: Change | None = None


def may_call(breaker: Breaker, now: datetime) -> Literal["call", "probe", "wait"]:
    """What a dispatcher may do now: call freely, make the one probe (then `start_probe`), or wait."""
    if breaker.state is BreakerState.CLOSED:
        return "call"
    if breaker.probe_at is not None and now >= breaker.probe_at:
        return "probe"  # open past its delay, or a half-open probe that never came back
    return "wait"


def wait_s(breaker: Breaker, now: datetime) -> float:
    """Seconds until `may_call` can change (0 when calls may go)."""
    if breaker.state is BreakerState.CLOSED or breaker.probe_at is None:
        return 0.0
    return max(0.0, (breaker.probe_at - now).total_seconds())


def start_probe(breaker: Breaker, policy: BreakerPolicy, now: datetime) -> Observed:
    return Observed(replace(breaker, state=BreakerState.HALF_OPEN, probe_at=now + timedelta(seconds=policy.probe_s)),
                    "half_opened")


def observe(breaker: Breaker, policy: BreakerPolicy, now: datetime, outcomes: list[str | None]) -> Observed:
    """The breaker after calls answered with `outcomes` (None: success, else the category)."""
    if not outcomes:
        return Observed(breaker)
    failing = [outcome for outcome in outcomes if outcome in TRIPPING]
    answered = len(outcomes) - len(failing)  # the provider answered something: not failing
    since = breaker.failing_since
    if answered:
        since = None
        if failing and outcomes[-1] in TRIPPING:
            since = now  # failing again after the last answer
    elif since is None:
        since = now
    warned = breaker.warned if since is not None and since == breaker.failing_since else 0
    base = replace(breaker, failing_since=since, warned=warned)
    if breaker.state is BreakerState.HALF_OPEN:
        if failing:  # the probe failed: open again, the delay starts over
            return Observed(replace(base, state=BreakerState.OPEN, probe_at=now + timedelta(seconds=policy.open_s),
                                    reason=_reason(failing, len(outcomes), "the probe failed")), "reopened")
        return Observed(replace(base, state=BreakerState.CLOSED, window_started_at=now, calls=0, failures={},
                                opened_at=None, probe_at=None, reason=None), "closed")
    if breaker.state is BreakerState.OPEN:
        return Observed(base)  # answers to calls made before it opened: counted as failing time only
    window_start = breaker.window_started_at
    calls, counts = breaker.calls, dict(breaker.failures)
    if window_start is None or (now - window_start).total_seconds() >= policy.window_s:
        window_start, calls, counts = now, 0, {}
    calls += len(outcomes)
    for outcome in failing:
        counts[outcome] = counts.get(outcome, 0) + 1
    counted = replace(base, window_started_at=window_start, calls=calls, failures=counts)
    if calls < policy.min_calls:
        return Observed(counted)
    for category in TRIPPING:
        rate = policy.rates.get(category)
        if rate is not None and counts.get(category, 0) / calls >= rate:
            reason = (f"{counts[category]} of {calls} calls failed as {category} within "
                      f"{_seconds(policy.window_s)} (trips at {rate:.0%})")
            return Observed(replace(counted, state=BreakerState.OPEN, opened_at=now,
                                    probe_at=now + timedelta(seconds=policy.open_s), reason=reason), "opened")
    return Observed(counted)


def warning_due(breaker: Breaker, policy: BreakerPolicy, now: datetime) -> int | None:
    """The auto-pause step due now and not yet given: 50 or 90 (a warning), 100 (pause), or None."""
    if policy.auto_pause_after_s is None or breaker.failing_since is None:
        return None
    share = (now - breaker.failing_since).total_seconds() / policy.auto_pause_after_s * 100
    for step in (100, *reversed(WARN_AT)):
        if share >= step and breaker.warned < step:
            return step
    return None


def _reason(failing: list[str], calls: int, what: str) -> str:
    return f"{what}: {len(failing)} of {calls} call(s) failed as {', '.join(sorted(set(failing)))}"


def _seconds(value: float) -> str:
    return f"{value:g} s"
