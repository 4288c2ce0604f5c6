"""Stripe's API over HTTP: our payment intents (create, confirm, cancel, capture), lookup by our
reference, and the event list, each call's outcome classified by errors.classify_response.

Retry safety does not rest on `Idempotency-Key` alone (localstripe, and any proxy in between,
may ignore it): when a create's response is lost, the client looks the intent up by our
reference (kept in the intent's metadata) before sending the create again.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

import httpx
import orjson

from adapters.protocol import (
    CallResult,
    ClassifiedOutcome,
    CurrentLookup,
    CurrentObject,
    CurrentPage,
    CursorAt,
    EventPage,
    Unreadable,
)
from workbench.domain.canonical import BoundaryProblem
from workbench.domain.taxonomy import Category

from .errors import classify_response
from .mapping import current_object

STRIPE_API = "https://api.stripe.com"
# The API version the event parser and mapping are written for: pinned on every call, so an
# account upgraded in Stripe's dashboard does not change the shapes this client reads.
API_VERSION = "2024-06-20"
REFERENCE_KEY = "workbench_reference"  # metadata key holding our reference (the command's ID)
LOOKUP_PAGES = 10  # lookup without an intent ID reads at most this many pages of 100 intents
MAX_PAGE = 100  # Stripe's own list limit

# Our intent -> the Stripe call after the intent's ID ("" for create).
_ACTIONS = {"payment.create": "", "payment.confirm": "/confirm", "payment.cancel": "/cancel",
            "payment.capture": "/capture"}


def form_fields(payload: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, str]]:
    """A nested payload as Stripe's form fields: `metadata[key]=v`, `items[0][price]=p`."""
    for key, value in payload.items():
        name = f"{prefix}[{key}]" if prefix else str(key)
        if isinstance(value, Mapping):
            yield from form_fields(value, name)
        elif isinstance(value, list | tuple):
            yield from form_fields({str(i): item for i, item in enumerate(value)}, name)
        elif isinstance(value, bool):
            yield name, "true" if value else "false"
        elif value is not None:
            yield name, str(value)


