"""The payroll API over HTTP (httpx): our intents as the provider's calls.

The provider has no idempotency keys, so a submit is made safe by our reference instead: the
provider refuses a second run with a reference it has seen (409 `duplicate_reference`), and
after that refusal, or an answer that leaves the outcome unknown (a timeout, a 5xx: "the
timeout hid a success"), the client looks the run up by reference and answers with it. A
first submit is one POST; the dispatcher also looks the run up before any retry
(services/dispatch.send: `lookup_by_reference`), as it does for every provider without keys.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import quote

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

from .errors import classify_response, contract_mismatch
from .mapping import current_object

# The provider's own API (a fictional provider: a connection normally names its sandbox).
REAL_API = "https://api.payroll.example.com"
INTENTS = ("payroll_run.submit", "payroll_run.cancel")
# Outcomes after which a write may or may not have happened at the provider.
_UNKNOWN_OUTCOME = frozenset({Category.TIMEOUT, Category.PROVIDER_OUTAGE})


class PayrollClient:
    """Implements adapters.protocol.ProviderClient."""

    def __init__(self, *, base_url: str | None, api_key: str | None, timeout_s: float = 10.0) -> None:
        headers = {"Accept": "application/json"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self._http = httpx.Client(base_url=base_url or REAL_API, headers=headers, timeout=timeout_s)

    def send(self, intent: str, payload: Mapping[str, Any], *, reference: str,
             idempotency_key: str | None) -> CallResult:
        # idempotency_key is not sent: the provider has none (capabilities say so); see submit.
        if intent == "payroll_run.submit":
            return self._submit(payload, reference)
        if intent == "payroll_run.cancel":
            run_id = payload.get("run_id")
            if not isinstance(run_id, str) or not run_id:
                raise ValueError("payroll_run.cancel needs payload['run_id']")
            return self._call("POST", f"/v1/payroll_runs/{quote(run_id, safe='')}/cancel", expect_run=True)
        raise ValueError(f"unknown intent {intent!r} (known: {', '.join(INTENTS)})")

    def lookup(self, reference: str) -> CallResult:
        return self._call("GET", f"/v1/payroll_runs/by_reference/{quote(reference, safe='')}", expect_run=True)

    def list_events(self, cursor: str | None, limit: int = 100) -> EventPage:
        """Events from offset `cursor` (a count of events already read; None: 0). The next
        cursor is the offset after this page, None when the page is empty (keep the old one)."""
        offset = int(cursor) if cursor else 0
        call = self._call("GET", "/v1/events", params={"offset": offset, "limit": limit})
        if call.outcome.category is not None or call.body is None:
            return EventPage([], None, call)
        data = call.body.get("data")
        if not isinstance(data, list) or not all(isinstance(event, dict) for event in data):
            return EventPage([], None, _with_outcome(call, contract_mismatch("event list has no `data` array of objects")))
        # Re-serialised by orjson as the provider wrote them: the same bytes a webhook carries,
        # so an event seen both ways has one payload hash (and is stored once).
        bodies = [orjson.dumps(event) for event in data]
        return EventPage(bodies, str(offset + len(bodies)) if bodies else None, call)

    # -- rewinding (adapters.protocol.Rewinding) ------------------------------------------------

    def cursor_at(self, when: datetime) -> CursorAt:
        """The offset of the first event that occurred at or after `when` (events are listed in
        the order they happened): a search over offsets, one event per call, so a log of n
        events takes about 2 log2(n) calls. None: every event is that recent."""
        calls = 0
        last: CallResult | None = None

        def before(offset: int) -> bool:
            nonlocal calls, last
            calls += 1
            last = self._call("GET", "/v1/events", params={"offset": offset, "limit": 1})
            if last.outcome.category is not None or last.body is None:
                raise _NoAnswer
            data = last.body.get("data")
            if not isinstance(data, list):
                last = _with_outcome(last, contract_mismatch("event list has no `data` array"))
                raise _NoAnswer
            if not data:
                return False  # past the newest event
            try:
                occurred = datetime.fromisoformat(str(data[0]["occurred_at"]))
            except (KeyError, TypeError, ValueError):
                last = _with_outcome(last, contract_mismatch("an event without a readable `occurred_at`"))
                raise _NoAnswer from None
            return occurred < when

        try:
            if not before(0):
                found = 0
            else:
                low, step = 0, 1  # before(low) holds; gallop, then halve
                while before(low + step):
                    low, step = low + step, step * 2
                high = low + step
                while high - low > 1:
                    middle = (low + high) // 2
                    low, high = (middle, high) if before(middle) else (low, middle)
                found = high
        except _NoAnswer:
            assert last is not None
            return CursorAt(None, last, calls)
        assert last is not None
        return CursorAt(str(found) if found else None, last, calls)

    # -- reconciliation (adapters.protocol.Reconciling) -----------------------------------------

    def list_current(self, cursor: str | None, limit: int = 100) -> CurrentPage:
        """Runs from offset `cursor` (None: 0), in the order they were submitted."""
        offset = int(cursor) if cursor else 0
        call = self._call("GET", "/v1/payroll_runs", params={"offset": offset, "limit": limit})
        if call.outcome.category is not None or call.body is None:
            return CurrentPage([], [], None, call)
        data, more = call.body.get("data"), call.body.get("has_more")
        if not isinstance(data, list) or not isinstance(more, bool) or not all(isinstance(run, dict) for run in data):
            return CurrentPage([], [], None, _with_outcome(call, contract_mismatch(
                "run list has no `data` array of objects and `has_more`")))
        objects: list[CurrentObject] = []
        unreadable: list[Unreadable] = []
        for run in data:
            try:
                objects.append(current_object(run))
            except BoundaryProblem as problem:
                found = run.get("id")
                unreadable.append(Unreadable(found if isinstance(found, str) else None, problem.message))
        return CurrentPage(objects, unreadable, str(offset + len(data)) if more and data else None, call)

    def fetch_current(self, provider_id: str) -> CurrentLookup:
        call = self._call("GET", f"/v1/payroll_runs/{quote(provider_id, safe='')}", expect_run=True)
        if call.outcome.category is not None or call.body is None:
            return CurrentLookup(None, call)
        try:
            return CurrentLookup(current_object(dict(call.body)), call)
        except BoundaryProblem as problem:
            return CurrentLookup(None, _with_outcome(call, contract_mismatch(problem.message)))

    def close(self) -> None:
        self._http.close()

    def _submit(self, payload: Mapping[str, Any], reference: str) -> CallResult:
        posted = self._call("POST", "/v1/payroll_runs", json={**payload, "reference": reference}, expect_run=True)
        refused = posted.outcome.category is Category.DUPLICATE
        if refused or posted.outcome.category in _UNKNOWN_OUTCOME:
            after = self.lookup(reference)
            if after.outcome.category is None:
                if refused:  # sent before (a retry): the run it made
                    return _with_outcome(after, ClassifiedOutcome(None, "already_submitted", "found by our reference"))
                return _with_outcome(after, ClassifiedOutcome(
                    None, "found_after_" + str(posted.outcome.category), "the run was made; found by our reference"))
        return posted

    def _call(self, method: str, path: str, *, json: Any = None, params: Mapping[str, Any] | None = None,
              expect_run: bool = False) -> CallResult:
        started = time.perf_counter()
        try:
            response = self._http.request(method, path, json=json, params=params)
        except httpx.TimeoutException:
            return CallResult(method, path, None, None, {}, _ms(started), classify_response(None, timed_out=True))
        except httpx.TransportError as exc:
            outcome = ClassifiedOutcome(Category.PROVIDER_OUTAGE, "connection_failed",
                                        f"could not reach the provider: {type(exc).__name__}")
            return CallResult(method, path, None, None, {}, _ms(started), outcome)
        latency = _ms(started)
        headers = dict(response.headers.items())
        try:
            body = orjson.loads(response.content) if response.content else None
        except orjson.JSONDecodeError:
            body = None
        if body is not None and not isinstance(body, dict):
            body = None
        outcome = classify_response(response.status_code, body, headers)
        if outcome.category is None:
            if body is None:
                outcome = contract_mismatch("the answer is not a JSON object")
            elif expect_run and not _is_run(body):
                outcome = contract_mismatch("the answer is not a payroll run (no string `id` and `status`)")
        return CallResult(method, path, response.status_code, body, headers, latency, outcome)


def _is_run(body: Mapping[str, Any]) -> bool:
    return isinstance(body.get("id"), str) and isinstance(body.get("status"), str) and "amount" in body


class _NoAnswer(Exception):
    """A call in cursor_at failed or answered nonsense: the last call says how."""


def _with_outcome(call: CallResult, outcome: ClassifiedOutcome) -> CallResult:
    return CallResult(call.method, call.path, call.status_code, call.body, call.headers, call.latency_ms, outcome)


def _ms(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)
