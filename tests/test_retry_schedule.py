"""The retry schedule (pure): the default delays with their jitter, Retry-After never
undercut, used up after the last delay; a connection's own schedule in its settings, strict."""

from __future__ import annotations

import random

import pytest
from pydantic import ValidationError

from workbench.domain.connection_config import Settings
from workbench.domain.retry_schedule import DEFAULT_SCHEDULE_S, retry_delay


def test_the_default_schedule_with_jitter_then_used_up() -> None:
    assert DEFAULT_SCHEDULE_S == (0, 5, 300, 1800, 7200, 18000, 36000, 36000)
    rng = random.Random(3)
    assert retry_delay(1, rng=rng) == 0.0  # the first retry at once
    for attempt, base in enumerate(DEFAULT_SCHEDULE_S[1:], start=2):
        delay = retry_delay(attempt, rng=rng)
        assert delay is not None and 0.8 * base <= delay <= 1.2 * base
    assert retry_delay(len(DEFAULT_SCHEDULE_S) + 1) is None  # then a person looks
    with pytest.raises(ValueError):
        retry_delay(0)


def test_retry_after_is_never_undercut() -> None:
    assert retry_delay(1, retry_after_s=7) == 7.0
    assert retry_delay(2, (0, 5), retry_after_s=60, rng=random.Random(1)) == 60.0
    delay = retry_delay(3, (0, 0, 100), retry_after_s=1, rng=random.Random(1))
    assert delay is not None and delay >= 80


def test_a_connections_schedule_is_strict_and_absent_by_default() -> None:
    settings = Settings.model_validate({"sync": {"interval_s": 60, "retry_schedule_s": [0, 5, 300]}})
    assert settings.as_settings() == {"sync": {"interval_s": 60, "retry_schedule_s": [0, 5, 300]}}
    assert Settings.model_validate({"sync": {"interval_s": 60}}).as_settings() == {"sync": {"interval_s": 60}}
    for bad in ([], [-1], ["5"], [0] * 21, [8 * 86400]):
        with pytest.raises(ValidationError):
            Settings.model_validate({"sync": {"interval_s": 60, "retry_schedule_s": bad}})