class StripeClient:
    """Implements adapters.protocol.ProviderClient for one connection (one connection pool)."""

    def __init__(self, *, base_url: str | None, api_key: str | None, timeout_s: float = 10.0,
                 lookup_pages: int = LOOKUP_PAGES, lookup_page_size: int = MAX_PAGE) -> None:
        self._api_key = api_key
        self._lookup_pages, self._lookup_page_size = lookup_pages, lookup_page_size
        headers = {"Stripe-Version": API_VERSION}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self._http = httpx.Client(base_url=(base_url or STRIPE_API).rstrip("/"), headers=headers,
                                  timeout=httpx.Timeout(timeout_s), follow_redirects=False)
        self._oldest_first: bool | None = None  # how the server lists events (see list_events)

    @property
    def base_url(self) -> str:
        return str(self._http.base_url).rstrip("/")

    # -- the protocol -------------------------------------------------------------------------

    def send(self, intent: str, payload: Mapping[str, Any], *, reference: str,
             idempotency_key: str | None) -> CallResult:
        if intent not in _ACTIONS:
            raise ValueError(f"the Stripe adapter has no intent {intent!r} (known: {', '.join(_ACTIONS)})")
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        if intent == "payment.create":
            fields = dict(payload)
            fields["metadata"] = {**dict(fields.get("metadata") or {}), REFERENCE_KEY: reference}
            result = self._call("POST", "/v1/payment_intents", data=list(form_fields(fields)), headers=headers)
            if result.outcome.category is not Category.TIMEOUT:
                return result
            # The create may have happened with its answer lost: look before sending it again.
            found = self.lookup(reference)
            if found.outcome.category is None:
                return found
            if found.outcome.category is not Category.MISSING_DEPENDENCY:
                return result  # cannot tell whether it exists: sending again could make a second
            return self._call("POST", "/v1/payment_intents", data=list(form_fields(fields)), headers=headers)
        fields = dict(payload)
        intent_id = fields.pop("payment_intent", None)
        if not isinstance(intent_id, str) or not intent_id:
            raise ValueError(f"{intent} needs the payload's payment_intent (the Stripe ID from payment.create)")
        path = f"/v1/payment_intents/{_segment(intent_id)}{_ACTIONS[intent]}"
        return self._call("POST", path, data=list(form_fields(fields)), headers=headers)

    def lookup(self, reference: str, *, provider_id: str | None = None) -> CallResult:
        """The payment intent made for `reference`. With `provider_id` (kept from the create's
        answer) one retrieve, checked against the reference; without, a walk of the newest
        intents (Stripe's search is not in localstripe and lags behind writes on Stripe)."""
        if provider_id is not None:
            result = self.retrieve(provider_id)
            if result.outcome.category is None and _reference_of(result.body) != reference:
                return _replace_outcome(result, ClassifiedOutcome(
                    Category.MISSING_DEPENDENCY, "reference_mismatch",
                    f"payment intent {provider_id} was not made for reference {reference}"))
            return result
        cursor: str | None = None
        for _ in range(self._lookup_pages):
            params: dict[str, str | int] = {"limit": self._lookup_page_size}
            if cursor:
                params["starting_after"] = cursor
            result = self._call("GET", "/v1/payment_intents", params=params)
            if result.outcome.category is not None:
                return result
            page = _list_page(result)
            if isinstance(page, ClassifiedOutcome):
                return _replace_outcome(result, page)
            items, has_more = page
            for item in items:
                if _reference_of(item) == reference:
                    return _replace_outcome(result, classify_response(result.status_code), body=item)
            if not has_more or not items:
                break
            cursor = str(items[-1]["id"])
        else:  # more intents than a lookup reads: "not found" would invite a second create
            return _replace_outcome(result, ClassifiedOutcome(
                Category.UNKNOWN, "lookup_incomplete",
                f"reference {reference} is not among the {self._lookup_pages * self._lookup_page_size} intents read: "
                "look it up by its ID"),
                body=None)
        return _replace_outcome(result, ClassifiedOutcome(
            Category.MISSING_DEPENDENCY, "reference_not_found", f"no payment intent was made for reference {reference}"),
            body=None)

    def retrieve(self, payment_intent: str) -> CallResult:
        return self._call("GET", f"/v1/payment_intents/{_segment(payment_intent)}")

    def list_events(self, cursor: str | None, limit: int = 100) -> EventPage:
        """Events after `cursor` (None: from the oldest listed), oldest first.

        Stripe lists newest first: the events after a cursor are the page `ending_before` it
        (closest to the cursor, reversed here), and the oldest page is found by walking back
        with `starting_after`. localstripe lists oldest first and has no `ending_before`: its
        refusal of that parameter tells the client to read it forwards (`starting_after`)."""
        if not 1 <= limit <= MAX_PAGE:
            raise ValueError(f"a page holds 1 to {MAX_PAGE} events, not {limit}")
        if cursor and self._oldest_first is not True:
            result = self._call("GET", "/v1/events", params={"limit": limit, "ending_before": cursor})
            if not _refuses_parameter(result, "ending_before"):
                self._oldest_first = False
                return _event_page(result, newest_first=True, more_after=None)
            self._oldest_first = True
        if cursor:
            result = self._call("GET", "/v1/events", params={"limit": limit, "starting_after": cursor})
            return _event_page(result, newest_first=False, more_after=None)
        first = self._call("GET", "/v1/events", params={"limit": limit})
        page = _list_page(first) if first.outcome.category is None else first.outcome
        if isinstance(page, ClassifiedOutcome) or not page[0] or self._oldest_first is True:
            return _event_page(first, newest_first=False, more_after=None)
        if self._oldest_first is None:  # which way does this server list? ask it once
            probe = self._call("GET", "/v1/events", params={"limit": 1, "ending_before": str(page[0][0]["id"])})
            self._oldest_first = _refuses_parameter(probe, "ending_before")
            if self._oldest_first:
                return _event_page(first, newest_first=False, more_after=None)
            if probe.outcome.category is not None:
                return EventPage([], None, probe)
        # Newest first: walk back to the oldest page; newer pages follow from its newest event.
        last, (items, has_more), steps = first, page, 0
        while has_more:
            call = self._call("GET", "/v1/events", params={"limit": limit, "starting_after": str(items[-1]["id"])})
            older = _list_page(call) if call.outcome.category is None else call.outcome
            if isinstance(older, ClassifiedOutcome):
                return _event_page(call, newest_first=True, more_after=None)
            if not older[0]:
                break
            last, (items, has_more), steps = call, older, steps + 1
        return _event_page(last, newest_first=True, more_after=steps > 0)

    # -- rewinding (adapters.protocol.Rewinding) ------------------------------------------------

    def cursor_at(self, when: datetime) -> CursorAt:
        """The newest event created before `when`'s second (`list_events` then reads the ones
        after it: those of that second again too, which dedupe drops). None: no event is older."""
        before: dict[str, str | int] = {"limit": MAX_PAGE, "created[lt]": int(when.timestamp())}
        call = self._call("GET", "/v1/events", params=before)
        calls = 1
        page = _list_page(call) if call.outcome.category is None else call.outcome
        if isinstance(page, ClassifiedOutcome):
            return CursorAt(None, _replace_outcome(call, page), calls)
        items, has_more = page
        if not items:
            return CursorAt(None, call, calls)
        if self._oldest_first is None:  # which way does this server list? ask it once
            probe = self._call("GET", "/v1/events", params={"limit": 1, "ending_before": str(items[0]["id"])})
            calls += 1
            if not _refuses_parameter(probe, "ending_before") and probe.outcome.category is not None:
                return CursorAt(None, probe, calls)
            self._oldest_first = _refuses_parameter(probe, "ending_before")
        if not self._oldest_first:
            return CursorAt(str(items[0]["id"]), call, calls)  # newest first: the first is the newest
        while has_more:  # oldest first (localstripe): the newest is on the last page
            call = self._call("GET", "/v1/events", params={**before, "starting_after": str(items[-1]["id"])})
            calls += 1
            page = _list_page(call) if call.outcome.category is None else call.outcome
            if isinstance(page, ClassifiedOutcome):
                return CursorAt(None, _replace_outcome(call, page), calls)
            if not page[0]:
                break
            items, has_more = page
        return CursorAt(str(items[-1]["id"]), call, calls)

    # -- reconciliation (adapters.protocol.Reconciling) -----------------------------------------

    def list_current(self, cursor: str | None, limit: int = 100) -> CurrentPage:
        """Payment intents after the intent `cursor` (`starting_after`), in the server's order."""
        if not 1 <= limit <= MAX_PAGE:
            raise ValueError(f"a page holds 1 to {MAX_PAGE} payment intents, not {limit}")
        params: dict[str, str | int] = {"limit": limit}
        if cursor:
            params["starting_after"] = cursor
        result = self._call("GET", "/v1/payment_intents", params=params)
        if result.outcome.category is not None:
            return CurrentPage([], [], None, result)
        page = _list_page(result)
        if isinstance(page, ClassifiedOutcome):
            return CurrentPage([], [], None, _replace_outcome(result, page))
        items, has_more = page
        objects, unreadable = _current_objects(items)
        return CurrentPage(objects, unreadable, str(items[-1]["id"]) if has_more and items else None, result)

    def fetch_current(self, provider_id: str) -> CurrentLookup:
        result = self.retrieve(provider_id)
        if result.outcome.category is not None or result.body is None:
            return CurrentLookup(None, result)
        objects, unreadable = _current_objects([dict(result.body)])
        if unreadable:
            return CurrentLookup(None, _replace_outcome(result, ClassifiedOutcome(
                Category.CONTRACT_MISMATCH, "unreadable_object", unreadable[0].reason)))
        return CurrentLookup(objects[0], result)

    def close(self) -> None:
        self._http.close()

    # -- one HTTP exchange, classified --------------------------------------------------------

    def _call(self, method: str, path: str, *, data: list[tuple[str, str]] | None = None,
              params: Mapping[str, str | int] | None = None, headers: Mapping[str, str] | None = None) -> CallResult:
        content = None
        if data is not None:  # pairs, in order: Stripe reads `metadata[key]` fields as one map
            content = urlencode(data).encode()
            headers = {**(headers or {}), "Content-Type": "application/x-www-form-urlencoded"}
        started = time.monotonic()
        try:
            response = self._http.request(method, path, content=content, params=params, headers=headers)
        except (httpx.TimeoutException, httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError):
            # Sent, or partly sent, with no answer: Stripe may have acted (a lost response).
            return self._result(method, path, None, None, {}, started, classify_response(None, timed_out=True))
        except httpx.HTTPError:
            return self._result(method, path, None, None, {}, started, classify_response(None))
        response_headers = {key.lower(): value for key, value in response.headers.items()}
        try:
            body = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            body = None
        mapping = body if isinstance(body, dict) else None
        outcome = classify_response(response.status_code, mapping, response_headers)
        if outcome.category is None and (mapping is None or not isinstance(mapping.get("object"), str)):
            outcome = ClassifiedOutcome(Category.CONTRACT_MISMATCH, "unexpected_shape",
                                        f"HTTP {response.status_code} without a Stripe object in its body")
        return self._result(method, path, response.status_code, mapping, response_headers, started, outcome)

    def _result(self, method: str, path: str, status: int | None, body: Mapping[str, Any] | None,
                headers: Mapping[str, str], started: float, outcome: ClassifiedOutcome) -> CallResult:
        if self._api_key and self._api_key in outcome.message:  # a server that echoes the key back
            outcome = ClassifiedOutcome(outcome.category, outcome.code, outcome.message.replace(self._api_key, "****"),
                                        outcome.retry_after_s)
        return CallResult(method, path, status, body, headers, int((time.monotonic() - started) * 1000), outcome)


