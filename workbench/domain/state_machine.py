"""The explicit table of allowed status transitions.

A provider may skip steps (we may never see `processing` before `completed`), so forward jumps
are allowed. A failed payment may be retried. Final statuses only leave for `needs_review`,
which is where a person looks at a record the provider and we disagree about.
"""

from __future__ import annotations

from .statuses import Status

S = Status

ALLOWED_TRANSITIONS: dict[Status, frozenset[Status]] = {
    S.DRAFT: frozenset({S.SUBMITTED, S.NEEDS_REVIEW, S.PROCESSING, S.COMPLETED, S.FAILED, S.CANCELLED}),
    S.SUBMITTED: frozenset({S.NEEDS_REVIEW, S.PROCESSING, S.COMPLETED, S.FAILED, S.CANCELLED}),
    S.PROCESSING: frozenset({S.SUBMITTED, S.NEEDS_REVIEW, S.COMPLETED, S.FAILED, S.CANCELLED}),
    S.FAILED: frozenset({S.SUBMITTED, S.PROCESSING, S.COMPLETED, S.NEEDS_REVIEW, S.CANCELLED}),
    S.NEEDS_REVIEW: frozenset({S.SUBMITTED, S.PROCESSING, S.COMPLETED, S.FAILED, S.CANCELLED}),
    S.COMPLETED: frozenset({S.NEEDS_REVIEW}),
    S.CANCELLED: frozenset({S.NEEDS_REVIEW}),
}


def can_transition(current: Status | None, target: Status) -> bool:
    """A new record (current None) may start in any status; otherwise the table decides."""
    if current is None:
        return True
    return target in ALLOWED_TRANSITIONS[current]
