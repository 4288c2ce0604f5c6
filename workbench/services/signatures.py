"""Signature verdicts: a connection with active webhook secrets gets each delivery's signature
checked by its adapter (see adapters.protocol.SignatureVerifying). A delivery whose signature
fails is stored with verdict `rejected` and changes no state; one whose connection has no
secret (or whose adapter verifies none) stays `unchecked`.

The secrets are read from the vault once per run, here, so the per-delivery cost is one HMAC
per secret tried and a lower-cased copy of the headers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from adapters import Adapter
from adapters.protocol import SignatureCheck, SignatureVerifying, WebhookSecret
from workbench.domain.connection_config import WebhookSettings

from .captures import Capture, Headers
from .connections import ConnectionInfo
from .context import ServiceContext
from .errors import ServiceError
from .ingest_prepare import signature_problem
from .payload_crypto import Vaults
from .secret_refs import active_secrets, secret_values

WEBHOOK_SECRET = "webhook_secret"
UNCHECKED = SignatureCheck("unchecked")


class SignaturesLocked(ServiceError):
    """The connection has webhook secrets but their vault is locked."""


def webhook_settings(settings: Mapping[str, Any]) -> WebhookSettings:
    return WebhookSettings.model_validate(settings.get("webhooks") or {})


def lower_headers(headers: Headers) -> dict[str, str]:
    """Header names in lower case (the last of a repeated header wins)."""
    if isinstance(headers, dict):
        return {name.lower(): value for name, value in headers.items()}
    return {pair[0].lower(): pair[1] for pair in headers}


@dataclass(frozen=True, slots=True)
class SignatureChecker:
    """A connection's webhook secrets and tolerance, ready to check deliveries with."""

    verify: Callable[[Mapping[str, str], bytes, Sequence[WebhookSecret], datetime, int], SignatureCheck]
    secrets: tuple[WebhookSecret, ...]
    tolerance_s: int

    def check(self, headers: Mapping[str, str], body: bytes, received_at: datetime) -> SignatureCheck:
        """`headers` already in lower case (the receiver has them so)."""
        return self.verify(headers, body, self.secrets, received_at, self.tolerance_s)

    def __call__(self, capture: Capture) -> SignatureCheck:
        # Against the delivery's receipt, not now: a capture ingested later is judged as it arrived.
        return self.verify(lower_headers(capture.headers), capture.body, self.secrets, capture.received_at,
                           self.tolerance_s)


def failure_message(result: SignatureCheck) -> str:
    """One line for a failed check: which secret was tried and why, never a value."""
    return signature_problem(result).message


def checker_for(ctx: ServiceContext, connection: ConnectionInfo, adapter: Adapter, vaults: Vaults,
                now: datetime) -> SignatureChecker | None:
    """The connection's checker, or None when there is nothing to check with (its adapter
    verifies no scheme, or it has no active webhook secret): its deliveries stay `unchecked`.
    Secrets and a locked vault: SignaturesLocked, before anything is stored."""
    if not isinstance(adapter, SignatureVerifying):
        return None
    refs = active_secrets(ctx, connection.name, WEBHOOK_SECRET, now)
    if not refs:
        return None
    try:
        vault = vaults[connection.environment]
    except KeyError:
        raise SignaturesLocked(
            f"connection {connection.name!r} checks webhook signatures with secrets in the {connection.environment} "
            "vault, which is locked: set WORKBENCH_VAULT_PASSPHRASE (or run on a terminal to be asked)") from None
    secrets = tuple(WebhookSecret(found.reference.name, found.value) for found in secret_values(vault, refs))
    return SignatureChecker(adapter.verify_signature, secrets, webhook_settings(connection.settings).tolerance_s)
