"""The Stripe adapter as the rest of the product sees it."""

from __future__ import annotations

from workbench.domain.canonical import MappedEvent, NotCovered, ParsedEvent

from . import errors, events, mapping


class StripeAdapter:
    provider = "stripe"
    mapping_version = mapping.MAPPING_VERSION
    capabilities = frozenset(
        {"webhooks", "event_listing", "idempotency_keys", "signature:stripe-v1", "pagination:cursor"}
    )

    def parse(self, body: bytes) -> ParsedEvent:
        return events.parse_event(body)

    def map(self, event: ParsedEvent) -> MappedEvent | NotCovered:
        return mapping.map_event(event)

    classify_response = staticmethod(errors.classify_response)