def _segment(identifier: str) -> str:
    """An ID as one path segment: Stripe IDs are letters, digits and '_'; nothing else passes."""
    if not identifier.replace("_", "").isalnum() or not identifier.isascii():
        raise ValueError(f"not a Stripe ID: {identifier[:40]!r}")
    return identifier


def _refuses_parameter(result: CallResult, name: str) -> bool:
    """Whether the server answered 400 naming `name` (localstripe: "Unexpected ending_before")."""
    error = result.body.get("error") if result.body else None
    message = error.get("message") if isinstance(error, Mapping) else None
    return result.status_code == 400 and isinstance(message, str) and name in message


def _event_page(result: CallResult, *, newest_first: bool, more_after: bool | None) -> EventPage:
    """`result`'s events oldest first, and the cursor for the next page: the newest event on
    it when the server says (has_more) or the walk showed (`more_after`) that newer ones exist."""
    if result.outcome.category is not None:
        return EventPage([], None, result)
    page = _list_page(result)
    if isinstance(page, ClassifiedOutcome):
        return EventPage([], None, _replace_outcome(result, page))
    items, has_more = page
    ordered = list(reversed(items)) if newest_first else items
    more = has_more if more_after is None else more_after
    next_cursor = str(ordered[-1]["id"]) if more and ordered else None
    return EventPage([orjson.dumps(event) for event in ordered], next_cursor, result)


