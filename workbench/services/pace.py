"""A connection's outbound pace: how many provider requests per second the engine may make for
it (its `rate_limit.per_second` or `per_minute` setting, else what its adapter declares, else no limit)."""

from __future__ import annotations

from adapters import AdapterRegistry, UnknownProvider

from .connections import ConnectionInfo


def outbound_rate(connection: ConnectionInfo, adapters: AdapterRegistry) -> float | None:
    """Requests per second, or None when neither the connection nor its adapter sets one."""
    section = connection.settings.get("rate_limit")
    if isinstance(section, dict) and isinstance(section.get("per_second"), int | float):
        return float(section["per_second"])
    if isinstance(section, dict) and isinstance(section.get("per_minute"), int | float):
        return float(section["per_minute"]) / 60
    try:
        adapter = adapters.get(connection.provider)
    except UnknownProvider:
        return None
    return adapter.capabilities.rate_limit_per_s
