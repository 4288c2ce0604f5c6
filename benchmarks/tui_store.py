"""Build (once) the big store the TUI benchmark runs on.

    .venv/bin/python -m benchmarks.tui_store [--records 200000] [--db PATH]

Two Stripe connections fed by the simulator through the real ingest pipeline, shaped like the
issue's target: ~1,000,000 deliveries over ~200,000 records (many redeliveries) and ~20,000 open
failures (contract drift: a status the mapping does not know). One record gets a 10,000-entry
timeline (thousands of redeliveries of its events) and two 1 MB payloads are stored for the
diff measurement. The file is cached under benchmarks/out/ and reused when it exists.
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

OUT = Path(__file__).resolve().parent / "out"
BIG_PAYLOAD_BYTES = 1_000_000
HOT_TIMELINE_ENTRIES = 10_000


def default_path(records: int) -> Path:
    return OUT / f"tui-store-{records}.db"


def _captures(intents: int, seed: int, start: datetime) -> Iterator[Any]:
    from adapters.stripe.simulator import SimulatorSettings, captures
    from workbench.services.captures import Capture

    # duplicate_rate 0.55 -> ~5 deliveries per intent; drift_rate 0.1 -> ~10% records in review.
    settings = SimulatorSettings(intents=intents, seed=seed, start=start, duplicate_rate=0.55,
                                 drift_rate=0.1, garbage_rate=0.002, uncovered_rate=0.02)
    for item in captures(settings):
        received = datetime.fromisoformat(item["received_at"].replace("Z", "+00:00"))
        yield Capture(received, item["headers"], item["body"].encode(), "webhook")


def big_event(seed: int, pi: str, status: str, created: int) -> bytes:
    """A ~1 MB Stripe-shaped event: a payment intent with a long list of line items."""
    rng = random.Random(seed)
    items = []
    size = 0
    i = 0
    while size < BIG_PAYLOAD_BYTES:
        item = {"id": f"li_{i:06d}", "description": f"Line item {i}", "quantity": rng.randrange(1, 9),
                "amount": rng.randrange(100, 99999), "tax": {"rate": rng.choice([0, 5, 20]), "code": "txcd_1"},
                "metadata": {"sku": f"SKU-{rng.randrange(10**6):06d}", "warehouse": rng.choice(["ams", "sfo"])}}
        size += len(orjson.dumps(item))
        items.append(item)
        i += 1
    obj = {"id": pi, "object": "payment_intent", "amount": 2000, "currency": "usd", "customer": "cus_big",
           "description": "bulk order", "status": status, "metadata": {"order_id": "ord_big"},
           "line_items": items, "last_payment_error": None}
    return orjson.dumps({"id": f"evt_big_{seed}", "object": "event", "type": f"payment_intent.{status}",
                         "created": created, "data": {"object": obj}, "livemode": False})


def build(path: Path, records: int) -> None:
    from store.database import open_store
    from workbench.services.captures import Capture
    from workbench.services.connections import add_connection
    from workbench.services.context import ServiceContext
    from workbench.services.ingest import ingest

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".building")
    for leftover in path.parent.glob(tmp.name + "*"):
        leftover.unlink()
    engine = open_store(f"sqlite:///{tmp}")
    ctx = ServiceContext(engine=engine, actor="user:bench")
    start = datetime(2026, 11, 1, tzinfo=UTC)
    started = time.perf_counter()
    add_connection(ctx, "acme-stripe", "stripe", "live")
    add_connection(ctx, "globex-sandbox", "stripe", "sandbox")
    # ~3.2 events per intent, plus redeliveries: about 5 deliveries per record.
    split = int(records * 0.7)
    for name, intents, seed in (("acme-stripe", split, 11), ("globex-sandbox", records - split, 12)):
        report = ingest(ctx, name, _captures(intents, seed, start))
        print(f"{name}: {report.total:,} deliveries {dict(report.counts)} "
              f"({time.perf_counter() - started:.0f}s)", flush=True)

    # The hot record: one payment intent redelivered until its timeline has 10,000 entries.
    hot = []
    t = start + timedelta(days=2)
    for i in range(HOT_TIMELINE_ENTRIES - 1):
        # A created event, then a long run of processing updates (each applied, no transition).
        status = "requires_payment_method" if i == 0 else "processing"
        event = {"id": f"evt_hot_{i}", "object": "event", "type": f"payment_intent.{status}",
                 "created": int(t.timestamp()) + i,
                 "data": {"object": {"id": "pi_hot_timeline", "object": "payment_intent", "amount": 2000,
                                     "currency": "usd", "customer": "cus_hot", "status": status}}}
        hot.append(Capture(t + timedelta(seconds=i), {"Content-Type": "application/json"}, orjson.dumps(event),
                           "webhook"))
    ingest(ctx, "acme-stripe", hot)
    created = int((start + timedelta(days=3)).timestamp())
    big = [Capture(start + timedelta(days=3), {"Content-Type": "application/json"},
                   big_event(1, "pi_big_payload", "processing", created), "webhook"),
           Capture(start + timedelta(days=3, seconds=5), {"Content-Type": "application/json"},
                   big_event(2, "pi_big_payload", "succeeded", created + 5), "webhook")]
    ingest(ctx, "acme-stripe", big)
    engine.dispose()
    tmp.replace(path)
    for side in ("-wal", "-shm"):
        Path(str(tmp) + side).unlink(missing_ok=True)
    print(f"built {path} in {time.perf_counter() - started:.0f}s", flush=True)


def ensure(records: int, path: Path | None = None) -> Path:
    path = path or default_path(records)
    if not path.exists():
        build(path, records)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.tui_store", description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--db", type=Path, default=None)
    parser.add_argument("--rebuild", action="store_true")
    args = parser.parse_args(argv)
    path = args.db or default_path(args.records)
    if args.rebuild and path.exists():
        path.unlink()
    ensure(args.records, path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
