"""The capture format: exact bytes (`body_b64`), headers as pairs (repeats kept), and the export
that writes stored deliveries back out so re-ingesting them stores the same bytes."""

from __future__ import annotations

import gc
import io
from base64 import b64encode
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from click.testing import CliRunner, Result
from sqlalchemy import select

from store.database import reading
from store.models import AuditEntry, Delivery
from tests.support import T0, add_stripe, make_context, pi_event
from workbench.cli.main import cli
from workbench.services import triage
from workbench.services.capture_export import export_captures
from workbench.services.captures import Capture, CaptureReader, parse_capture_line
from workbench.services.ingest import ingest
from workbench.services.queries import iter_failures
from workbench.services.timeline import delivery_payload

CANARY = "sk_live_CANARY0123456789abcdefXYZ"
deliveries = Delivery.__table__


@pytest.fixture(autouse=True)
def _release_engines() -> Iterator[None]:
    yield
    gc.collect(1)


def parse(**fields: Any) -> Capture | str:
    return parse_capture_line(orjson.dumps({"received_at": "2026-11-01T12:00:00Z", **fields}))


# -- parsing -------------------------------------------------------------------------------------

def test_text_body_means_its_utf8_and_b64_body_means_exactly_these_bytes():
    text = parse(headers={}, body="\u00ff")
    assert isinstance(text, Capture) and text.body == b"\xc3\xbf"
    raw = parse(headers={}, body_b64=b64encode(b"\xff\x00{").decode())
    assert isinstance(raw, Capture) and raw.body == b"\xff\x00{"
    assert isinstance(parse(body_b64=""), Capture)  # an empty body is a body


@pytest.mark.parametrize(("fields", "reason"), [
    ({"body": "{}", "body_b64": "e30="}, "not both"),
    ({"body_b64": "not base64!"}, "`body_b64` is not valid base64"),
    ({"body_b64": "e30"}, "`body_b64` is not valid base64"),  # bad padding
    ({"body_b64": 12}, "`body_b64` must be a base64 string"),
    ({"body": None}, "`body` must be a string"),
    ({"body": "{}", "headers": [["A"]]}, "[name, value] string pairs"),
    ({"body": "{}", "headers": [["A", 1]]}, "[name, value] string pairs"),
    ({"body": "{}", "headers": "A: b"}, "[name, value] string pairs"),
    ({"body": "{}", "headers": {"A": 1}}, "`headers` must be an object of strings"),
])
def test_malformed_bodies_and_headers_are_bad_lines(fields, reason):
    result = parse(**fields)
    assert isinstance(result, str) and reason in result


def test_header_pairs_keep_repeats_in_order_and_unique_pairs_are_an_object():
    repeated = parse(body="{}", headers=[["X-Via", "a"], ["Content-Type", "json"], ["X-Via", "b"]])
    assert isinstance(repeated, Capture)
    assert repeated.headers == [["X-Via", "a"], ["Content-Type", "json"], ["X-Via", "b"]]
    unique = parse(body="{}", headers=[["X-Via", "a"], ["Content-Type", "json"]])
    assert isinstance(unique, Capture) and unique.headers == {"X-Via": "a", "Content-Type": "json"}


def test_received_at_is_utc_and_must_have_a_zone():
    capture = parse(body="{}", received_at="2026-11-01T07:00:00-05:00")
    assert isinstance(capture, Capture) and capture.received_at == datetime(2026, 11, 1, 12, tzinfo=UTC)
    assert capture.received_at.tzinfo is UTC
    assert "no time zone" in str(parse(body="{}", received_at="2026-11-01T12:00:00"))


# -- through the CLI and the store ---------------------------------------------------------------

def wb(db_url: str, *args: str, input: bytes | None = None) -> Result:
    return CliRunner().invoke(cli, ["--db", db_url, *args], input=input, catch_exceptions=False)


def _stored(ctx: Any, name: str) -> list[tuple[datetime, Any, bytes]]:
    with reading(ctx.engine) as conn:
        rows = conn.execute(select(deliveries.c.received_at, deliveries.c.headers, deliveries.c.body)
                            .join(Delivery.__table__.metadata.tables["connections"])
                            .where(Delivery.__table__.metadata.tables["connections"].c.name == name)
                            .order_by(deliveries.c.received_at, deliveries.c.id)).all()
    return [(r.received_at, r.headers, bytes(r.body)) for r in rows]


