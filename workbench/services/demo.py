"""Demo data: several connections with realistic webhook traffic run through the real ingest
pipeline, commands with classified attempts, every failure category, some records stuck and
some failures already triaged."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import orjson
from sqlalchemy import func, select

from adapters import Adapter, Simulating
from store.database import reading, writing
from store.models import Command, Connection, Failure, Record
from workbench.domain.belief import decide, event_key
from workbench.domain.canonical import BoundaryProblem, NotCovered
from workbench.domain.taxonomy import Category, policy_for

from . import access, connections, role_bindings, triage
from .captures import Capture
from .commands import enqueue, record_attempt
from .context import ServiceContext
from .errors import ServiceError
from .ingest import IngestReport, ingest

records = Record.__table__
failures = Failure.__table__
commands = Command.__table__

# name, provider, environment, share of the records
DEMO_CONNECTIONS = [
    ("acme-payments", "stripe", "live", 0.4),
    ("globex-checkout", "stripe", "live", 0.3),
    ("acme-payments-sandbox", "stripe", "sandbox", 0.2),
    ("initech-billing", "stripe", "sandbox", 0.1),
]
NATURAL_DELIVERIES_PER_RECORD = 3.1  # the simulator's lifecycles, before redeliveries
OPEN_STATES = ("open", "retrying", "needs_review")
COMMAND_BATCH = 500
# Bounds on the search for categories a small store lacks (see _ensure_every_category).
SCAN_INTENTS = 10_000
SCAN_CAPTURES = 40_000
SCAN_CALLS = 5_000


@dataclass
class DemoSummary:
    connections: int = 0
    records: int = 0
    deliveries: Counter[str] = field(default_factory=Counter)
    commands: int = 0
    # Unresolved failures (every state but resolved and ignored: `failures --state unresolved`)
    # by category.
    open_failures: Counter[str] = field(default_factory=Counter)
    # Every failure by triage state, in the names `failures --state` takes.
    failures_by_state: Counter[str] = field(default_factory=Counter)


def has_data(ctx: ServiceContext) -> bool:
    with reading(ctx.engine) as conn:
        return conn.execute(select(func.count()).select_from(Connection.__table__)).scalar_one() > 0


def build_demo(ctx: ServiceContext, *, records_total: int = 6000, deliveries_total: int | None = None,
               open_failures_total: int | None = None, seed: int = 7,
               progress: Callable[[str], None] | None = None) -> DemoSummary:
    if has_data(ctx):
        raise ServiceError("the store already has connections; the demo fills an empty store")
    access.require(ctx, "ingest")  # the demo's traffic is ingested; nothing written before this
    _bind_demo_people(ctx)
    say = progress or (lambda _message: None)
    rng = random.Random(seed)
    summary = DemoSummary()
    per_record = (deliveries_total / records_total) if deliveries_total else None
    duplicate_rate = 0.05 if per_record is None else min(1.0, max(0.0, per_record / NATURAL_DELIVERIES_PER_RECORD - 1))
    adapters = {provider: _demo_adapter(ctx, provider) for _, provider, _, _ in DEMO_CONNECTIONS}  # before any write
    for index, (name, provider, environment, share) in enumerate(DEMO_CONNECTIONS):
        info = connections.add_connection(ctx.as_actor("user:demo"), name, provider, environment, "demo data")
        summary.connections += 1
        adapter = adapters[provider]
        intents = max(1, round(records_total * share))
        stream = adapter.simulate_captures(intents=intents, seed=seed + index, duplicate_rate=duplicate_rate,
                                           livemode=environment == "live")

        def ingested(report: IngestReport, name: str = name) -> None:
            say(f"{name}: ingested {report.total:,} deliveries")

        report = ingest(ctx, name, _as_captures(stream), batch_size=5000, progress=ingested)
        summary.deliveries.update(report.counts)
        _add_commands(ctx, info, adapter, rng, commands_for=max(1, intents // 12), say=say)
    _ensure_every_category(ctx, rng, seed, summary, say)
    if open_failures_total:
        _top_up_failures(ctx, rng, open_failures_total, say)
    _triage_some(ctx, rng)
    connections.set_paused(ctx.as_actor("user:demo"), "initech-billing", True, "demo: paused during a key rotation")
    with reading(ctx.engine) as conn:
        summary.records = conn.execute(select(func.count()).select_from(records)).scalar_one()
        summary.commands = conn.execute(select(func.count()).select_from(commands)).scalar_one()
        summary.open_failures.update(dict(conn.execute(
            select(failures.c.category, func.count()).where(failures.c.state.in_(OPEN_STATES))
            .group_by(failures.c.category)).all()))
        summary.failures_by_state.update(dict(conn.execute(
            select(failures.c.state, func.count()).group_by(failures.c.state)).all()))
    return summary


# The people the demo data shows at work, and their roles (an admin set the store up; two
# operators triage).
DEMO_PEOPLE = (("demo", "admin"), ("maria.ops", "operator"), ("dev.lee", "operator"))


def _bind_demo_people(ctx: ServiceContext) -> None:
    """Bind the demo's people, as whoever runs the demo (on a new store: its first admin)."""
    for name, role in DEMO_PEOPLE:
        if role_bindings.actor_for(name) != ctx.actor:
            role_bindings.grant(ctx, name, role, "demo data")


