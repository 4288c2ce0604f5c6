"""The sandbox's chaos knobs: set by command-line flags at start, changed by POST /_admin/chaos.

Counts (`rate_limit`, `fail_5xx`, `timeout_after_commit`) are bursts: the next N API requests
(writes only, for the timeout) get the fault, then the sandbox behaves again.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt

Count = Annotated[StrictInt, Field(ge=0, le=1_000_000)]


class Chaos(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    latency_ms: Annotated[StrictInt, Field(ge=0, le=60_000)] = 0  # added to every API request
    timeout_after_commit: Count = 0  # the next N writes commit, then answer only after timeout_hang_s
    timeout_hang_s: Annotated[float, Field(gt=0, le=3600)] = 30.0
    rate_limit: Count = 0  # the next N API requests: 429 with Retry-After
    retry_after_s: Annotated[StrictInt, Field(ge=0, le=3600)] = 1
    fail_5xx: Count = 0  # the next N API requests: status_5xx
    status_5xx: Annotated[StrictInt, Field(ge=500, le=599)] = 503
    webhook_url: Annotated[str, Field(pattern=r"^https?://[^\s]+$", max_length=2000)] | None = None
    duplicate_webhooks: Annotated[StrictInt, Field(ge=0, le=100)] = 0  # extra copies of each delivery
    reorder_webhooks: StrictBool = False  # hold deliveries; POST /_admin/webhooks/flush sends them newest first
    # Schema drift in every answer and event: an unseen status (SENT shown as ON_HOLD), a renamed
    # field (amount -> gross_amount), a missing one (no currency) or extra ones (net_amount, a
    # nested tax object) a mapping must ignore.
    drift: Literal["status", "field", "missing", "extra"] | None = None
