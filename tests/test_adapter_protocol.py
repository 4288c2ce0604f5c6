"""The adapter protocol: what the core relies on, what Stripe declares, and that the core needs
nothing more of an adapter than the protocol."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import pytest
from sqlalchemy import select

from adapters import Adapter, AdapterRegistry, Capabilities, ClassifiedOutcome, Pagination, Simulating
from adapters.protocol import Calling, Rewinding
from adapters.registry import default_registry
from store.database import reading
from store.models import Connection as ConnectionRow, Delivery
from tests.support import add_stripe, capture, make_context
from workbench.domain.canonical import MappedEvent, NotCovered, ParsedEvent
from workbench.domain.taxonomy import Category
from workbench.services.demo import build_demo
from workbench.services.errors import ServiceError
from workbench.services.ingest import ingest


def test_stripe_declares_what_it_offers():
    adapter = default_registry().get("stripe")
    caps = adapter.capabilities
    assert isinstance(caps, Capabilities)
    assert caps.signature_scheme == "stripe-v1"
    assert (caps.webhooks, caps.idempotency_keys, caps.pagination) == (True, True, Pagination.CURSOR)
    with pytest.raises(dataclasses.FrozenInstanceError):
        caps.signature_scheme = "stripe-v1"  # the point: it is frozen
    assert isinstance(adapter, Simulating)


def test_every_polling_adapter_says_how_to_rewind_its_cursor():
    """`workbench connection rewind` asks the connection's client (adapters.protocol.Rewinding)."""
    registry = default_registry()
    for provider in ("stripe", "payroll"):
        adapter = registry.get(provider)
        assert adapter.capabilities.event_listing and isinstance(adapter, Calling)
        client = adapter.client(base_url="http://127.0.0.1:9", api_key=None)
        try:
            assert isinstance(client, Rewinding), provider
        finally:
            client.close()


def test_stripe_rate_limit_signals_are_the_ones_its_classifier_reads():
    adapter = default_registry().get("stripe")
    signals = adapter.capabilities.rate_limit_signals
    assert signals
    for signal in signals:
        kind, _, value = signal.partition(":")
        if kind == "status":
            assert adapter.classify_response(int(value), {}).category is Category.RATE_LIMIT
        else:
            assert kind == "header"
            outcome = adapter.classify_response(429, {}, {value: "7"})
            assert isinstance(outcome, ClassifiedOutcome) and outcome.retry_after_s == 7.0


class TinyAdapter:
    """A provider that is not Stripe, implementing the protocol and nothing else: each body is
    `<event id>:<status>` for a made-up `widget` record."""

    provider = "stripe"  # registered under the name the test connection uses
    mapping_version = "tiny/1"
    capabilities = Capabilities(webhooks=True)
    redacted_paths = ("data.owner",)

    def parse(self, body: bytes) -> ParsedEvent:
        event_id, _, status = body.decode().partition(":")
        return ParsedEvent(event_id, f"widget.{status}", None, {"status": status})

    def map(self, event: ParsedEvent) -> MappedEvent | NotCovered:
        return NotCovered(f"{event.event_type} is not covered by tiny/1")

    def classify_response(self, status_code: int | None, body: Mapping[str, Any] | None = None,
                          headers: Mapping[str, str] | None = None, *, timed_out: bool = False) -> ClassifiedOutcome:
        return ClassifiedOutcome(None if status_code == 200 else Category.UNKNOWN, str(status_code), "")


def test_ingest_needs_nothing_of_an_adapter_but_the_protocol(engine):
    tiny: Adapter = TinyAdapter()
    ctx = dataclasses.replace(make_context(engine), adapters=AdapterRegistry({"stripe": tiny}))
    add_stripe(ctx)
    report = ingest(ctx, "acme", [capture(b"w1:created"), capture(b"w2:shipped")])
    assert report.counts == {"ignored": 2}
    with reading(engine) as conn:
        rows = conn.execute(select(Delivery.__table__.c.provider_event_id, Delivery.__table__.c.mapping_version,
                                   Delivery.__table__.c.verdict_reason)
                            .order_by(Delivery.__table__.c.provider_event_id)).all()
    # An event the mapping does not cover still names the mapping version that said so.
    assert [tuple(r) for r in rows] == [("w1", "tiny/1", "widget.created is not covered by tiny/1"),
                                        ("w2", "tiny/1", "widget.shipped is not covered by tiny/1")]


def test_demo_refuses_an_adapter_that_cannot_simulate_before_writing_anything(engine):
    ctx = dataclasses.replace(make_context(engine), adapters=AdapterRegistry({"stripe": TinyAdapter()}))
    with pytest.raises(ServiceError, match="cannot simulate traffic"):
        build_demo(ctx, records_total=20)
    with reading(engine) as conn:
        assert conn.execute(select(ConnectionRow.__table__.c.id)).first() is None