class DemoAdapter(Adapter, Simulating, Protocol):
    """What the demo needs of a provider's adapter: the core's protocol, and made-up traffic."""


def _demo_adapter(ctx: ServiceContext, provider: str) -> DemoAdapter:
    adapter = ctx.adapters.get(provider)
    if not isinstance(adapter, Simulating):
        raise ServiceError(f"the {provider} adapter cannot simulate traffic, so the demo cannot use it")
    return adapter


def _as_captures(stream: Iterator[dict[str, Any]]) -> Iterator[Capture]:
    for item in stream:
        yield Capture(datetime.fromisoformat(item["received_at"]), item["headers"], item["body"].encode(), "webhook")


def _add_commands(ctx: ServiceContext, info: connections.ConnectionInfo, adapter: DemoAdapter, rng: random.Random,
                  commands_for: int, say: Callable[[str], None]) -> None:
    """Commands on a sample of the connection's records, each with 1-3 classified attempts."""
    with reading(ctx.engine) as conn:
        record_ids = conn.execute(select(records.c.id).where(records.c.connection_id == info.id)
                                  .order_by(records.c.id).limit(commands_for * 4)).scalars().all()
    chosen = rng.sample(record_ids, min(commands_for, len(record_ids)))
    for start in range(0, len(chosen), COMMAND_BATCH):
        with writing(ctx.engine) as conn:
            for record_id in chosen[start:start + COMMAND_BATCH]:
                _one_command(conn, ctx, info, adapter, rng, record_id)
        say(f"{info.name}: {min(start + COMMAND_BATCH, len(chosen)):,} commands")


def _one_command(conn: Any, ctx: ServiceContext, info: connections.ConnectionInfo, adapter: DemoAdapter,
                 rng: random.Random, record_id: str,
                 first_response: tuple[int | None, dict[str, Any], dict[str, str]] | None = None) -> int:
    intent = rng.choice(["capture_payment", "refund_payment", "update_metadata"])
    payload = {"amount": rng.choice([500, 1999, 4500]), "reason": "requested_by_customer"}
    command_id = enqueue(conn, ctx, connection_id=info.id, record_id=record_id, intent=intent, payload=payload)
    command = conn.execute(select(commands).where(commands.c.id == command_id)).one()
    opened = 0
    for number in range(1, 4):
        if number == 1 and first_response is not None:
            status, body, headers = first_response
        else:
            status, body, headers = adapter.simulate_call(rng)
        outcome = adapter.classify_response(status, body, headers, timed_out=status is None)
        failure_id = record_attempt(
            conn, ctx, command=command, provider=info.provider, number=number,
            request={"method": "POST", "path": f"/v1/payment_intents/{intent}", "idempotency_key": command.idempotency_key,
                     "headers": {"Authorization": "Bearer sk_live_demo0000000000000000"}},
            response_status=status, response_body=orjson.dumps(body).decode() if body else None,
            latency_ms=rng.randrange(80, 30000 if status is None else 2500),
            category=outcome.category, code=outcome.code, message=outcome.message)
        opened += failure_id is not None
        if outcome.category is None or not policy_for(outcome.category).retryable:
            break
    return opened


