"""Redaction: secrets never reach a screen or an export, however deeply they are nested."""

from __future__ import annotations

import copy
import io

import orjson
import pytest

from tests.support import T0, add_stripe, capture, pi_event
from workbench.domain.redaction import MASK, is_sensitive_key, redact, redact_text
from workbench.services import audit, connections, triage
from workbench.services.ingest import ingest
from workbench.services.queries import iter_failures
from workbench.services.timeline import delivery_payload, load_timeline

SK_LIVE = "sk_live_51HabcdEFGHijklMNOPqrstu"
CLIENT_SECRET = "pi_3Abc123_secret_Zyx987Wvu654"
CREATED_AT = int(T0.timestamp())


# -- the pure function ---------------------------------------------------------------------------

def test_nested_secret_keys_are_masked_at_any_depth():
    value = {
        "headers": {"Authorization": "Bearer abc", "Content-Type": "application/json"},
        "data": {"object": {"id": "pi_1", "client_secret": "whatever-shape", "amount": 100,
                            "charges": [{"payment_method": {"card": {"cvc": "123", "last4": "4242"}}}]}},
        "items": [[{"password": 99}], {"refresh_token": "r1"}],
    }
    out = redact(value)
    assert out["headers"] == {"Authorization": MASK, "Content-Type": "application/json"}
    assert out["data"]["object"]["client_secret"] == MASK
    assert out["data"]["object"]["amount"] == 100 and out["data"]["object"]["id"] == "pi_1"
    assert out["data"]["object"]["charges"][0]["payment_method"]["card"] == {"cvc": MASK, "last4": "4242"}
    assert out["items"] == [[{"password": MASK}], {"refresh_token": MASK}]


def test_secret_shaped_values_are_masked_wherever_they_appear():
    out = redact({"note": f"rotated {SK_LIVE} today", "list": [f"secret is {CLIENT_SECRET}"],
                  "webhook": "whsec_abcdefghijklmnop", "auth": "bearer abcdefghijkl.mnop"})
    text = orjson.dumps(out).decode()
    for secret in (SK_LIVE, CLIENT_SECRET, "whsec_abcdefghijklmnop", "abcdefghijkl.mnop"):
        assert secret not in text
    assert out["note"] == f"rotated {MASK} today"


def test_card_numbers_in_text_are_masked_without_eating_the_surrounding_words():
    assert redact_text("card 4242 4242 4242 4242 declined") == f"card {MASK} declined"
    assert redact_text("card 4242-4242-4242-4242.") == f"card {MASK}."


def test_header_style_and_camel_case_secret_names_are_masked():
    for key in ("Authorization", "AUTHORIZATION", "Proxy-Authorization", "X-Api-Key", "X-API-Key",
                "X-Auth-Token", "X-Webhook-Secret", "clientSecret", "apiKey", "Set-Cookie"):
        assert is_sensitive_key(key), key
        assert redact({key: "s3cr3t-value"}) == {key: MASK}
    for key in ("idempotency_key", "Stripe-Signature", "Content-Type", "status", "description"):
        assert not is_sensitive_key(key), key


def test_redaction_keeps_shape_and_leaves_the_input_untouched():
    value = {"a": [1, 2.5, None, True], "client_secret": None, "token": "", "b": {"c": "plain"}}
    original = copy.deepcopy(value)
    assert redact(value) == value  # empty secrets stay as they are: nothing to hide
    value["b"]["secret"] = "x"
    snapshot = copy.deepcopy(value)
    redact(value)
    assert value == snapshot and original["b"] == {"c": "plain"}


# -- through every display and export -------------------------------------------------------------

@pytest.fixture
def secret_store(ctx):
    """A store whose raw data holds secrets in bodies, headers, notes and reasons."""
    add_stripe(ctx)
    connections.set_paused(ctx, "acme", True, f"leaked key {SK_LIVE} being rotated")
    connections.set_paused(ctx, "acme", False, "rotated")
    event = pi_event("evt_1", "pi_1", "succeeded", CREATED_AT, client_secret=CLIENT_SECRET)
    ingest(ctx, "acme", [capture(event, headers={"Authorization": f"Bearer {SK_LIVE}", "X-Auth-Token": "tok-123456789"})])
    ingest(ctx, "acme", [capture(pi_event("evt_2", "pi_1", "processing", CREATED_AT + 60))])  # rejected
    [failure] = list(iter_failures(ctx))
    triage.add_note(ctx, failure["id"], f"customer pasted {CLIENT_SECRET} and card 4111 1111 1111 1111")
    triage.resolve(ctx, [failure["id"]], f"checked with {SK_LIVE}")
    return failure


def _assert_clean(text: str) -> None:
    for secret in (SK_LIVE, CLIENT_SECRET, "pi_1_secret_abcdefgh12345678", "tok-123456789", "4111 1111 1111 1111"):
        assert secret not in text


def test_timeline_never_shows_secrets(ctx, secret_store):
    story = load_timeline(ctx, "pi_1")
    text = orjson.dumps(story.as_dict()).decode()
    _assert_clean(text)
    assert MASK in text
    assert {e.kind for e in story.entries} >= {"delivery", "transition", "failure", "note", "audit"}


def test_delivery_payload_redacts_body_and_headers(ctx, secret_store):
    first = next(e for e in load_timeline(ctx, "pi_1").entries if e.kind == "delivery")
    payload = delivery_payload(ctx, first.id)
    _assert_clean(orjson.dumps(payload).decode())
    assert payload["body"]["data"]["object"]["client_secret"] == MASK
    assert payload["headers"]["Authorization"].startswith(MASK)
    assert payload["body"]["data"]["object"]["amount"] == 2000  # the rest is intact


def test_audit_export_and_search_are_redacted(ctx, secret_store):
    out = io.BytesIO()
    audit.export(ctx, out)
    _assert_clean(out.getvalue().decode())
    _assert_clean(orjson.dumps(audit.search(ctx)).decode())
    assert any(MASK in (e["reason"] or "") for e in audit.search(ctx))


def test_failure_lists_and_detail_are_redacted(ctx, secret_store):
    detail = triage.failure_detail(ctx, secret_store["id"])
    _assert_clean(orjson.dumps(detail).decode())
    assert len(detail["notes"]) == 2  # the note and the resolution note, both kept (redacted on display)
    _assert_clean(orjson.dumps(list(iter_failures(ctx))).decode())


def test_non_json_body_is_redacted_as_text(ctx):
    add_stripe(ctx)
    body = f"oops {SK_LIVE} and {CLIENT_SECRET}".encode()
    ingest(ctx, "acme", [capture(body, T0)])
    [failure] = list(iter_failures(ctx))
    payload = delivery_payload(ctx, failure["event_id"])
    assert payload["body_is_json"] is False
    _assert_clean(payload["body"])
