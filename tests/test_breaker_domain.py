"""The circuit breaker's state machine (pure): it trips on the share of provider_outage or
timeout failures once the window holds enough calls, probes once after its delay, closes on a
successful probe and opens again on a failed one; the auto-pause steps come once each."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from workbench.domain.breaker import Breaker, BreakerPolicy, BreakerState, may_call, observe, start_probe, warning_due

T0 = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
POLICY = BreakerPolicy(window_s=60, min_calls=4, open_s=10, auto_pause_after_s=100)
OUTAGE, TIMEOUT, OK = "provider_outage", "timeout", None


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_it_waits_for_enough_calls_then_trips_on_the_failure_share() -> None:
    three = observe(Breaker(), POLICY, at(0), [OUTAGE, OUTAGE, OUTAGE])
    assert three.change is None and three.breaker.state is BreakerState.CLOSED  # 3 calls < min_calls
    four = observe(three.breaker, POLICY, at(1), [OK])
    assert four.change == "opened" and four.breaker.state is BreakerState.OPEN  # 3 of 4 >= 50%
    assert four.breaker.reason == "3 of 4 calls failed as provider_outage within 60 s (trips at 50%)"
    assert may_call(four.breaker, at(10.9)) == "wait" and may_call(four.breaker, at(11)) == "probe"


def test_other_categories_and_old_windows_do_not_trip_it() -> None:
    mixed = observe(Breaker(), POLICY, at(0), ["validation", "rate_limit", TIMEOUT, OK, OK])
    assert mixed.change is None and mixed.breaker.failures == {"timeout": 1}
    # A new window forgets the old calls: 3 timeouts of 3 calls is below min_calls again.
    later = observe(observe(Breaker(), POLICY, at(0), [TIMEOUT, TIMEOUT, TIMEOUT]).breaker, POLICY, at(61),
                    [TIMEOUT, TIMEOUT, TIMEOUT])
    assert later.change is None and later.breaker.calls == 3


def test_a_probe_closes_on_success_and_reopens_on_failure() -> None:
    opened = observe(Breaker(), POLICY, at(0), [TIMEOUT] * 4).breaker
    probing = start_probe(opened, POLICY, at(10))
    assert probing.change == "half_opened" and may_call(probing.breaker, at(10)) == "wait"
    failed = observe(probing.breaker, POLICY, at(11), [TIMEOUT])
    assert failed.change == "reopened" and failed.breaker.probe_at == at(21)
    closed = observe(start_probe(failed.breaker, POLICY, at(21)).breaker, POLICY, at(22), [OK])
    assert closed.change == "closed" and closed.breaker.calls == 0 and closed.breaker.failing_since is None
    assert may_call(closed.breaker, at(22)) == "call"
    # A probe that never comes back (its engine died) may be taken again after probe_s.
    assert may_call(probing.breaker, at(10 + POLICY.probe_s)) == "probe"


def test_auto_pause_steps_come_once_each_while_failing_without_a_break() -> None:
    failing = observe(Breaker(), POLICY, at(0), [OUTAGE]).breaker
    assert failing.failing_since == at(0) and warning_due(failing, POLICY, at(49)) is None
    assert warning_due(failing, POLICY, at(50)) == 50
    warned = Breaker(**{**failing.__dict__, "warned": 50})
    assert warning_due(warned, POLICY, at(60)) is None and warning_due(warned, POLICY, at(95)) == 90
    assert warning_due(Breaker(**{**failing.__dict__, "warned": 90}), POLICY, at(100)) == 100
    # An answer from the provider ends the failing stretch (and its warnings).
    answered = observe(warned, POLICY, at(70), ["validation"]).breaker
    assert answered.failing_since is None and answered.warned == 0 and warning_due(answered, POLICY, at(500)) is None
    assert warning_due(failing, BreakerPolicy(), at(10_000)) is None  # auto-pause off by default


def test_the_breaker_and_pace_settings_are_strict_and_round_trip() -> None:
    import pytest
    from pydantic import ValidationError

    from workbench.domain.connection_config import Settings, first_problem

    given = {"rate_limit": {"per_minute": 600}, "breaker": {"min_calls": 5, "rates": {"timeout": 0.8}}}
    stored = Settings.model_validate(given).as_settings()
    assert stored == {"rate_limit": {"per_minute": 600},
                      "breaker": {"window_s": 60, "min_calls": 5, "rates": {"provider_outage": 0.5, "timeout": 0.8},
                                  "open_s": 30}}
    assert Settings.model_validate(stored).as_settings() == stored  # what is stored imports back unchanged
    for bad, words in (({"rate_limit": {}}, "settings.rate_limit: set one of per_second or per_minute"),
                       ({"rate_limit": {"per_second": 1, "per_minute": 60}}, "set one of per_second or per_minute"),
                       ({"breaker": {"rates": {"timeout": 1.5}}}, "breaker.rates.timeout: Input should be a share"),
                       ({"breaker": {"open_s": "30"}}, "breaker.open_s: Input should be a valid integer"),
                       ({"breaker": {"trip": 3}}, "breaker.trip: Extra inputs are not permitted")):
        with pytest.raises(ValidationError) as caught:
            Settings.model_validate(bad)
        assert words in "settings." + first_problem(caught.value), first_problem(caught.value)
