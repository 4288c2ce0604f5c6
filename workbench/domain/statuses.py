"""Internal record statuses: the product's workflow, independent of any provider's enum."""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    DRAFT = "draft"
    SUBMITTED = "submitted"
    NEEDS_REVIEW = "needs_review"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


# How far along the workflow a status is. Used only to break ties between events that a
# provider stamped with the same occurrence time: the one further along wins.
WORKFLOW_RANK: dict[Status, int] = {
    Status.DRAFT: 0,
    Status.SUBMITTED: 1,
    Status.NEEDS_REVIEW: 1,
    Status.PROCESSING: 2,
    Status.FAILED: 3,
    Status.COMPLETED: 4,
    Status.CANCELLED: 4,
}

FINAL_STATUSES: frozenset[Status] = frozenset({Status.COMPLETED, Status.CANCELLED})


def rank(status: Status) -> int:
    return WORKFLOW_RANK[status]
