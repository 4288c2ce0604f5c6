"""Internal identifiers: a short type prefix and a time-ordered body.

Time-ordered IDs keep B-tree inserts local (fast bulk ingest) and sort roughly by creation.
A seeded factory gives fixed IDs for deterministic fixtures and snapshot tests.
"""

from __future__ import annotations

import os
import random
import time


class IdFactory:
    """Makes `prefix_<12 hex ms time><16 hex random>` IDs: sortable by creation, and cheap
    enough to mint several per ingested delivery."""

    def __init__(self, seed: int | None = None, start_ms: int | None = None) -> None:
        self._deterministic = seed is not None
        # Not cryptographic: IDs need uniqueness, not secrecy; 64 random bits per millisecond.
        self._rng = random.Random(seed if seed is not None else os.urandom(16))
        self._fixed_ms = start_ms if start_ms is not None else 1_700_000_000_000
        self._counter = 0
        self._last_ms = 0
        self._last_rand = 0
        self._head = ""  # the hex time of _last_ms

    def new(self, prefix: str) -> str:
        if self._deterministic:
            self._counter += 1  # a fixed clock that ticks once per ID
            ms = self._fixed_ms + self._counter
        else:
            ms = time.time_ns() // 1_000_000
        if ms > self._last_ms:
            self._last_ms = ms
            self._head = f"{ms:012x}"
            rand = self._last_rand = self._rng.getrandbits(63)
        else:
            # Monotonic within a process: IDs minted in the same millisecond (or after the
            # clock stepped back) still sort in the order they were made (so deliveries list
            # in arrival order).
            rand = self._last_rand = self._last_rand + 1
        return f"{prefix}_{self._head}{rand:016x}"


default_ids = IdFactory()


def new_id(prefix: str) -> str:
    return default_ids.new(prefix)
