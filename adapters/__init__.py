"""Provider adapters: everything provider-specific lives below this package."""

from __future__ import annotations

from .registry import AdapterRegistry, UnknownProvider, default_registry

__all__ = ["AdapterRegistry", "UnknownProvider", "default_registry"]
