"""Building failure rows: a category, its policy's initial triage state, a fingerprint."""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

from workbench.domain.taxonomy import Category, policy_for


def fingerprint(category: Category, provider: str, code: str) -> str:
    """Failures with the same cause share a fingerprint, so the queue can group them."""
    return hashlib.sha256(f"{category}|{provider}|{code}".encode()).hexdigest()[:16]


def failure_row(
    *,
    failure_id: str,
    category: Category,
    provider: str,
    code: str,
    message: str,
    now: datetime,
    connection_id: str | None = None,
    record_id: str | None = None,
    delivery_id: str | None = None,
    command_id: str | None = None,
) -> dict[str, Any]:
    return {
        "id": failure_id, "category": str(category), "state": str(policy_for(category).initial_state),
        "connection_id": connection_id, "record_id": record_id, "delivery_id": delivery_id,
        "command_id": command_id, "fingerprint": fingerprint(category, provider, code),
        "message": message, "assignee": None, "created_at": now, "updated_at": now,
    }
