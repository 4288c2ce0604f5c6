"""The Stripe adapter as the rest of the product sees it."""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

from adapters.protocol import Capabilities, Pagination, ProviderClient, PushCommand, SignatureCheck, WebhookSecret
from workbench.domain.canonical import MappedEvent, NotCovered, ParsedEvent

from . import commands, errors, events, mapping, signature, simulator
from .client import StripeClient

_PUSHED_STATUS = {"cancelled": "payment.cancel", "completed": "payment.capture", "processing": "payment.confirm"}


class StripeAdapter:
    """Implements adapters.protocol.Adapter, SignatureVerifying, Calling (its client: Reconciling),
    Commanding, Pushing and Simulating."""

    provider = "stripe"
    mapping_version = mapping.MAPPING_VERSION
    # lookup_by_reference: our reference rides in the intent's metadata (see client.lookup).
    capabilities = Capabilities(webhooks=True, event_listing=True, idempotency_keys=True, lookup_by_reference=True,
                                signature_scheme=signature.SCHEME,
                                pagination=Pagination.CURSOR, rate_limit_signals=errors.RATE_LIMIT_SIGNALS,
                                intents=commands.INTENTS, record_kind=mapping.KIND,
                                reconcile_by="list", rate_limit_per_s=25.0)

    # Personal data and secrets Stripe puts where the core's detectors cannot tell them by
    # shape or name (a name, an address, a phone number, a client secret of any shape).
    redacted_paths = (
        "data.object.client_secret",
        "data.object.billing_details.email", "data.object.billing_details.name",
        "data.object.billing_details.phone", "data.object.billing_details.address",
        "data.object.shipping.name", "data.object.shipping.phone", "data.object.shipping.address",
        "data.object.receipt_email",
        "data.object.charges.data.billing_details",
        "data.object.payment_method_details.card.fingerprint",
        "data.object.last_payment_error.payment_method.billing_details",
    )

    check_command = staticmethod(commands.check_command)
    command_result = staticmethod(commands.command_result)

    def parse(self, body: bytes) -> ParsedEvent:
        return events.parse_event(body)

    def map(self, event: ParsedEvent) -> MappedEvent | NotCovered:
        return mapping.map_event(event)

    classify_response = staticmethod(errors.classify_response)

    def verify_signature(self, headers: Mapping[str, str], body: bytes, secrets: Sequence[WebhookSecret],
                         now: datetime, tolerance_s: int = 300) -> SignatureCheck:
        return signature.verify(headers, body, secrets, now, tolerance_s)

    def push_command(self, kind: str, provider_id: str, field: str, ours: Any) -> PushCommand | None:
        """Our status pushed back: cancelled -> payment.cancel, completed -> payment.capture,
        processing -> payment.confirm. No intent of ours sets another field on an intent."""
        intent = _PUSHED_STATUS.get(ours) if kind == mapping.KIND and field == "status" else None
        return PushCommand(intent, {"payment_intent": provider_id}) if intent else None

    def client(self, *, base_url: str | None, api_key: str | None, timeout_s: float = 10.0) -> ProviderClient:
        # Typed as the protocol so that mypy checks StripeClient against it.
        return StripeClient(base_url=base_url, api_key=api_key, timeout_s=timeout_s)

    # Simulation, for demo data and benchmarks: realistic traffic without a network.
    def simulate_captures(self, *, intents: int, seed: int, duplicate_rate: float = 0.05,
                          livemode: bool = False) -> Iterator[dict[str, Any]]:
        settings = simulator.SimulatorSettings(intents=intents, seed=seed, duplicate_rate=duplicate_rate,
                                               livemode=livemode)
        return simulator.captures(settings)

    def simulate_call(self, rng: random.Random) -> tuple[int | None, dict[str, Any], dict[str, str]]:
        return simulator.api_outcome(rng)
