"""Redaction: secrets never reach a screen or an export, however deeply they are nested."""

from __future__ import annotations

import copy
import io

import orjson
import pytest
from hypothesis import given, settings, strategies as st
from sqlalchemy import select

from store.models import Delivery
from tests.support import T0, add_stripe, capture, pi_event
from workbench.domain.redaction import MASK, compile_paths, is_sensitive_key, redact, redact_text
from workbench.services import audit, connections, triage
from workbench.services.capture_export import export_captures
from workbench.services.ingest import ingest
from workbench.services.queries import iter_events, iter_failures
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


# -- every detector, at any depth, in JSON and in text --------------------------------------------

JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
DETECTED = {
    "stripe secret key": "sk_live_51HabcdEFGHijklMNOPqrstu",
    "stripe test key": "sk_test_4eC39HqLyjWDarjtT1zdp7dc",
    "restricted key": "rk_test_51HabcdEFGHijkl",
    "webhook secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    "client secret": "seti_1Abc_secret_Zyx987",
    "jwt": JWT,
    "e-mail": "jane.doe+billing@example.co.uk",
    "card": "4111 1111 1111 1111",
    "card with dashes": "5555-5555-5555-4444",
    "card run": "378282246310005",  # 15 digits (Amex), Luhn-valid
    "aws access key": "AKIAIOSFODNN7EXAMPLE",
    "github token": "ghp_16C7e42F292c6912E7710c838347Ae178B4a",
    "slack token": "xoxb-17653672481-19874698323-pdFZKVeTuE8sk7oOcBrzbqgy",
}
HIDDEN_PART = {"jwt": "eyJzdWIiOiIxMjM0In0", "card": "1111 1111", "card with dashes": "5555-4444"}


@pytest.mark.parametrize("kind", sorted(DETECTED))
def test_each_detector_masks_in_text_and_in_json_at_any_depth(kind: str) -> None:
    secret = DETECTED[kind]
    assert redact_text(f"before {secret} after") == f"before {MASK} after"
    assert redact_text(secret) == MASK
    nested = {"a": [{"b": {"c": [[f"x {secret} y"]]}}], "d": secret}
    out = orjson.dumps(redact(nested)).decode()
    assert secret not in out and HIDDEN_PART.get(kind, secret) not in out
    assert out.count(MASK) == 2


@pytest.mark.parametrize("text, hidden", [
    ("Authorization: Basic dXNlcjpwYXNz", "dXNlcjpwYXNz"),
    ("authorization: bearer abc.DEF-123_xyz", "abc.DEF-123_xyz"),
    ("GET /x HTTP/1.1\r\nHost: a\r\nX-Api-Key: k_9f8e7d6c\r\nCookie: session=abc123\r\n", "k_9f8e7d6c"),
    ("client_secret=pk-and-more&amount=10&password=hunter22", "hunter22"),
    ('{"broken json", "api_key": "abc123def456"', "abc123def456"),
    ("token abcdef123456", "abcdef123456"),
])
def test_credentials_in_non_json_text_are_masked(text: str, hidden: str) -> None:
    out = redact_text(text)
    assert hidden not in out and MASK in out


def test_credential_text_inside_json_strings_is_masked() -> None:
    value = {"log": ["Authorization: Basic dXNlcjpwYXNz", {"line": "X-Auth-Token: tkn12345678"}]}
    text = orjson.dumps(redact(value)).decode()
    assert "dXNlcjpwYXNz" not in text and "tkn12345678" not in text


def test_numbers_that_fail_luhn_and_ordinary_words_stay_readable() -> None:
    for text in ("order 1234567812345678 shipped", "order 1234 5678 1234 5678", "ref 4111-1111-1111-1112",
                 "Basic settings apply", "a Token Expired message", "pk_live_51HabcdEFGHijkl is public",
                 "2026-11-29T06:16:37+00:00", "status: requires_payment_method", "amount=2000&currency=usd",
                 "payment_intent.succeeded", "evt_3AbcDEF1234567890", "retry: applied (new record)"):
        assert redact_text(text) == text, text
    assert redact({"order_id": "1234567812345678", "amount": 4111111111111111}) == {
        "order_id": "1234567812345678", "amount": 4111111111111111}


def test_a_card_after_a_stray_digit_group_is_found() -> None:
    assert redact_text("ref 7 4111 1111 1111 1111") == f"ref 7 {MASK}"


def test_credential_headers_are_recognised_by_pattern() -> None:
    for key in ("authorization ", " Authorization", "X-Authorization", "X-Auth", "Authentication",
                "Proxy-Authorization", "X-Api-Key", "Api-Key", "api key", "X-Auth-Token", "Cookie",
                "Set-Cookie", "X-Session-Cookie", "x-amz-security-token", "X-Access-Key", "db_password",
                "Private-Key", "X-Client-Secret", "webhookSecret"):
        assert is_sensitive_key(key), key
    for key in ("idempotency_key", "Idempotency-Key", "Stripe-Signature", "Content-Type", "author",
                "publishable_key", "key", "X-Request-Id", "User-Agent", "status"):
        assert not is_sensitive_key(key), key


