"""What a connection's configuration may hold: the model `connection import` validates a file
against, and the secret reference (a vault secret's name and its life, never its value).

Numbers are strict (`interval_s = "300"` is refused, not coerced) and unknown keys are refused
at every level, so a typo is named instead of silently ignored. Pure: no I/O.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    SerializerFunctionWrapHandler,
    StrictBool,
    StrictInt,
    ValidationError,
    field_validator,
    model_serializer,
)

KINDS = ("api_key", "webhook_secret")
ENVIRONMENTS = ("sandbox", "live")
Kind = Literal["api_key", "webhook_secret"]
Environment = Literal["sandbox", "live"]
# The vault's and the connections' own name rule: nothing a shell or a terminal reads.
Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
Positive = Annotated[StrictInt, Field(gt=0)]


def _positive_number(value: object) -> int | float:
    # One check instead of a union: a union's errors name its members (`per_second.int`).
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("Input should be a number")
    if not (math.isfinite(value) and value > 0):
        raise ValueError("Input should be a finite number greater than 0")
    return value


PositiveNumber = Annotated[int | float, PlainValidator(_positive_number)]


MAX_URL_LENGTH = 2048


def check_base_url(value: str) -> str:
    """An API base URL: http(s), a host, no credentials (they would sit in every version of the
    settings), no query or fragment. Returned as given, less a trailing slash."""
    if not isinstance(value, str) or not value or len(value) > MAX_URL_LENGTH:
        raise ValueError(f"a base URL is 1 to {MAX_URL_LENGTH} characters")
    if not value.isprintable() or any(char.isspace() for char in value):
        raise ValueError("a base URL has no spaces or control characters")
    try:
        parts = urlsplit(value)
        port = parts.port  # raises on a port that is not a number or out of range
    except ValueError:
        raise ValueError("not a URL (check the host and port)") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("a base URL starts with http:// or https:// and names a host")
    if parts.username is not None or parts.password is not None:
        raise ValueError("a base URL carries no user or password: API keys live in the vault")
    if parts.query or parts.fragment:
        raise ValueError("a base URL has no query or fragment")
    del port
    return value.rstrip("/")


BaseUrl = Annotated[str, AfterValidator(check_base_url)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SecretRef(_Strict):
    """A reference to a vault secret held by a connection. Retired or expired references stay
    (the history and the vault keep them) but are no longer active."""

    name: Name
    kind: Kind
    environment: Environment
    added_at: AwareDatetime
    expires_at: AwareDatetime | None = None
    retired_at: AwareDatetime | None = None

    def state(self, now: datetime) -> str:
        """active, expired or retired at `now` (retired wins: it was a decision)."""
        if self.retired_at is not None and self.retired_at <= now:
            return "retired"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "active"

    def as_settings(self) -> dict[str, Any]:
        """The shape kept in connections.settings["secrets"] (every key, times in ISO 8601)."""
        return self.model_dump(mode="json")


class SyncSettings(_Strict):
    interval_s: Positive  # how often the engine polls the provider's events
    # The engine's retry delays after each failed attempt, in seconds (default: the
    # schedule in domain/retry_schedule.py); Retry-After is honoured on top of these.
    retry_schedule_s: Annotated[list[Annotated[StrictInt, Field(ge=0, le=7 * 86400)]],
                                Field(min_length=1, max_length=20)] | None = None
    # How often the engine reconciles the connection with its provider (a full run, as
    # `workbench reconcile` does). Off by default: a full run reads every object the provider
    # lists, a cost an operator should choose; `reconcile --now` works either way.
    reconcile_interval_s: Positive | None = None

    @model_serializer(mode="wrap")
    def _without_unset_options(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # An option not set: no key, so settings stored before it existed export and import unchanged.
        data: dict[str, Any] = handler(self)
        for key in ("retry_schedule_s", "reconcile_interval_s"):
            if data.get(key) is None:
                data.pop(key, None)
        return data


class RateLimitSettings(_Strict):
    per_second: PositiveNumber


class PayloadSettings(_Strict):
    encrypt: StrictBool = False


class RetentionSettings(_Strict):
    raw_days: Positive | None = None  # None: keep raw bodies forever


class ApiSettings(_Strict):
    base_url: BaseUrl | None = None  # None: the provider's real API


class WebhookSettings(_Strict):
    """How `workbench listen` and signature checks treat this connection's webhooks."""

    tolerance_s: Positive = 300  # a signature's timestamp this far from receipt, either way
    max_body_bytes: Positive = 1_048_576  # larger bodies are answered 413, not stored


class Settings(_Strict):
    sync: SyncSettings | None = None
    rate_limit: RateLimitSettings | None = None
    secrets: list[SecretRef] = Field(default_factory=list)
    payloads: PayloadSettings | None = None
    retention: RetentionSettings | None = None
    api: ApiSettings | None = None
    webhooks: WebhookSettings | None = None

    @field_validator("secrets")
    @classmethod
    def _distinct_names(cls, secrets: list[SecretRef]) -> list[SecretRef]:
        seen: set[str] = set()
        for ref in secrets:
            if ref.name in seen:
                raise ValueError(f"the secret reference {ref.name!r} appears twice")
            seen.add(ref.name)
        return secrets

    def as_settings(self) -> dict[str, Any]:
        """The settings JSON: only the sections the input set (an absent section keeps its
        default without a stored key, so an export imports back as "no changes")."""
        out: dict[str, Any] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if name not in self.model_fields_set or value is None:
                continue
            out[name] = [ref.as_settings() for ref in value] if name == "secrets" else value.model_dump(mode="json")
        return out


class ConnectionFile(_Strict):
    """A connection's configuration as `connection export` writes it and `import` reads it."""

    name: Name
    provider: Annotated[str, Field(min_length=1, max_length=64)]
    environment: Environment
    settings: Settings = Field(default_factory=Settings)


def first_problem(error: ValidationError) -> str:
    """One line naming the first field that failed (`settings.sync.interval_s: ...`) and how
    many others did; never the offending value (it may be a secret pasted in the wrong place)."""
    problems = error.errors(include_input=False, include_url=False)
    first = problems[0]
    where = ".".join(str(part) for part in first["loc"]) or "file"
    message = first["msg"].removeprefix("Value error, ")
    more = f" (and {len(problems) - 1} more problem{'s' if len(problems) > 2 else ''})" if len(problems) > 1 else ""
    return f"{where}: {message}{more}"