EXACT_BODIES = [
    b"\xff\xfe not UTF-8 at all \x00\x01",                       # invalid JSON: stored, flagged
    orjson.dumps(pi_event("evt_1", "pi_1", "processing", int(T0.timestamp()))),
    "{\"id\": \"evt_2\", \"note\": \"caf\u00e9 \\u00e9\"}".encode(),  # UTF-8 text, escapes kept as sent
    b"",
]


def exact_file() -> bytes:
    lines = [
        orjson.dumps({"received_at": "2026-11-01T12:00:00Z", "body_b64": b64encode(EXACT_BODIES[0]).decode(),
                      "headers": [["X-Via", "edge-1"], ["X-Via", "edge-2"], ["Authorization", f"Bearer {CANARY}"],
                                  ["Authorization", "Basic dXNlcjpwYXNz"]]}),
        orjson.dumps({"received_at": "2026-11-01T12:00:01.250000+01:00", "body": EXACT_BODIES[1].decode(),
                      "headers": {"Stripe-Signature": "t=1,v1=abc", "X-Api-Key": CANARY}}),
        orjson.dumps({"received_at": "2026-11-01T12:00:02Z", "body": EXACT_BODIES[2].decode(), "headers": {}}),
        orjson.dumps({"received_at": "2026-11-01T12:00:03Z", "body": "", "headers": [["A", "1"], ["a", "2"]]}),
    ]
    return b"\n".join(lines) + b"\n"


def test_stored_bytes_equal_received_bytes_and_repeated_headers_are_kept(store_ctx):
    db_url, ctx = store_ctx
    result = wb(db_url, "ingest", "acme", "-", input=exact_file())
    assert result.exit_code == 0, result.output
    assert CANARY not in result.output and "Traceback" not in result.output
    rows = _stored(ctx, "acme")
    assert sorted(body for _, _, body in rows) == sorted(EXACT_BODIES)
    by_body = {body: headers for _, headers, body in rows}
    pairs = by_body[EXACT_BODIES[0]]
    assert [name for name, _ in pairs] == ["X-Via", "X-Via", "Authorization", "Authorization"]
    assert pairs[:2] == [["X-Via", "edge-1"], ["X-Via", "edge-2"]]
    assert pairs[2][1] != pairs[3][1] and all(v.startswith("[redacted] hmac-sha256:") for _, v in pairs[2:])
    assert by_body[EXACT_BODIES[1]]["X-Api-Key"].startswith("[redacted] hmac-sha256:")
    assert by_body[EXACT_BODIES[3]] == {"A": "1", "a": "2"}  # distinct names: an object
    # Every reader of the column copes with pairs: the payload view (redacted by name) ...
    with reading(ctx.engine) as conn:
        delivery_id = conn.execute(select(deliveries.c.id).where(deliveries.c.body == EXACT_BODIES[0])).scalar_one()
    shown = delivery_payload(ctx, delivery_id)["headers"]
    assert shown[:2] == [["X-Via", "edge-1"], ["X-Via", "edge-2"]] and shown[2] == ["Authorization", "[redacted]"]
    # ... and a retry, which stores a copy with the same headers and bytes.
    [failure] = [f for f in iter_failures(ctx) if f["event_id"] == delivery_id]
    triage.retry(ctx, [failure["id"]], "retrying")
    with reading(ctx.engine) as conn:
        copy = conn.execute(select(deliveries).where(deliveries.c.replay_of == delivery_id)).one()
    assert copy.headers == pairs and bytes(copy.body) == EXACT_BODIES[0]


