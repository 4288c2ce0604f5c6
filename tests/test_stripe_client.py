"""The Stripe adapter's API client against real servers: localstripe (payment intents, events
page by page, lookup by our reference), a proxy that loses responses (a retry creates nothing
new), and a server answering every error class (each classified into its category)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from adapters.protocol import Calling
from adapters.stripe import StripeAdapter
from adapters.stripe.client import API_VERSION, REFERENCE_KEY, StripeClient, form_fields
from tests.stripe_servers import (  # fixtures are used by name
    API_KEY,
    LossyProxy,
    NewestFirstEvents,
    StatusServer,
    card_payment_method,
    free_port,
    localstripe,
    localstripe_server,
    lossy_proxy,
    newest_first_events,
    payment_intents,
    status_server,
)
from workbench.domain.taxonomy import Category

__all__ = ["localstripe", "localstripe_server", "lossy_proxy", "newest_first_events", "status_server"]  # fixtures


def _client(url: str, api_key: str | None = API_KEY, timeout_s: float = 5.0) -> StripeClient:
    adapter = StripeAdapter()
    assert isinstance(adapter, Calling)
    client = adapter.client(base_url=url, api_key=api_key, timeout_s=timeout_s)
    assert isinstance(client, StripeClient)
    return client


@pytest.fixture
def stripe(localstripe: str) -> Iterator[StripeClient]:
    client = _client(localstripe)
    yield client
    client.close()


def _create(client: StripeClient, url: str, reference: str, **extra: object) -> str:
    result = client.send("payment.create", {"amount": 1250, "currency": "eur", "payment_method": card_payment_method(url),
                                            **extra}, reference=reference, idempotency_key=f"key-{reference}")
    assert result.outcome.category is None, result.outcome
    assert result.status_code == 200 and result.method == "POST" and result.path == "/v1/payment_intents"
    assert result.body is not None and result.body["metadata"] == {REFERENCE_KEY: reference}
    return str(result.body["id"])


def test_form_fields_nest_the_way_stripe_reads_them() -> None:
    assert list(form_fields({"amount": 5, "metadata": {"a": "b"}, "types": ["card"], "confirm": True, "x": None})) == [
        ("amount", "5"), ("metadata[a]", "b"), ("types[0]", "card"), ("confirm", "true")]


def test_create_confirm_and_capture_a_payment(stripe: StripeClient, localstripe: str) -> None:
    intent = _create(stripe, localstripe, "cmd_pay_1", capture_method="manual")
    confirmed = stripe.send("payment.confirm", {"payment_intent": intent}, reference="cmd_pay_1", idempotency_key="k-c")
    assert confirmed.outcome.category is None and confirmed.body is not None
    assert confirmed.path == f"/v1/payment_intents/{intent}/confirm" and confirmed.body["status"] == "requires_capture"
    captured = stripe.send("payment.capture", {"payment_intent": intent}, reference="cmd_pay_1", idempotency_key="k-p")
    assert captured.outcome.category is None and captured.body is not None and captured.body["status"] == "succeeded"
    retrieved = stripe.retrieve(intent)
    assert retrieved.body is not None and retrieved.body["status"] == "succeeded"
    # A second capture of a captured intent is refused by the server, and classified, not raised.
    again = stripe.send("payment.capture", {"payment_intent": intent}, reference="cmd_pay_1", idempotency_key=None)
    assert again.status_code is not None and again.status_code >= 400 and again.outcome.category is not None


def test_cancel_a_payment_and_a_cancel_too_late_is_classified(stripe: StripeClient, localstripe: str) -> None:
    intent = _create(stripe, localstripe, "cmd_cancel")
    canceled = stripe.send("payment.cancel", {"payment_intent": intent}, reference="cmd_cancel", idempotency_key="k")
    assert canceled.outcome.category is None and canceled.body is not None and canceled.body["status"] == "canceled"
    twice = stripe.send("payment.cancel", {"payment_intent": intent}, reference="cmd_cancel", idempotency_key="k2")
    assert (twice.status_code, twice.outcome.category) == (400, Category.VALIDATION)
    missing = stripe.send("payment.confirm", {"payment_intent": "pi_doesnotexist"}, reference="x", idempotency_key=None)
    assert (missing.status_code, missing.outcome.category) == (404, Category.MISSING_DEPENDENCY)


def test_unknown_intents_and_ids_are_programming_errors(stripe: StripeClient) -> None:
    with pytest.raises(ValueError, match="no intent 'payment.refund'"):
        stripe.send("payment.refund", {}, reference="r", idempotency_key=None)
    with pytest.raises(ValueError, match="needs the payload's payment_intent"):
        stripe.send("payment.cancel", {}, reference="r", idempotency_key=None)
    with pytest.raises(ValueError, match="not a Stripe ID"):
        stripe.send("payment.cancel", {"payment_intent": "../v1/customers"}, reference="r", idempotency_key=None)


def test_lookup_by_reference_and_by_the_kept_id(stripe: StripeClient, localstripe: str) -> None:
    first = _create(stripe, localstripe, "cmd_a")
    _create(stripe, localstripe, "cmd_b")
    found = stripe.lookup("cmd_a")
    assert found.outcome.category is None and found.body is not None and found.body["id"] == first
    by_id = stripe.lookup("cmd_a", provider_id=first)
    assert by_id.outcome.category is None and by_id.body is not None and by_id.body["id"] == first
    wrong = stripe.lookup("cmd_b", provider_id=first)
    assert (wrong.outcome.category, wrong.outcome.code) == (Category.MISSING_DEPENDENCY, "reference_mismatch")
    nothing = stripe.lookup("cmd_never")
    assert (nothing.outcome.category, nothing.outcome.code) == (Category.MISSING_DEPENDENCY, "reference_not_found")
    assert nothing.body is None


def test_a_lookup_that_cannot_read_every_intent_does_not_say_not_found(localstripe: str, lossy_proxy: LossyProxy) -> None:
    client = StripeClient(base_url=lossy_proxy.url, api_key=API_KEY, lookup_pages=1, lookup_page_size=2)
    for i in range(3):
        _create(client, localstripe, f"cmd_many_{i}")
    assert client.lookup("cmd_many_0").outcome.category is None
    beyond = client.lookup("cmd_many_2")  # localstripe lists oldest first: the third is past the one page read
    assert (beyond.outcome.category, beyond.outcome.code) == (Category.UNKNOWN, "lookup_incomplete")
    lossy_proxy.lose("POST", "/v1/payment_intents")
    lost = client.send("payment.create", {"amount": 5, "currency": "eur"}, reference="cmd_many_3", idempotency_key=None)
    client.close()
    assert lost.outcome.category is Category.TIMEOUT  # not sent again: it might exist unseen
    assert lossy_proxy.forwarded.count(("POST", "/v1/payment_intents")) == 4
    assert len(payment_intents(localstripe)) == 4


def test_the_event_list_is_walked_page_by_page(stripe: StripeClient, localstripe: str) -> None:
    made = [_create(stripe, localstripe, f"cmd_ev_{i}", confirm=True) for i in range(5)]  # each succeeds: one event
    pages, cursor, seen = 0, None, list[dict[str, Any]]()
    while True:
        page = stripe.list_events(cursor, limit=2)
        assert page.call.outcome.category is None and len(page.bodies) <= 2
        pages += 1
        seen.extend(orjson.loads(body) for body in page.bodies)
        if page.next_cursor is None:
            break
        assert page.next_cursor == seen[-1]["id"]
        cursor = page.next_cursor
    succeeded = [event["data"]["object"]["id"] for event in seen if event["type"] == "payment_intent.succeeded"]
    assert succeeded == made  # oldest first, each once
    assert len({event["id"] for event in seen}) == len(seen) and pages == -(-len(seen) // 2)
    # Later events follow the last one seen (localstripe has no ending_before: read forwards).
    later = [_create(stripe, localstripe, f"cmd_late_{i}", confirm=True) for i in range(2)]
    page = stripe.list_events(seen[-1]["id"], limit=10)
    assert [orjson.loads(body)["data"]["object"]["id"] for body in page.bodies
            if orjson.loads(body)["type"] == "payment_intent.succeeded"] == later
    with pytest.raises(ValueError, match="1 to 100"):
        stripe.list_events(None, limit=0)


def _walk(client: StripeClient, cursor: str | None, limit: int) -> tuple[list[str], str | None]:
    seen: list[str] = []
    while True:
        page = client.list_events(cursor, limit=limit)
        assert page.call.outcome.category is None and len(page.bodies) <= limit
        seen.extend(orjson.loads(body)["id"] for body in page.bodies)
        cursor = page.next_cursor or (seen[-1] if seen else cursor)
        if page.next_cursor is None:
            return seen, cursor


def test_stripes_newest_first_list_is_walked_oldest_first(newest_first_events: NewestFirstEvents) -> None:
    client = _client(newest_first_events.url)
    assert _walk(client, None, 2) == ([], None)
    first = newest_first_events.add(5)
    seen, cursor = _walk(client, None, 2)
    assert seen == first and cursor == first[-1]  # from the oldest, each once
    later = newest_first_events.add(3)
    assert _walk(client, cursor, 2) == (later, later[-1])  # then what came after, oldest first
    assert _walk(client, later[-1], 2) == ([], later[-1])
    client.close()


def test_the_cursor_at_a_time_is_the_newest_event_before_it(stripe: StripeClient, localstripe: str,
                                                            newest_first_events: NewestFirstEvents) -> None:
    _create(stripe, localstripe, "cmd_rewind", confirm=True)
    every, _ = _walk(stripe, None, 100)  # localstripe lists oldest first: the newest is on its last page
    assert stripe.cursor_at(datetime.now(UTC) + timedelta(seconds=5)).cursor == every[-1]
    long_ago = stripe.cursor_at(datetime(2000, 1, 1, tzinfo=UTC))
    assert long_ago.call.outcome.category is None and long_ago.cursor is None  # nothing older: from the start
    # Stripe lists newest first: the first event older than the time is the cursor, one call.
    client = _client(newest_first_events.url)
    made = newest_first_events.add(3)  # created at 1_700_000_000
    assert client.cursor_at(datetime.fromtimestamp(1_700_000_000, UTC)).cursor is None
    found = client.cursor_at(datetime.fromtimestamp(1_700_000_001, UTC))
    assert found.cursor == made[-1] and found.calls == 2  # (and the one probe of the list's order)
    assert client.cursor_at(datetime.fromtimestamp(1_700_000_001, UTC)).calls == 1
    client.close()


def test_a_lost_create_response_is_looked_up_not_sent_again(lossy_proxy: LossyProxy, localstripe: str) -> None:
    client = _client(lossy_proxy.url)
    lossy_proxy.lose("POST", "/v1/payment_intents")  # the server creates it; its answer is lost
    result = client.send("payment.create", {"amount": 990, "currency": "usd"}, reference="cmd_lost",
                         idempotency_key="key-lost")  # localstripe ignores the key: no help from it
    client.close()
    assert result.outcome.category is None and result.body is not None
    made = [pi for pi in payment_intents(localstripe) if pi["metadata"].get(REFERENCE_KEY) == "cmd_lost"]
    assert [pi["id"] for pi in made] == [result.body["id"]]  # exactly one, the one answered
    assert lossy_proxy.forwarded.count(("POST", "/v1/payment_intents")) == 1


def test_a_create_that_never_arrived_is_sent_again_once(lossy_proxy: LossyProxy, localstripe: str) -> None:
    client = _client(lossy_proxy.url)
    lossy_proxy.lose("POST", "/v1/payment_intents", before=True)  # dropped unsent: nothing was made
    result = client.send("payment.create", {"amount": 990, "currency": "usd"}, reference="cmd_unsent",
                         idempotency_key="key-unsent")
    client.close()
    assert result.outcome.category is None and result.body is not None
    made = [pi for pi in payment_intents(localstripe) if pi["metadata"].get(REFERENCE_KEY) == "cmd_unsent"]
    assert [pi["id"] for pi in made] == [result.body["id"]]


def test_a_lost_create_with_the_provider_unreachable_after_is_not_resent(lossy_proxy: LossyProxy) -> None:
    client = _client(lossy_proxy.url)
    lossy_proxy.lose("POST", "/v1/payment_intents")
    lossy_proxy.lose("GET", "/v1/payment_intents")  # and the lookup's answer too: nobody can tell
    result = client.send("payment.create", {"amount": 990, "currency": "usd"}, reference="cmd_unknown",
                         idempotency_key=None)
    client.close()
    assert result.outcome.category is Category.TIMEOUT and result.status_code is None
    assert lossy_proxy.forwarded.count(("POST", "/v1/payment_intents")) == 1


@pytest.mark.parametrize(("status", "category"), [
    (400, Category.VALIDATION), (401, Category.AUTHENTICATION), (403, Category.AUTHORIZATION),
    (404, Category.MISSING_DEPENDENCY), (409, Category.BUSINESS_RULE_REJECTION), (422, Category.VALIDATION),
    (429, Category.RATE_LIMIT), (500, Category.PROVIDER_OUTAGE), (502, Category.PROVIDER_OUTAGE),
    (503, Category.PROVIDER_OUTAGE),
])
def test_every_error_status_is_classified(status_server: StatusServer, status: int, category: Category) -> None:
    client = _client(f"{status_server.url}/status/{status}")
    result = client.retrieve("pi_1")
    client.close()
    assert (result.status_code, result.outcome.category) == (status, category)
    assert result.outcome.retry_after_s == (7.0 if status == 429 else None)
    assert API_KEY not in result.outcome.message and "****" in result.outcome.message  # the server echoed it
    assert status_server.seen_headers[-1]["Authorization"] == f"Bearer {API_KEY}"
    assert status_server.seen_headers[-1]["Stripe-Version"] == API_VERSION


@pytest.mark.parametrize(("answer", "category"), [
    ("html", Category.CONTRACT_MISMATCH), ("no-object", Category.CONTRACT_MISMATCH), ("list", Category.CONTRACT_MISMATCH),
    ("redirect", Category.CONTRACT_MISMATCH),
])
def test_unexpected_shapes_are_contract_mismatches(status_server: StatusServer, answer: str, category: Category) -> None:
    client = _client(f"{status_server.url}/raw/{answer}")
    assert client.retrieve("pi_1").outcome.category is category
    client.close()


def test_an_event_page_of_the_wrong_shape_is_a_contract_mismatch(status_server: StatusServer) -> None:
    client = _client(f"{status_server.url}/raw/bad-events")
    page = client.list_events(None)
    client.close()
    assert page.bodies == [] and page.next_cursor is None
    assert page.call.outcome.category is Category.CONTRACT_MISMATCH


def test_a_timeout_and_a_refused_connection_are_classified(status_server: StatusServer) -> None:
    client = _client(f"{status_server.url}/hang", timeout_s=0.2)
    result = client.retrieve("pi_1")
    client.close()
    assert (result.status_code, result.outcome.category) == (None, Category.TIMEOUT)
    refused = _client(f"http://127.0.0.1:{free_port()}").retrieve("pi_1")  # nothing listens there
    assert (refused.status_code, refused.outcome.category, refused.outcome.code) == (
        None, Category.PROVIDER_OUTAGE, "unreachable")


def test_without_a_key_the_call_is_unauthenticated(localstripe: str) -> None:
    client = _client(localstripe, api_key=None)
    result = client.retrieve("pi_1")
    client.close()
    assert (result.status_code, result.outcome.category) == (401, Category.AUTHENTICATION)


def test_writes_carry_the_idempotency_key_and_a_form_body(status_server: StatusServer) -> None:
    client = _client(f"{status_server.url}/status/402")
    declined = client.send("payment.create", {"amount": 5, "currency": "eur"}, reference="cmd_k", idempotency_key="key-1")
    unkeyed = client.send("payment.cancel", {"payment_intent": "pi_1"}, reference="cmd_k", idempotency_key=None)
    client.close()
    keyed_headers, unkeyed_headers = status_server.seen_headers[-2:]
    assert keyed_headers["Idempotency-Key"] == "key-1" and "Idempotency-Key" not in unkeyed_headers
    assert keyed_headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert declined.outcome.category is Category.BUSINESS_RULE_REJECTION and declined.outcome.category is \
        unkeyed.outcome.category
