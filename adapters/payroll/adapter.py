"""The payroll adapter as the rest of the product sees it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from adapters.protocol import Capabilities, Pagination, ProviderClient, PushCommand, SignatureCheck, WebhookSecret
from workbench.domain.canonical import MappedEvent, NotCovered, ParsedEvent

from . import commands, errors, events, mapping, signature
from .client import PayrollClient


class PayrollAdapter:
    """Implements adapters.protocol.Adapter, SignatureVerifying, Calling (its client: Reconciling),
    Commanding and Pushing."""

    provider = "payroll"
    mapping_version = mapping.MAPPING_VERSION
    capabilities = Capabilities(webhooks=True, event_listing=True, polling_cursor=True, idempotency_keys=False,
                                lookup_by_reference=True, signature_scheme=signature.SCHEME,
                                pagination=Pagination.OFFSET, rate_limit_signals=errors.RATE_LIMIT_SIGNALS,
                                intents=commands.INTENTS, record_kind=mapping.KIND,
                                reconcile_by="list", rate_limit_per_s=50.0)

    # Employees' bank details and names may ride along on a run (the provider echoes them).
    redacted_paths = (
        "run.employees.name", "run.employees.bank_account", "run.employees.tax_id",
        "run.funding_account",
    )

    check_command = staticmethod(commands.check_command)
    command_result = staticmethod(commands.command_result)

    def parse(self, body: bytes) -> ParsedEvent:
        return events.parse_event(body)

    def map(self, event: ParsedEvent) -> MappedEvent | NotCovered:
        return mapping.map_event(event)

    classify_response = staticmethod(errors.classify_response)

    def verify_signature(self, headers: Mapping[str, str], body: bytes, secrets: Sequence[WebhookSecret],
                         now: datetime, tolerance_s: int = 300) -> SignatureCheck:
        return signature.verify_signature(headers, body, secrets, now, tolerance_s)

    def push_command(self, kind: str, provider_id: str, field: str, ours: Any) -> PushCommand | None:
        """Only a cancel can be pushed: the provider takes no other change to a submitted run."""
        if kind == mapping.KIND and field == "status" and ours == "cancelled":
            return PushCommand("payroll_run.cancel", {"run_id": provider_id})
        return None

    def client(self, *, base_url: str | None, api_key: str | None, timeout_s: float = 10.0) -> ProviderClient:
        # Typed as the protocol so that mypy checks PayrollClient against it.
        return PayrollClient(base_url=base_url, api_key=api_key, timeout_s=timeout_s)
