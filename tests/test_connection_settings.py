"""Every settings change is a new connection version with actor, reason and an audit entry."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support import add_stripe
from workbench.services import connections
from workbench.services.context import ServiceContext
from workbench.services.errors import ServiceError


def test_a_settings_change_is_a_new_version_with_actor_and_reason(ctx: ServiceContext) -> None:
    add_stripe(ctx)

    def slower(settings: dict[str, Any]) -> dict[str, Any]:
        settings["sync"]["interval_s"] = 900
        return settings

    after = connections.update_settings(ctx.as_actor("user:ana"), "acme", slower, "connection.set", "quieter")
    assert after.version == 2 and after.settings["sync"]["interval_s"] == 900
    last = connections.history(ctx, "acme")[-1]
    assert (last["version"], last["actor"], last["reason"]) == (2, "user:ana", "quieter")
    assert last["snapshot"]["settings"]["sync"]["interval_s"] == 900
    assert connections.get_connection(ctx, "acme").version == 2


def test_no_change_makes_no_version_and_a_refusal_writes_nothing(ctx: ServiceContext) -> None:
    add_stripe(ctx)
    assert connections.update_settings(ctx, "acme", lambda s: s, "connection.set").version == 1

    def refuse(settings: dict[str, Any]) -> dict[str, Any]:
        settings["sync"]["interval_s"] = -1  # the caller's copy: the stored settings stay as they were
        raise ServiceError("no")

    with pytest.raises(ServiceError):
        connections.update_settings(ctx, "acme", refuse, "connection.set")
    info = connections.get_connection(ctx, "acme")
    assert info.version == 1 and info.settings["sync"]["interval_s"] == 300
    assert len(connections.history(ctx, "acme")) == 1
