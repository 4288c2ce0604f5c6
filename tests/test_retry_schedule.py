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


def test_a_reconciliation_interval_is_strict_and_absent_by_default() -> None:
    from datetime import UTC, datetime, timedelta

    from workbench.services.sync_schedule import next_due, poll_interval_s, reconcile_interval_s

    settings = Settings.model_validate({"sync": {"interval_s": 60, "reconcile_interval_s": 3600}})
    assert settings.as_settings() == {"sync": {"interval_s": 60, "reconcile_interval_s": 3600}}
    assert (poll_interval_s(settings.as_settings()), reconcile_interval_s(settings.as_settings())) == (60, 3600)
    assert reconcile_interval_s({"sync": {"interval_s": 60}}) == 0  # off: on demand only
    for bad in (0, -5, "3600", 1.5, True):
        with pytest.raises(ValidationError):
            Settings.model_validate({"sync": {"interval_s": 60, "reconcile_interval_s": bad}})
    now = datetime(2026, 11, 29, 12, tzinfo=UTC)
    assert next_due(None, 3600, now) == now  # never ran: due at once
    assert next_due(now - timedelta(minutes=10), 3600, now) == now + timedelta(minutes=50)
    assert next_due(now - timedelta(hours=2), 3600, now) == now  # overdue: due at once
    assert next_due(now, 0, now) is None  # not scheduled
