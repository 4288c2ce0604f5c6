"""Every failure category is reachable through a real path and carries its policy."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import orjson
import pytest
from sqlalchemy import select

from adapters.stripe.simulator import API_OUTCOMES
from store.database import reading, writing
from store.models import Command, Failure
from tests.support import T0, add_stripe, capture, pi_event
from workbench.domain.taxonomy import POLICIES, Category, TriageState, policy_for
from workbench.services import commands, triage
from workbench.services.ingest import ingest

CREATED = int(T0.timestamp())

# path -> (status, body, headers): a local stand-in for the provider's API, served for real.
ROUTES: dict[str, tuple[int, dict, dict[str, str]]] = {
    f"/case/{i}": (status, body, headers) for i, (_w, status, body, headers) in enumerate(API_OUTCOMES)
    if status is not None
}


class _Provider(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # http.server's naming
        if self.path == "/slow":
            time.sleep(1.0)
        status, body, headers = ROUTES.get(self.path, (200, {}, {}))
        payload = orjson.dumps(body)
        self.send_response(status)
        for key, value in {"Content-Type": "application/json", **headers}.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def provider_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Provider)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def _call_and_record(ctx, connection, provider_url: str, path: str) -> Category | None:
    adapter = ctx.adapters.get("stripe")
    started = time.monotonic()
    try:
        response = httpx.post(provider_url + path, json={"amount": 100}, timeout=0.3)
        status, body, headers, timed_out = response.status_code, response.json(), dict(response.headers), False
    except httpx.TimeoutException:
        status, body, headers, timed_out = None, None, {}, True
    outcome = adapter.classify_response(status, body, headers, timed_out=timed_out)
    with writing(ctx.engine) as conn:
        command_id = commands.enqueue(conn, ctx, connection_id=connection.id, record_id=None,
                                      intent="capture_payment", payload={"amount": 100})
        command = conn.execute(select(Command.__table__).where(Command.__table__.c.id == command_id)).one()
        commands.record_attempt(conn, ctx, command=command, provider="stripe", number=1, request={"path": path},
                                response_status=status, response_body=None,
                                latency_ms=int((time.monotonic() - started) * 1000),
                                category=outcome.category, code=outcome.code, message=outcome.message)
    return outcome.category


def _ingest_problems(ctx) -> None:
    ingest(ctx, "acme", [
        capture(b"{not json"),                                                          # validation
        capture({"id": "evt_nodata", "type": "payment_intent.succeeded", "created": CREATED}),  # contract
        capture(pi_event("evt_neg", "pi_neg", "processing", CREATED, amount=-1)),          # validation
        capture({"id": "evt_ch", "type": "payment_intent.succeeded", "created": CREATED,
                 "data": {"object": {"id": "ch_1", "object": "charge"}}}),                 # mapping failure
        capture(pi_event("evt_done", "pi_1", "succeeded", CREATED)),
        capture(pi_event("evt_back", "pi_1", "processing", CREATED + 9)),                  # business rule
        capture(pi_event("evt_new", "pi_2", "requires_review", CREATED, "payment_intent.updated")),  # contract
    ])


def test_every_category_is_reachable_and_opens_with_its_policy(ctx, provider_url):
    connection = add_stripe(ctx)
    _ingest_problems(ctx)
    seen = {_call_and_record(ctx, connection, provider_url, path) for path in ROUTES}
    seen.add(_call_and_record(ctx, connection, provider_url, "/slow"))
    assert Category.TIMEOUT in seen and None in seen  # a success opens nothing

    with reading(ctx.engine) as conn:
        rows = conn.execute(select(Failure.__table__)).all()
    by_category = {}
    for row in rows:
        by_category.setdefault(row.category, set()).add(row.state)
    assert set(by_category) == {c.value for c in Category}
    for category, states in by_category.items():
        assert states == {policy_for(Category(category)).initial_state.value}, category


def test_policies_follow_the_taxonomy():
    assert len(POLICIES) == 13
    assert policy_for(Category.RATE_LIMIT).retryable and policy_for(Category.TIMEOUT).retryable
    assert policy_for(Category.DUPLICATE).initial_state == TriageState.IGNORED
    assert policy_for(Category.STALE_DATA).initial_state == TriageState.IGNORED
    assert policy_for(Category.AUTHENTICATION).alert and not policy_for(Category.AUTHENTICATION).retryable
    assert policy_for(Category.PROVIDER_OUTAGE).alert
    for category in (Category.VALIDATION, Category.CONTRACT_MISMATCH, Category.MAPPING_FAILURE,
                     Category.BUSINESS_RULE_REJECTION, Category.UNKNOWN, Category.AUTHORIZATION):
        assert policy_for(category).initial_state == TriageState.NEEDS_REVIEW


def test_failure_detail_shows_the_policy(ctx):
    add_stripe(ctx)
    _ingest_problems(ctx)
    with reading(ctx.engine) as conn:
        failure_id = conn.execute(select(Failure.__table__.c.id)
                                  .where(Failure.__table__.c.category == "business_rule_rejection")).scalar_one()
    detail = triage.failure_detail(ctx, failure_id)
    assert detail["policy"]["description"] == "block downstream workflow, needs review"
    assert detail["policy"]["recovery"] == "block_workflow"
