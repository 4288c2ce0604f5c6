"""Property-based: arrival order and redelivery never change the belief we end with."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings, strategies as st
from sqlalchemy import select

from store.database import reading
from store.models import ProviderRef, Record
from tests.support import T0, capture, pi_event
from workbench.services import connections
from workbench.services.ingest import ingest

# Legal next steps of a Stripe payment intent, as (event type, object status).
STEPS: dict[str, list[tuple[str, str]]] = {
    "requires_payment_method": [("payment_intent.requires_action", "requires_action"),
                                ("payment_intent.processing", "processing"),
                                ("payment_intent.amount_capturable_updated", "requires_capture"),
                                ("payment_intent.payment_failed", "requires_payment_method"),
                                ("payment_intent.succeeded", "succeeded"),
                                ("payment_intent.canceled", "canceled")],
    "requires_action": [("payment_intent.processing", "processing"),
                        ("payment_intent.payment_failed", "requires_payment_method"),
                        ("payment_intent.succeeded", "succeeded"), ("payment_intent.canceled", "canceled")],
    "processing": [("payment_intent.succeeded", "succeeded"),
                   ("payment_intent.payment_failed", "requires_payment_method"),
                   ("payment_intent.canceled", "canceled")],
    "requires_capture": [("payment_intent.succeeded", "succeeded"), ("payment_intent.canceled", "canceled")],
}


@st.composite
def lifecycles(draw: Any) -> list[dict[str, Any]]:
    """Events of 1-3 payment intents, each a legal walk with non-decreasing `created` (ties
    included), in the order they happened."""
    events: list[dict[str, Any]] = []
    for n in range(draw(st.integers(1, 3))):
        pi = f"pi_{n}"
        created = int(T0.timestamp()) + draw(st.integers(0, 5))
        status, event_type = "requires_payment_method", "payment_intent.created"
        amount = draw(st.sampled_from([1000, 2000]))
        for step in range(draw(st.integers(1, 6))):
            events.append(pi_event(f"evt_{n}_{step}", pi, status, created, event_type, amount=amount))
            if status not in STEPS:
                break
            event_type, status = draw(st.sampled_from(STEPS[status]))
            created += draw(st.integers(0, 2))
            amount += draw(st.sampled_from([0, 0, 100]))
    return events


def _belief(ctx: Any, connection_id: str) -> dict[str, tuple[str, dict[str, Any]]]:
    records, refs = Record.__table__, ProviderRef.__table__
    with reading(ctx.engine) as conn:
        rows = conn.execute(select(refs.c.external_id, records.c.status, records.c.fields, records.c.version)
                            .join(records, records.c.id == refs.c.record_id)
                            .where(records.c.connection_id == connection_id)).all()
    return {row.external_id: (row.status, row.fields) for row in rows}


def _versions(ctx: Any, connection_id: str) -> dict[str, int]:
    records = Record.__table__
    with reading(ctx.engine) as conn:
        return dict(conn.execute(select(records.c.id, records.c.version)
                                 .where(records.c.connection_id == connection_id)).all())


def _fresh_connection(ctx: Any) -> tuple[str, str]:
    # One store per test run; a new connection per example keeps examples independent.
    name = f"c-{uuid.uuid4().hex[:10]}"
    return name, connections.add_connection(ctx, name, "stripe").id


PROPERTY_SETTINGS = settings(max_examples=40, deadline=None,
                             suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@PROPERTY_SETTINGS
@given(data=st.data())
def test_any_permutation_and_duplication_ends_in_the_in_order_state(ctx, data):
    events = data.draw(lifecycles())
    shuffled = data.draw(st.permutations(events))
    repeats = data.draw(st.lists(st.sampled_from(events), max_size=len(events)))
    arrival = data.draw(st.permutations(shuffled + repeats))
    batch_size = data.draw(st.integers(1, 8))

    in_order, in_order_id = _fresh_connection(ctx)
    ingest(ctx, in_order, [capture(e) for e in events])
    scrambled, scrambled_id = _fresh_connection(ctx)
    # Each arrival its own receipt: a redelivery, not the same capture line again.
    report = ingest(ctx, scrambled, [capture(e, T0 + timedelta(seconds=i)) for i, e in enumerate(arrival)],
                    batch_size=batch_size)

    assert _belief(ctx, scrambled_id) == _belief(ctx, in_order_id)
    assert report.counts["duplicate"] == len(repeats)
    assert report.total == len(arrival)


@PROPERTY_SETTINGS
@given(data=st.data())
def test_ingesting_twice_equals_ingesting_once(ctx, data):
    events = data.draw(lifecycles())
    arrival = data.draw(st.permutations(events))
    name, connection_id = _fresh_connection(ctx)
    ingest(ctx, name, [capture(e) for e in arrival])
    belief, versions = _belief(ctx, connection_id), _versions(ctx, connection_id)
    again = ingest(ctx, name, [capture(e) for e in arrival])
    assert again.counts == {"already_stored": len(arrival)}  # the same capture lines: nothing stored again
    assert _belief(ctx, connection_id) == belief
    assert _versions(ctx, connection_id) == versions
