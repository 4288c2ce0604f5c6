"""A connection's way to its provider's API: where to call (settings `api.base_url`, the
provider's real API when unset) and with which key (the connection's newest active `api_key`
reference, read from its environment's vault). The key goes to the adapter's client and
nowhere else: not into a message, a log or a stored row."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from adapters.protocol import Calling, ProviderClient
from workbench.domain.connection_config import check_base_url

from . import access, secret_refs
from .connections import ConnectionInfo, get_connection, update_settings
from .context import ServiceContext
from .errors import InvalidArgument, ServiceError
from .payload_crypto import NO_VAULTS, PASSPHRASE_ENV, Vaults


class ProviderUnavailable(ServiceError):
    """The connection cannot call its provider yet (no client, no key, vault locked)."""


def validated_base_url(url: str) -> str:
    """`url` checked as an API base URL (one line naming what is wrong, never the URL)."""
    try:
        return check_base_url(url)
    except ValueError as exc:
        raise InvalidArgument(f"--base-url: {exc}") from None


def base_url(settings: dict[str, Any]) -> str | None:
    """The base URL a connection's settings name (None: the provider's real API)."""
    api = settings.get("api")
    url = api.get("base_url") if isinstance(api, dict) else None
    return url if isinstance(url, str) else None


def with_base_url(settings: dict[str, Any], url: str | None) -> dict[str, Any]:
    """`settings` pointing at `url` (None: back to the provider's real API)."""
    api = dict(settings["api"]) if isinstance(settings.get("api"), dict) else {}
    if url is None:
        api.pop("base_url", None)  # the default needs no key: an unset URL changes nothing
    else:
        api["base_url"] = validated_base_url(url)
    if api:
        settings["api"] = api
    else:
        settings.pop("api", None)
    return settings


def set_base_url(ctx: ServiceContext, name: str, url: str | None, reason: str) -> ConnectionInfo:
    """Point connection `name` at `url` (None: the real API), as a new audited version."""
    access.require(ctx, "config")
    if not reason.strip():
        raise InvalidArgument("a reason is required: it is kept in the connection's history")
    checked = validated_base_url(url) if url is not None else None  # refused before anything is read
    return update_settings(ctx, name, lambda settings: with_base_url(settings, checked), "connection.set", reason)


def open_client(ctx: ServiceContext, name: str, vaults: Vaults = NO_VAULTS, *, timeout_s: float = 10.0,
                now: datetime | None = None) -> ProviderClient:
    """A client for connection `name`'s provider, with its API key from the vault. The caller
    closes it. Refuses, in one line, when the adapter cannot call out, the connection has no
    active API key, or its environment's vault is locked."""
    access.require(ctx, "call")
    info = get_connection(ctx, name)
    adapter = ctx.adapters.get(info.provider)
    if not isinstance(adapter, Calling):
        raise ProviderUnavailable(f"the {info.provider} adapter cannot call its provider's API")
    refs = secret_refs.active_secrets(ctx, name, "api_key", now or ctx.clock())
    if not refs:
        raise ProviderUnavailable(f"{name} has no active API key: add one with "
                                  f"`workbench connection secret add {name} --kind api_key`")
    vault = vaults.get(info.environment)
    if vault is None:
        raise ProviderUnavailable(f"calling {name}'s provider needs the {info.environment} vault for its API key: "
                                  f"set {PASSPHRASE_ENV}, or run on a terminal to be asked")
    key = secret_refs.secret_values(vault, refs[:1])[0]
    return adapter.client(base_url=base_url(info.settings), api_key=key.value, timeout_s=timeout_s)
