"""What a connection's configuration may hold: the model `connection import` validates a file
against, and the secret reference (a vault secret's name and its life, never its value).

Numbers are strict (`interval_s = "300"` is refused, not coerced) and unknown keys are refused
at every level, so a typo is named instead of silently ignored. Pure: no I/O.
"""

from __future__ import annotations

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
    model_validator,
)

from .alert_rules import AlertSettings
from .config_types import Environment, Name, Positive, PositiveNumber

KINDS = ("api_key", "webhook_secret")
ENVIRONMENTS = ("sandbox", "live")
Kind = Literal["api_key", "webhook_secret"]


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
    """The engine's outbound pace for the connection, shared by every engine on the store:
    `per_second` or `per_minute` (one of them)."""

    per_second: PositiveNumber | None = None
    per_minute: PositiveNumber | None = None

    @model_validator(mode="after")
    def _one_rate(self) -> RateLimitSettings:
        if (self.per_second is None) == (self.per_minute is None):
            raise ValueError("set one of per_second or per_minute")
        return self

    @model_serializer(mode="wrap")
    def _only_the_rate_set(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        return {key: value for key, value in data.items() if value is not None}


def _share(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 1:
        raise ValueError("Input should be a share between 0 (exclusive) and 1, e.g. 0.5")
    return float(value)


Rate = Annotated[float, PlainValidator(_share)]


class BreakerRates(_Strict):
    """The share of a window's calls failing in a category at which the breaker opens (1:
    only when every call fails)."""

    provider_outage: Rate = 0.5
    timeout: Rate = 0.5


class BreakerSettings(_Strict):
    """The connection's circuit breaker and auto-pause (see workbench/domain/breaker.py)."""

    window_s: Positive = 60  # failures are counted over this window...
    min_calls: Positive = 20  # ...once it holds at least this many calls
    rates: BreakerRates = Field(default_factory=BreakerRates)
    open_s: Positive = 30  # open this long, then one probe call (half-open)
    auto_pause_after_s: Positive | None = None  # failing this long without a break: paused (None: never)

    @model_serializer(mode="wrap")
    def _without_unset_pause(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # No auto-pause: no key (TOML has no null), so an export imports back unchanged.
        data: dict[str, Any] = handler(self)
        if data.get("auto_pause_after_s") is None:
            data.pop("auto_pause_after_s", None)
        return data


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
    breaker: BreakerSettings | None = None
    secrets: list[SecretRef] = Field(default_factory=list)
    payloads: PayloadSettings | None = None
    retention: RetentionSettings | None = None
    api: ApiSettings | None = None
    webhooks: WebhookSettings | None = None
    alerts: AlertSettings | None = None  # rules and notifiers over alert_rules.DEFAULTS

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