def test_export_then_ingest_stores_identical_bytes(store_ctx):
    db_url, ctx = store_ctx
    assert wb(db_url, "ingest", "acme", "-", input=exact_file()).exit_code == 0
    out = io.BytesIO()
    assert export_captures(ctx, "acme", out, destination="/tmp/acme.jsonl") == 4
    exported = out.getvalue()
    with reading(ctx.engine) as conn:  # raw bodies leave the store: an audited act
        [entry] = [a for a in conn.execute(select(AuditEntry.__table__)) if a.action == "captures.export"]
    assert entry.after == {"deliveries": 4, "destination": "/tmp/acme.jsonl", "redacted": False}
    assert entry.actor == "user:tester"
    assert CANARY not in exported.decode()
    assert exported.count(b'"body_b64"') == 1  # only the body that is not UTF-8
    add_stripe(ctx, "copy")
    ingest(ctx, "copy", CaptureReader(io.BytesIO(exported)))
    assert _stored(ctx, "copy") == _stored(ctx, "acme")
    # Into the same connection, every line is one it already stored.
    assert ingest(ctx, "acme", CaptureReader(io.BytesIO(exported))).counts == {"already_stored": 4}
    again = io.BytesIO()
    export_captures(ctx, "copy", again)
    assert again.getvalue() == exported


@pytest.fixture
def store_ctx(db_url: str, engine: Any) -> tuple[str, Any]:
    ctx = make_context(engine)
    add_stripe(ctx)
    return db_url, ctx


def test_malformed_capture_lines_through_the_cli(store_ctx):
    db_url, ctx = store_ctx
    good = {"received_at": "2026-11-01T12:00:00Z", "headers": {"Authorization": f"Bearer {CANARY}"}, "body": "{}"}
    lines = [
        orjson.dumps(good),
        orjson.dumps({**good, "body_b64": "e30="}),                               # 2: both forms
        orjson.dumps({**{k: v for k, v in good.items() if k != "body"}, "body_b64": f"{CANARY}!"}),  # 3
        orjson.dumps({**good, "headers": [["Authorization", CANARY, "extra"]]}),  # 4: not a pair
        orjson.dumps({**good, "received_at": CANARY}),                             # 5: a secret as a time
        orjson.dumps({**{k: v for k, v in good.items() if k != "body"}, "body_b64": "/w=="}),
    ]
    result = wb(db_url, "ingest", "acme", "-", input=b"\n".join(lines) + b"\n")
    assert result.exit_code == 3
    assert "Traceback" not in result.output and CANARY not in result.output
    errors = result.stderr.strip().splitlines()
    assert [e.split(": skipped: ")[0] for e in errors] == ["line 2", "line 3", "line 4", "line 5"]
    assert "not both" in errors[0] and "not valid base64" in errors[1] and "pairs" in errors[2]
    assert "not ISO-8601" in errors[3]
    assert sorted(body for _, _, body in _stored(ctx, "acme")) == [b"{}", b"\xff"]


def test_the_cli_export_masks_secrets_unless_exact_bytes_are_asked_for(store_ctx, tmp_path):
    db_url, ctx = store_ctx
    secret_body = orjson.dumps({"id": "evt_s", "type": "note", "api_key": CANARY, "text": f"token {CANARY}"})
    line = orjson.dumps({"received_at": "2026-11-01T12:00:00Z", "body": secret_body.decode(), "headers": {}})
    assert wb(db_url, "ingest", "acme", "-", input=line + b"\n").exit_code == 0

    shown = wb(db_url, "events", "--connection", "acme", "--captures")
    assert shown.exit_code == 0 and CANARY not in shown.output
    assert orjson.loads(orjson.loads(shown.output)["body"])["id"] == "evt_s"  # still a capture line

    exact = tmp_path / "exact.jsonl"
    written = wb(db_url, "events", "--connection", "acme", "--captures", "--exact", "-o", str(exact))
    assert written.exit_code == 0 and CANARY not in written.output
    assert orjson.loads(exact.read_bytes())["body"].encode() == secret_body  # the exact bytes
    assert not list(tmp_path.glob(".workbench-*"))  # the temporary file was renamed into place
    with reading(ctx.engine) as conn:
        redacted = [a.after["redacted"] for a in conn.execute(select(AuditEntry.__table__))
                    if a.action == "captures.export"]
    assert redacted == [True, False]

    usage = CliRunner().invoke(cli, ["--db", db_url, "events", "--captures"])
    assert usage.exit_code == 2 and "--captures needs --connection" in usage.output
