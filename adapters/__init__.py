"""Provider adapters: everything provider-specific lives below this package."""

from __future__ import annotations

from .protocol import Adapter, Capabilities, ClassifiedOutcome, Pagination, Simulating
from .registry import AdapterRegistry, UnknownProvider, default_registry

__all__ = ["Adapter", "AdapterRegistry", "Capabilities", "ClassifiedOutcome", "Pagination", "Simulating",
           "UnknownProvider", "default_registry"]