def _current_objects(items: list[dict[str, Any]]) -> tuple[list[CurrentObject], list[Unreadable]]:
    objects, unreadable = [], []
    for item in items:
        try:
            objects.append(current_object(item, _reference_of(item)))
        except BoundaryProblem as problem:
            found = item.get("id")
            unreadable.append(Unreadable(found if isinstance(found, str) else None, problem.message))
    return objects, unreadable


def _reference_of(body: Mapping[str, Any] | None) -> str | None:
    metadata = body.get("metadata") if isinstance(body, Mapping) else None
    value = metadata.get(REFERENCE_KEY) if isinstance(metadata, Mapping) else None
    return value if isinstance(value, str) else None


def _list_page(result: CallResult) -> tuple[list[dict[str, Any]], bool] | ClassifiedOutcome:
    body = result.body or {}
    data, has_more = body.get("data"), body.get("has_more")
    if (body.get("object") != "list" or not isinstance(data, list) or not isinstance(has_more, bool)
            or not all(isinstance(item, dict) and isinstance(item.get("id"), str) for item in data)):
        return ClassifiedOutcome(Category.CONTRACT_MISMATCH, "unexpected_shape", "a list answer without data and has_more")
    return data, has_more


def _replace_outcome(result: CallResult, outcome: ClassifiedOutcome, **changes: Any) -> CallResult:
    return replace(result, outcome=outcome, **changes)