def _top_up_failures(ctx: ServiceContext, rng: random.Random, target: int, say: Callable[[str], None]) -> None:
    """Add commands until the store holds `target` open failures (for large benchmark stores)."""
    conns = connections.list_connections(ctx)
    while True:
        with reading(ctx.engine) as conn:
            open_now = conn.execute(select(func.count()).select_from(failures)
                                    .where(failures.c.state.in_(OPEN_STATES))).scalar_one()
            sample = conn.execute(select(records.c.id, records.c.connection_id)
                                  .order_by(func.random()).limit(COMMAND_BATCH)).all()
        if open_now >= target or not sample:
            return
        say(f"open failures: {open_now:,}/{target:,}")
        by_id = {c.id: c for c in conns}
        with writing(ctx.engine) as conn:
            for record_id, connection_id in sample:
                info = by_id[connection_id]
                _one_command(conn, ctx, info, _demo_adapter(ctx, info.provider), rng, record_id)


def _categories_present(ctx: ServiceContext) -> set[str]:
    with reading(ctx.engine) as conn:
        return set(conn.execute(select(failures.c.category).distinct()).scalars())


def _ensure_every_category(ctx: ServiceContext, rng: random.Random, seed: int, summary: DemoSummary,
                           say: Callable[[str], None]) -> None:
    """The simulator's rarer cases (contract drift, a mismatched object, some API errors) may
    not come up in a small store; add the missing categories through the same real paths: a
    few more deliveries picked from simulated traffic, and commands whose attempt fails so."""
    missing = {str(c) for c in Category} - _categories_present(ctx)
    if not missing:
        return
    name, provider, environment, _share = DEMO_CONNECTIONS[0]
    info = connections.get_connection(ctx, name)
    adapter = _demo_adapter(ctx, provider)
    picked: list[Capture] = []
    scanned = 0
    for item in adapter.simulate_captures(intents=SCAN_INTENTS, seed=seed + 1000, duplicate_rate=0.0,
                                          livemode=environment == "live"):
        scanned += 1
        capture = next(_as_captures(iter([item])))
        category = _inbound_category(adapter, capture)
        if category in missing:
            picked.append(capture)
            missing.discard(category)
        if not missing or scanned >= SCAN_CAPTURES:
            break
    if picked:
        summary.deliveries.update(ingest(ctx, name, picked).counts)
    if missing:
        with reading(ctx.engine) as conn:
            record_id = conn.execute(select(records.c.id).where(records.c.connection_id == info.id)
                                     .order_by(records.c.id).limit(1)).scalar()
        if record_id is None:  # no record to hang the commands on: the categories stay missing
            return
        with writing(ctx.engine) as conn:
            for _ in range(SCAN_CALLS):
                response = adapter.simulate_call(rng)
                status, body, headers = response
                category = adapter.classify_response(status, body, headers, timed_out=status is None).category
                if category is not None and str(category) in missing:
                    _one_command(conn, ctx, info, adapter, rng, record_id, first_response=response)
                    missing.discard(str(category))
                if not missing:
                    break
    say(f"every failure category: {'all present' if not missing else 'missing ' + ', '.join(sorted(missing))}")


def _inbound_category(adapter: Adapter, capture: Capture) -> str | None:
    """The failure category ingest would open for this delivery on its own, if any."""
    try:
        parsed = adapter.parse(capture.body)
        mapped = adapter.map(parsed)
    except BoundaryProblem as problem:
        return str(problem.category)
    if isinstance(mapped, NotCovered):
        return None
    decision = decide(None, mapped, event_key(parsed.occurred_at or capture.received_at, mapped, "-"))
    opens = getattr(decision, "opens", None)
    return str(opens) if opens is not None else None


def _triage_some(ctx: ServiceContext, rng: random.Random) -> None:
    """Some failures already handled by people, as in a store that has been in use."""
    with reading(ctx.engine) as conn:
        open_ids = conn.execute(select(failures.c.id).where(failures.c.state.in_(OPEN_STATES))
                                .order_by(failures.c.id).limit(400)).scalars().all()
    if not open_ids:
        return
    picked = rng.sample(list(open_ids), min(60, len(open_ids)))
    analyst = ctx.as_actor("user:maria.ops")
    # Up to 20 each assigned, resolved and ignored; a small store has fewer open failures, so
    # split what there is (triage refuses an empty selection).
    size = min(20, max(1, len(picked) // 3))
    assigned, resolved, ignored = picked[:size], picked[size:2 * size], picked[2 * size:3 * size]
    triage.assign(analyst, assigned, "maria.ops", "taking these")
    if resolved:
        triage.resolve(analyst, resolved, "confirmed with the provider's dashboard; no action needed")
    if ignored:
        triage.ignore(ctx.as_actor("user:dev.lee"), ignored, "known sandbox noise")
