"""Where our belief about one record and the provider's current view of it differ. Pure.

Field by field: the record's status (ours) against the status the adapter's rules give the
provider's object now (theirs), then each canonical field either side has. A provider status
the rules do not know shows as "unmapped:<provider status>", never as a guess.
"""

from __future__ import annotations

from typing import Any

from .statuses import Status

STATUS = "status"
EXISTS = "exists"  # one side does not know the object at all


def their_status(status: Status | None, provider_status: str) -> str:
    return str(status) if status is not None else f"unmapped:{provider_status}"


def differences(our_status: str, our_fields: dict[str, Any], status: Status | None, provider_status: str,
                their_fields: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """(field, ours, theirs) for every field that differs, status first, then by name."""
    found: list[tuple[str, Any, Any]] = []
    theirs = their_status(status, provider_status)
    if our_status != theirs:
        found.append((STATUS, our_status, theirs))
    if our_fields == their_fields:  # the usual case: nothing to walk
        return found
    for name in sorted(set(our_fields) | set(their_fields)):
        ours, their = our_fields.get(name), their_fields.get(name)
        if ours != their:
            found.append((name, ours, their))
    return found
