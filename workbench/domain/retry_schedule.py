"""When the engine tries a failed command again: the schedule webhook senders commonly use
(immediately, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h), each delay jittered so that a burst
of failures does not come back as a burst, and never sooner than the provider's Retry-After.
After the last delay the failure goes to a person (needs_review). Pure: no I/O."""

from __future__ import annotations

import random
from collections.abc import Sequence

# Delay before attempt 2, 3, ... (attempt 1 is the dispatch itself): eight attempts in all.
DEFAULT_SCHEDULE_S: tuple[int, ...] = (0, 5, 300, 1800, 7200, 18000, 36000, 36000)
JITTER = 0.2  # each delay is drawn from [d * 0.8, d * 1.2]


def retry_delay(failed_attempts: int, schedule: Sequence[int] = DEFAULT_SCHEDULE_S, *,
                retry_after_s: float | None = None, rng: random.Random | None = None) -> float | None:
    """Seconds to wait after the `failed_attempts`-th failed attempt (1 for the first), or None
    when the schedule is used up (the failure needs a person)."""
    if failed_attempts < 1:
        raise ValueError("failed_attempts counts from 1")
    if failed_attempts > len(schedule):
        return None
    base = float(schedule[failed_attempts - 1])
    delay = base * (rng or random).uniform(1 - JITTER, 1 + JITTER) if base else 0.0
    if retry_after_s is not None and retry_after_s > delay:
        delay = float(retry_after_s)  # the provider said when: never sooner
    return delay
