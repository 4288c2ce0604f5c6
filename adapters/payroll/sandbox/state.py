"""The sandbox provider's state: runs, their events (no IDs: the provider has none), the
ledger of side effects, and the chaos in force. In memory; one lock, held only briefly (the
HTTP handlers and the webhook thread share it)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from .chaos import Chaos

ADVANCES = {"ACKNOWLEDGED", "COMPLETE", "ERROR"}
FINAL = {"COMPLETE", "ERROR", "CANCELLED"}


@dataclass
class Run:
    id: str
    reference: str
    employer: str
    pay_date: str
    amount: int
    currency: str
    status: str = "SENT"
    error_code: str | None = None
    employees: list[dict[str, Any]] = field(default_factory=list)


class Conflict(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class ProviderState:
    def __init__(self, chaos: Chaos, on_event: Callable[[str, bytes], None] | None = None) -> None:
        self.lock = threading.Lock()
        self.chaos = chaos
        self.runs: dict[str, Run] = {}
        self.by_reference: dict[str, str] = {}
        self.events: list[bytes] = []
        self.ledger: list[dict[str, Any]] = []
        self.on_event = on_event  # called with (msg_id, body) outside the lock

    # -- chaos: each fault is taken under the lock, so a burst of N hits exactly N requests --
    def take(self, knob: str) -> bool:
        with self.lock:
            left = getattr(self.chaos, knob)
            if left <= 0:
                return False
            self.chaos = self.chaos.model_copy(update={knob: left - 1})
            return True

    def set_chaos(self, chaos: Chaos) -> None:
        with self.lock:
            self.chaos = chaos

    # -- the provider's side effects ------------------------------------------------------
    def submit(self, reference: str, employer: str, pay_date: str, amount: int, currency: str,
               employees: list[dict[str, Any]]) -> dict[str, Any]:
        with self.lock:
            if reference in self.by_reference:
                raise Conflict("duplicate_reference", f"a run with reference {reference!r} exists")
            run = Run("run_" + uuid.uuid4().hex[:16], reference, employer, pay_date, amount, currency,
                      employees=employees)
            self.runs[run.id] = run
            self.by_reference[reference] = run.id
            self._record("run.created", run, {"amount": amount, "currency": currency})
            shown, event = self._event(run)
        self._emit(event)
        return shown

    def cancel(self, run_id: str) -> dict[str, Any]:
        with self.lock:
            run = self._run(run_id)
            if run.status in FINAL:
                raise Conflict("run_not_cancellable", f"run {run_id} is {run.status} and cannot be cancelled")
            run.status = "CANCELLED"
            self._record("run.cancelled", run)
            shown, event = self._event(run)
        self._emit(event)
        return shown

    def advance(self, run_id: str, status: str, error_code: str | None) -> dict[str, Any]:
        """The provider moving a run on (in real life: its own processing)."""
        with self.lock:
            run = self._run(run_id)
            if run.status in FINAL:
                raise Conflict("run_final", f"run {run_id} is {run.status} already")
            run.status, run.error_code = status, error_code if status == "ERROR" else None
            self._record("run.status_changed", run, {"status": status, "error_code": run.error_code})
            shown, event = self._event(run)
        self._emit(event)
        return shown

    def get(self, run_id: str) -> dict[str, Any]:
        with self.lock:
            return self.render(self._run(run_id))

    def find(self, reference: str) -> dict[str, Any]:
        with self.lock:
            run_id = self.by_reference.get(reference)
            if run_id is None:
                raise KeyError(reference)
            return self.render(self.runs[run_id])

    def runs_page(self, offset: int, limit: int) -> tuple[list[dict[str, Any]], int, bool]:
        """Runs in the order they were submitted (dicts keep insertion order)."""
        with self.lock:
            runs = list(self.runs.values())[offset:offset + limit]
            end = offset + len(runs)
            return [self.render(run) for run in runs], end, end < len(self.runs)

    def events_page(self, offset: int, limit: int) -> tuple[list[bytes], int, bool]:
        with self.lock:
            page = self.events[offset:offset + limit]
            end = offset + len(page)
            return page, end, end < len(self.events)

    def record(self, action: str, **detail: Any) -> None:
        with self.lock:
            self.ledger.append({"seq": len(self.ledger) + 1, "at": _now(), "action": action, **detail})

    def ledger_copy(self) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.ledger)

    # -- under the lock ---------------------------------------------------------------------
    def _run(self, run_id: str) -> Run:
        run = self.runs.get(run_id)
        if run is None:
            raise KeyError(run_id)
        return run

    def _record(self, action: str, run: Run, detail: dict[str, Any] | None = None) -> None:
        self.ledger.append({"seq": len(self.ledger) + 1, "at": _now(), "action": action, "run_id": run.id,
                            "reference": run.reference, **(detail or {})})

    def render(self, run: Run) -> dict[str, Any]:
        """A run as the API (and its events) show it, drifted when the chaos says so."""
        shown: dict[str, Any] = {"id": run.id, "object": "payroll_run", "reference": run.reference,
                                 "employer": run.employer, "pay_date": run.pay_date, "amount": run.amount,
                                 "currency": run.currency, "status": run.status, "error_code": run.error_code}
        if run.employees:
            shown["employees"] = run.employees
        if self.chaos.drift == "status" and run.status == "SENT":
            shown["status"] = "ON_HOLD"
        elif self.chaos.drift == "field":
            shown["gross_amount"] = shown.pop("amount")
        elif self.chaos.drift == "missing":
            del shown["currency"]
        elif self.chaos.drift == "extra":
            shown["net_amount"] = run.amount * 4 // 5
            shown["tax"] = {"withheld": run.amount - run.amount * 4 // 5, "year": 2026}
        return shown

    def _event(self, run: Run) -> tuple[dict[str, Any], tuple[str, bytes]]:
        shown = self.render(run)
        body = orjson.dumps({"type": "payroll_run.updated", "occurred_at": _now(), "run": shown})
        self.events.append(body)
        return shown, ("msg_" + uuid.uuid4().hex, body)

    def _emit(self, event: tuple[str, bytes]) -> None:
        if self.on_event is not None:
            self.on_event(*event)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")
