"""Which adapter serves which provider name."""

from __future__ import annotations

from collections.abc import Callable

from .protocol import Adapter


class UnknownProvider(LookupError):
    pass


class AdapterRegistry:
    """Adapters by provider name. An entry may be an adapter or a zero-argument factory
    (`lazy=`), made on first use, so that opening the workbench does not import every
    provider's code (and pydantic with it) before it is needed."""

    def __init__(self, adapters: dict[str, Adapter] | None = None, *,
                 lazy: dict[str, Callable[[], Adapter]] | None = None) -> None:
        self._adapters = dict(adapters or {})
        self._factories = dict(lazy or {})

    def get(self, provider: str) -> Adapter:
        adapter = self._adapters.get(provider)
        if adapter is None:
            factory = self._factories.get(provider)
            if factory is None:
                raise UnknownProvider(f"unknown provider {provider!r} (known: {', '.join(self.names())})")
            adapter = self._adapters[provider] = factory()
        return adapter

    def names(self) -> list[str]:
        return sorted(set(self._adapters) | set(self._factories))


def _stripe() -> Adapter:
    from .stripe import StripeAdapter

    return StripeAdapter()


def _payroll() -> Adapter:
    from .payroll import PayrollAdapter

    return PayrollAdapter()


def default_registry() -> AdapterRegistry:
    return AdapterRegistry(lazy={"stripe": _stripe, "payroll": _payroll})
