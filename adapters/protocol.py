"""What the core relies on from a provider adapter, and what an adapter declares it can do.

The core (ingest, replay, triage, views, the demo) calls an adapter only through `Adapter`
(the registry hands out nothing else); whatever else an adapter has is its own business.
`Capabilities` is what the core reads to decide what it may build on for a provider (webhooks
or polling, idempotency keys, ...). Demo traffic is a separate, optional protocol, `Simulating`.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

if TYPE_CHECKING:  # the canonical model imports pydantic: not at start-up (see registry)
    from workbench.domain.canonical import MappedEvent, NotCovered, ParsedEvent
    from workbench.domain.statuses import Status
    from workbench.domain.taxonomy import Category


class Pagination(StrEnum):
    """How the provider's list endpoints page."""

    NONE = "none"
    CURSOR = "cursor"  # an opaque or object-ID cursor (Stripe's starting_after)
    PAGE = "page"  # page numbers
    OFFSET = "offset"


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a provider offers the core, as its adapter declares it. Defaults say "no"."""

    webhooks: bool = False  # pushes events to us
    event_listing: bool = False  # lists past events (catch-up after downtime)
    polling_cursor: bool = False  # lists changes since a cursor we keep (sync by polling)
    idempotency_keys: bool = False  # honours our idempotency key on writes
    lookup_by_reference: bool = False  # finds an object by our own reference
    # The webhook signature scheme the adapter verifies; None until a verifier is implemented.
    signature_scheme: str | None = None
    pagination: Pagination = Pagination.NONE
    # How the provider says "slow down", as the adapter's classify_response reads it:
    # "status:<code>" for an HTTP status, "header:<name>" for a header (lower case).
    rate_limit_signals: frozenset[str] = frozenset()
    # Our intents the adapter can carry out ("payment.create", ...: `workbench command submit`
    # refuses any other), and the kind of record a command makes ("payment", "payroll_run").
    intents: tuple[str, ...] = ()
    record_kind: str | None = None
    # How reconciliation reads the provider's current objects (the client is `Reconciling`):
    # "list" pages through a list endpoint, "lookup" fetches each object by its ID; None: not at all.
    reconcile_by: Literal["list", "lookup"] | None = None
    # Outbound requests per second the provider tolerates from one account: the engine's pace
    # for this provider unless a connection's `rate_limit.per_second` overrides it.
    rate_limit_per_s: float | None = None


@dataclass(frozen=True, slots=True)
class ClassifiedOutcome:
    """An API call's outcome in the canonical failure taxonomy."""

    category: Category | None  # None: success
    code: str
    message: str
    retry_after_s: float | None = None


class Adapter(Protocol):
    """A provider adapter as the core uses it."""

    @property
    def provider(self) -> str:
        """The provider name connections refer to."""

    @property
    def mapping_version(self) -> str:
        """The version of the mapping rules `map` applies (recorded on every delivery)."""

    @property
    def capabilities(self) -> Capabilities: ...

    @property
    def redacted_paths(self) -> tuple[str, ...]:
        """Payload fields masked whole wherever a payload is shown or exported, as dotted paths
        (`data.object.billing_details.email`; `*` for any one key; lists are looked through),
        beyond what the core's detectors and sensitive-key names already mask."""

    def parse(self, body: bytes) -> ParsedEvent:
        """A raw delivery body as an event; raises BoundaryProblem when it is not one."""

    def map(self, event: ParsedEvent) -> MappedEvent | NotCovered:
        """What the event means for our records; raises BoundaryProblem when it cannot say."""

    def classify_response(self, status_code: int | None, body: Mapping[str, Any] | None = None,
                          headers: Mapping[str, str] | None = None, *,
                          timed_out: bool = False) -> ClassifiedOutcome:
        """An API response (or its absence: `status_code` None, `timed_out`) classified."""


# ---------------------------------------------------------------------------------------------
# Webhook signatures (issue 10). An adapter whose capabilities name a signature_scheme also
# implements `SignatureVerifying`; the core hands it the connection's active webhook secrets.
# ---------------------------------------------------------------------------------------------

SignatureVerdict = Literal["verified", "failed", "unchecked"]


@dataclass(frozen=True, slots=True)
class WebhookSecret:
    """One active webhook signing secret: its reference name (shown) and value (never shown)."""

    name: str
    value: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class SignatureCheck:
    """The verdict on one delivery's signature. `secret`: the name of the secret that matched
    (verified), or of the last one tried (failed); never a value. `reason`: why it failed, in
    one line (missing header, timestamp outside the tolerance, no secret matched...)."""

    verdict: SignatureVerdict
    secret: str | None = None
    reason: str | None = None


@runtime_checkable
class SignatureVerifying(Protocol):
    def verify_signature(self, headers: Mapping[str, str], body: bytes, secrets: Sequence[WebhookSecret],
                         now: datetime, tolerance_s: int = 300) -> SignatureCheck:
        """Check `body` against the signature headers (names in lower case) with any of
        `secrets`; no secrets at all gives "unchecked". A timestamp further than `tolerance_s`
        from `now` either way fails (replay protection)."""


# ---------------------------------------------------------------------------------------------
# Talking to the provider's API (issue 10; the sync engine of issue 11 dispatches through it).
# An adapter that can call its provider implements `Calling` and hands out a `ProviderClient`.
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CallResult:
    """One API call as it happened: what was asked and what came back (bodies as the provider
    sent them; the caller redacts before storing or showing), and its classification."""

    method: str
    path: str
    status_code: int | None  # None: no response (timed out, connection failed)
    body: Mapping[str, Any] | None
    headers: Mapping[str, str]
    latency_ms: int
    outcome: ClassifiedOutcome


