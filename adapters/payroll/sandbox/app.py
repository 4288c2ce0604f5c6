"""The sandbox's HTTP API (Starlette): the provider's endpoints under /v1 (Bearer API key; chaos
applies) and the admin endpoints under /_admin (no key, no chaos: tests and operators only)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import orjson
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .chaos import Chaos
from .state import ADVANCES, Conflict, ProviderState
from .webhooks import WebhookDispatcher

Handler = Callable[[Request], Awaitable[Response]]
_CURRENCY = re.compile(r"^[a-z]{3}$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status, headers, media_type="application/json")


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    return _json({"error": {"code": code, "message": message}}, status, headers)


def build_app(state: ProviderState, dispatcher: WebhookDispatcher, *, api_key: str, read_only_key: str | None) -> Starlette:
    def api(write: bool) -> Callable[[Handler], Handler]:
        """The provider's endpoint: chaos first (as a real provider's edge would), then the key."""
        def wrap(handler: Handler) -> Handler:
            async def endpoint(request: Request) -> Response:
                chaos = state.chaos
                if chaos.latency_ms:
                    await asyncio.sleep(chaos.latency_ms / 1000)
                if state.take("fail_5xx"):
                    return _error(chaos.status_5xx, "provider_unavailable", "the provider is having trouble")
                if state.take("rate_limit"):
                    return _error(429, "rate_limited", "too many requests", {"Retry-After": str(chaos.retry_after_s)})
                key = request.headers.get("authorization", "").removeprefix("Bearer ")
                if key != api_key and (key != read_only_key or read_only_key is None):
                    return _error(401, "invalid_api_key", "missing or unknown API key")
                if write and key != api_key:
                    return _error(403, "key_not_permitted", "this key may only read")
                response = await handler(request)
                if write and response.status_code < 300 and state.take("timeout_after_commit"):
                    # Committed above; the caller gives up before it hears so.
                    state.record("chaos.timeout_after_commit", path=request.url.path)
                    await asyncio.sleep(state.chaos.timeout_hang_s)
                return response
            return endpoint
        return wrap

    @api(write=True)
    async def submit(request: Request) -> Response:
        try:
            payload = orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            return _error(400, "body_not_json", "the body is not JSON")
        problem = _check_submission(payload)
        if problem is not None:
            return _error(422, "invalid_field", problem)
        try:
            run = state.submit(payload["reference"], payload["employer"], payload["pay_date"], payload["amount"],
                               payload["currency"], payload.get("employees") or [])
        except Conflict as exc:
            return _error(409, exc.code, str(exc))
        return _json(run, 201)

    @api(write=True)
    async def cancel(request: Request) -> Response:
        try:
            return _json(state.cancel(request.path_params["run_id"]))
        except KeyError:
            return _error(404, "run_not_found", "no such payroll run")
        except Conflict as exc:
            return _error(409, exc.code, str(exc))

    @api(write=False)
    async def get_run(request: Request) -> Response:
        try:
            return _json(state.get(request.path_params["run_id"]))
        except KeyError:
            return _error(404, "run_not_found", "no such payroll run")

    @api(write=False)
    async def find_run(request: Request) -> Response:
        try:
            return _json(state.find(request.path_params["reference"]))
        except KeyError:
            return _error(404, "run_not_found", "no payroll run has this reference")

    @api(write=False)
    async def list_runs(request: Request) -> Response:
        window = _window(request)
        if isinstance(window, Response):
            return window
        runs, end, more = state.runs_page(*window)
        return _json({"data": runs, "next_offset": end, "has_more": more})

    @api(write=False)
    async def list_events(request: Request) -> Response:
        window = _window(request)
        if isinstance(window, Response):
            return window
        offset, limit = window
        page, end, more = state.events_page(offset, limit)
        # The stored event bytes as they are: the same bytes a webhook carried.
        body = b'{"data":[' + b",".join(page) + b'],"next_offset":' + str(end).encode() + \
            b',"has_more":' + (b"true" if more else b"false") + b"}"
        return Response(body, media_type="application/json")

    async def ledger(request: Request) -> Response:
        return _json({"entries": state.ledger_copy()})

    async def chaos(request: Request) -> Response:
        if request.method == "POST":
            try:
                changes = orjson.loads(await request.body())
                if not isinstance(changes, dict):
                    return _error(400, "invalid_chaos", "the body is a JSON object of knobs")
                updated = Chaos.model_validate({**state.chaos.model_dump(), **changes})
            except orjson.JSONDecodeError:
                return _error(400, "body_not_json", "the body is not JSON")
            except ValidationError as exc:
                first = exc.errors(include_input=False, include_url=False)[0]
                where = ".".join(str(p) for p in first["loc"])
                return _error(422, "invalid_chaos", f"{where}: {first['msg']}")
            state.set_chaos(updated)
        return _json(state.chaos.model_dump())

    async def advance(request: Request) -> Response:
        try:
            payload = orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            return _error(400, "body_not_json", "the body is not JSON")
        status = payload.get("status") if isinstance(payload, dict) else None
        error_code = payload.get("error_code") if isinstance(payload, dict) else None
        if status not in ADVANCES or (status == "ERROR") != isinstance(error_code, str):
            return _error(422, "invalid_field", f"status is one of {sorted(ADVANCES)}; ERROR (only) takes an error_code")
        try:
            return _json(state.advance(request.path_params["run_id"], status, error_code))
        except KeyError:
            return _error(404, "run_not_found", "no such payroll run")
        except Conflict as exc:
            return _error(409, exc.code, str(exc))

    async def flush(request: Request) -> Response:
        return _json({"flushed": dispatcher.flush()})

    async def health(request: Request) -> Response:
        return _json({"ok": True, "held_webhooks": dispatcher.held()})

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        dispatcher.start()
        try:
            yield
        finally:
            dispatcher.stop()

    routes = [
        Route("/v1/payroll_runs", submit, methods=["POST"]),
        Route("/v1/payroll_runs", list_runs, methods=["GET"]),
        Route("/v1/payroll_runs/by_reference/{reference:path}", find_run, methods=["GET"]),
        Route("/v1/payroll_runs/{run_id}", get_run, methods=["GET"]),
        Route("/v1/payroll_runs/{run_id}/cancel", cancel, methods=["POST"]),
        Route("/v1/events", list_events, methods=["GET"]),
        Route("/_admin/ledger", ledger, methods=["GET"]),
        Route("/_admin/chaos", chaos, methods=["GET", "POST"]),
        Route("/_admin/runs/{run_id}/status", advance, methods=["POST"]),
        Route("/_admin/webhooks/flush", flush, methods=["POST"]),
        Route("/_admin/health", health, methods=["GET"]),
    ]
    return Starlette(routes=routes, lifespan=lifespan)


def _window(request: Request) -> tuple[int, int] | Response:
    """A list's `offset` and `limit` from the query, or the 400 that says what is wrong."""
    try:
        offset = int(request.query_params.get("offset", "0"))
        limit = int(request.query_params.get("limit", "100"))
    except ValueError:
        return _error(400, "invalid_param", "offset and limit are whole numbers")
    if offset < 0 or not 1 <= limit <= 1000:
        return _error(400, "invalid_param", "offset >= 0 and 1 <= limit <= 1000")
    return offset, limit


def _check_submission(payload: Any) -> str | None:
    """What is wrong with a submission, in one line (None: nothing)."""
    if not isinstance(payload, dict):
        return "the body is a JSON object"
    reference = payload.get("reference")
    if not isinstance(reference, str) or not 0 < len(reference) <= 255:
        return "reference: a string of 1 to 255 characters"
    if not isinstance(payload.get("employer"), str) or not payload["employer"]:
        return "employer: a non-empty string"
    if not isinstance(payload.get("pay_date"), str) or not _DATE.match(payload["pay_date"]):
        return "pay_date: a date, YYYY-MM-DD"
    amount = payload.get("amount")
    if type(amount) is not int or amount < 0:
        return "amount: a whole number of minor units, 0 or more"
    if not isinstance(payload.get("currency"), str) or not _CURRENCY.match(payload["currency"]):
        return "currency: three lower-case letters"
    employees = payload.get("employees", [])
    if not isinstance(employees, list) or not all(isinstance(e, dict) for e in employees):
        return "employees: a list of objects"
    return None
