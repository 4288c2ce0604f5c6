"""Which adapter serves which provider name."""

from __future__ import annotations

from typing import Any


class UnknownProvider(LookupError):
    pass


class AdapterRegistry:
    def __init__(self, adapters: dict[str, Any]) -> None:
        self._adapters = adapters

    def get(self, provider: str) -> Any:
        try:
            return self._adapters[provider]
        except KeyError:
            known = ", ".join(sorted(self._adapters))
            raise UnknownProvider(f"unknown provider {provider!r} (known: {known})") from None

    def names(self) -> list[str]:
        return sorted(self._adapters)


def default_registry() -> AdapterRegistry:
    from .stripe import StripeAdapter

    return AdapterRegistry({"stripe": StripeAdapter()})
