"""A provider's redaction rules (its adapter's `redacted_paths`), compiled once, for the
services that show or export its payloads. The domain never sees an adapter: it gets the paths."""

from __future__ import annotations

from functools import lru_cache

from adapters import UnknownProvider
from workbench.domain.redaction import PathTree, compile_paths

from .context import ServiceContext


@lru_cache(maxsize=64)
def _compiled(paths: tuple[str, ...]) -> PathTree:
    return compile_paths(paths)


def provider_paths(ctx: ServiceContext, provider: str | None) -> PathTree | None:
    """The provider's field paths to mask, or None for a provider no adapter serves (its
    payloads still pass through every detector)."""
    if provider is None:
        return None
    try:
        adapter = ctx.adapters.get(provider)
    except UnknownProvider:
        return None
    return _compiled(tuple(adapter.redacted_paths))