@dataclass(frozen=True, slots=True)
class EventPage:
    """One page of the provider's events (raw bodies, as a webhook would deliver them), and
    the cursor to ask for the next page with (None: no more for now)."""

    bodies: list[bytes]
    next_cursor: str | None
    call: CallResult


class ProviderClient(Protocol):
    """A connection's way to its provider's API. Our intents, not the provider's operations:
    the adapter maps `intent` ("payment.create", "payroll_run.submit", ...) to its calls.
    Errors of transport and of the provider come back classified in `CallResult.outcome`; a
    client raises only for a programming error (an intent it does not know: ValueError)."""

    def send(self, intent: str, payload: Mapping[str, Any], *, reference: str,
             idempotency_key: str | None) -> CallResult:
        """Carry out `intent` for our `reference` (the command's operation ID); sends
        `idempotency_key` where the provider honours keys."""

    def lookup(self, reference: str) -> CallResult:
        """Find the provider's object made for our `reference` (where capabilities say
        lookup_by_reference); a 404-like answer is classified missing_dependency."""

    def list_events(self, cursor: str | None, limit: int = 100) -> EventPage:
        """Events after `cursor` (None: from the start), oldest first."""

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class CursorAt:
    """Where a client's event listing stands at a time: `list_events(cursor)` lists the events
    that happened at or after it (a few before it too, at most: reading twice is safe, dedupe
    drops them; missing one is not). `cursor` None: from the very start. `call`: the last call
    made to find it; a failed one (its outcome has a category) means no answer."""

    cursor: str | None
    call: CallResult
    calls: int = 1


@runtime_checkable
class Rewinding(Protocol):
    """A client whose polling cursor can be moved back to a time (`workbench connection
    rewind`). How is the provider's business: Stripe lists events by time (the cursor becomes
    the newest event created before it), the payroll sandbox by offset (the number of events
    before it, found by searching the offsets)."""

    def cursor_at(self, when: datetime) -> CursorAt:
        """The cursor from which `list_events` re-reads everything since `when`."""


@runtime_checkable
class Calling(Protocol):
    def client(self, *, base_url: str | None, api_key: str | None, timeout_s: float = 10.0) -> ProviderClient:
        """A client for the provider at `base_url` (None: the provider's real API)."""


# ---------------------------------------------------------------------------------------------
# Reconciliation (issue 11): the provider's current view of its objects, in our terms. A client
# whose adapter's capabilities name `reconcile_by` implements `Reconciling`.
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CurrentObject:
    """One provider object as it is now, mapped by the adapter's rules: `status` is OUR
    canonical status (None: a provider status the mapping does not know), `fields` the
    canonical fields records keep, `reference` our reference where the object carries it."""

    kind: str
    provider_id: str
    reference: str | None
    provider_status: str
    status: Status | None
    fields: dict[str, Any]
    mapping_version: str


@dataclass(frozen=True, slots=True)
class Unreadable:
    """A provider object the mapping cannot read (its ID where it has one, and why)."""

    provider_id: str | None
    reason: str


@dataclass(frozen=True, slots=True)
class CurrentPage:
    """One page of the provider's current objects; `next_cursor` None: the last page."""

    objects: list[CurrentObject]
    unreadable: list[Unreadable]
    next_cursor: str | None
    call: CallResult


@dataclass(frozen=True, slots=True)
class CurrentLookup:
    """One object fetched by its provider ID: `found` None when the provider does not know it
    (the call's outcome is then missing_dependency) or the call failed (another category)."""

    found: CurrentObject | None
    call: CallResult


@runtime_checkable
class Reconciling(Protocol):
    def list_current(self, cursor: str | None, limit: int = 100) -> CurrentPage:
        """The provider's objects after `cursor` (None: from the start), in the provider's order."""

    def fetch_current(self, provider_id: str) -> CurrentLookup:
        """One object by the provider's ID."""


@dataclass(frozen=True, slots=True)
class PushCommand:
    """Our intent (and its payload) that makes the provider hold our value again."""

    intent: str
    payload: dict[str, Any]


@runtime_checkable
class Pushing(Protocol):
    """An adapter that can say which of our intents pushes our value of a field back to the
    provider (resolving drift in our favour)."""

    def push_command(self, kind: str, provider_id: str, field: str, ours: Any) -> PushCommand | None:
        """The command for it; None: no intent of ours sets this field to this value."""


@runtime_checkable
class Commanding(Protocol):
    """An adapter that takes commands (issue 11): checks a command's payload before it is
    queued, and says what a successful answer means for the command's record."""

    def check_command(self, intent: str, payload: Mapping[str, Any]) -> str | None:
        """None when `payload` is fit for `intent` (one of capabilities.intents); otherwise
        what is wrong with it, in one line naming the field."""

    def command_result(self, intent: str, body: Mapping[str, Any]) -> MappedEvent | None:
        """What a successful answer to `intent` says about the record (its kind, the
        provider's ID, status and fields), as an event about it would; None when the answer
        does not say (then the record only moves to `submitted`)."""


@runtime_checkable
class Simulating(Protocol):
    """An adapter that can make up realistic traffic (demo data, benchmarks): no network."""

    def simulate_captures(self, *, intents: int, seed: int, duplicate_rate: float = 0.05,
                          livemode: bool = False) -> Iterator[dict[str, Any]]:
        """Capture-file objects (`received_at`, `headers`, `body`) for `intents` objects."""

    def simulate_call(self, rng: random.Random) -> tuple[int | None, dict[str, Any], dict[str, str]]:
        """One API call's outcome: status (None: timed out), body, headers."""