def test_stored_credential_headers_are_masked_whatever_their_spelling(ctx) -> None:
    add_stripe(ctx)
    headers = {"authorization ": "Bearer tok-trailing-space", "X-Authorization": "tok-x-authorization",
               "X-Auth": "tok-x-auth", "Authentication": "tok-authentication", "Content-Type": "application/json"}
    ingest(ctx, "acme", [capture(pi_event("evt_1", "pi_1", "succeeded", CREATED_AT), headers=headers)])
    [event] = list(iter_events(ctx))
    with ctx.engine.connect() as conn:
        stored = orjson.dumps(conn.execute(select(Delivery.__table__.c.headers)).scalar_one()).decode()
    for value in ("tok-trailing-space", "tok-x-authorization", "tok-x-auth", "tok-authentication"):
        assert value not in stored
    assert "application/json" in stored
    assert delivery_payload(ctx, event["id"])["headers"]["X-Auth"] == MASK


# -- per-provider field paths ---------------------------------------------------------------------

def test_field_paths_mask_whole_values_through_lists_and_wildcards() -> None:
    paths = compile_paths(["data.object.billing_details.email", "data.object.shipping", "data.*.owner"])
    value = {"data": {"object": {"billing_details": {"email": "not-an-address", "city": "Paris"},
                                 "shipping": {"name": "Ada", "address": {"line1": "1 Rue"}},
                                 "owner": "Ada Lovelace"},
                      "list": [{"owner": "Grace"}, {"other": "kept"}],
                      "billing_details": {"email": "at-the-wrong-depth"}}}
    out = redact(value, paths)
    assert out["data"]["object"]["billing_details"] == {"email": MASK, "city": "Paris"}
    assert out["data"]["object"]["shipping"] == MASK and out["data"]["object"]["owner"] == MASK
    assert out["data"]["list"] == [{"owner": MASK}, {"other": "kept"}]
    assert out["data"]["billing_details"] == {"email": "at-the-wrong-depth"}
    assert redact(value) == redact(value, compile_paths([]))  # no paths: detectors and names only


def test_stripe_declares_its_personal_fields_and_payload_views_apply_them(ctx) -> None:
    add_stripe(ctx)
    event = pi_event("evt_1", "pi_1", "succeeded", CREATED_AT,
                     billing_details={"name": "Ada Lovelace", "phone": "+44 20 7946 0000", "email": "x"},
                     receipt_email="not an address at all")
    ingest(ctx, "acme", [capture(event)])
    [delivery] = list(iter_events(ctx))
    body = delivery_payload(ctx, delivery["id"])["body"]["data"]["object"]
    assert body["billing_details"] == {"name": MASK, "phone": MASK, "email": MASK}
    assert body["receipt_email"] == MASK and body["amount"] == 2000
    exported = io.BytesIO()
    export_captures(ctx, "acme", exported, redacted=True)
    assert b"Ada Lovelace" not in exported.getvalue() and b"7946" not in exported.getvalue()
    exact = io.BytesIO()
    export_captures(ctx, "acme", exact, redacted=False)
    assert b"Ada Lovelace" in exact.getvalue()  # --exact: the stored bytes, as received


def test_detectors_never_backtrack_catastrophically() -> None:
    # A megabyte of the shapes that cost a regex most (long runs, many words, many separators).
    # About 0.1 s each here; the bound only catches a pattern gone super-linear (minutes), so a
    # busy machine cannot flip it. Speed itself is not asserted here.
    import time

    for text in ("A" * 1_000_000, ("a " * 500_000), ("ab:" * 330_000), ("x." * 500_000), ("1-" * 500_000)):
        started = time.perf_counter()
        redact_text(text)
        assert time.perf_counter() - started < 15.0


def test_a_card_beside_a_stray_digit_group_is_still_found() -> None:
    assert redact_text("card 4242 4242 4242 4242 12/34") == f"card {MASK} 12/34"
    assert redact_text("card 4242-4242-4242-4242-7") == f"card {MASK}-7"


# The pre-check that lets most strings skip the scan must never let a secret through: whatever
# text is made of fragments of secrets, names and separators, skipping agrees with scanning.
_FRAGMENTS = [*DETECTED.values(), "Authorization", "authorization ", "X-Api-Key", "password", "token", "Bearer",
              "basic", "dXNlcjpwYXNz", "abcdefgh1234", ":", "=", " ", "\t", "\n", "-", "_", ".", "@", "example.com",
              "4242", "4111", "1", "eyJ", "sk_", "live_", "whsec_", "AKIA", "xox", "b-", '"', "&"]


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(_FRAGMENTS), max_size=8))
def test_skipping_the_scan_never_changes_the_result(parts: list[str]) -> None:
    from workbench.domain.redaction import _DETECTORS, _substitute

    text = "".join(parts)
    assert redact_text(text) == _DETECTORS.sub(_substitute, text)
