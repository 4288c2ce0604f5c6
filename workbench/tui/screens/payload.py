"""One delivery: its raw payload (pretty-printed, already redacted by the service) and what
the mapping made of it."""

from __future__ import annotations

from typing import Any

import orjson
from rich.markup import escape
from textual.binding import Binding

from workbench.domain.redaction import MASK, is_sensitive_key
from workbench.services import payload_reveal, timeline
from workbench.services.context import ServiceContext
from workbench.services.views import pretty_json

from ..errors import describe_error
from ..vaults import unlocked_vaults
from .document import Document, DocumentScreen

REVEALED_NOTE = "UNREDACTED: revealed by you, recorded in the audit trail; Escape or ctrl+r hides it again"


def headers_text(headers: Any) -> str:
    """Headers as a JSON-looking object, one line a header: from a dict, or from a list of
    (name, value) pairs, where a repeated header shows once per value. A name that says
    secret is masked here too, whichever shape the service sent."""
    if isinstance(headers, dict):
        pairs = list(headers.items())
    elif isinstance(headers, list) and all(isinstance(p, (list, tuple)) and len(p) == 2 for p in headers):
        pairs = [(p[0], p[1]) for p in headers]
    else:  # an unexpected shape: shown as it is rather than not at all
        return pretty_json(headers)
    if not pairs:
        return "{}"
    lines = [f"  {orjson.dumps(str(name)).decode()}: "
             f"{orjson.dumps(MASK if is_sensitive_key(str(name)) and value not in (None, '') else value).decode()}"
             for name, value in pairs]
    return "{\n" + ",\n".join(lines) + "\n}"


def payload_document(payload: dict[str, Any], revealed: payload_reveal.RevealedPayload | None = None) -> Document:
    what = payload.get("event_type") or "unparsed body"
    verdict = payload["verdict"] + (f" ({payload['reason']})" if payload.get("reason") else "")
    transition = payload.get("transition")
    if transition:
        mapped = (f"mapping {transition['mapping_version'] or payload.get('mapping_version') or '-'}: "
                  f"{transition['from'] or '(new)'} -> {transition['to']} (v{transition['version']})")
    else:
        mapped = f"mapping {payload.get('mapping_version') or '-'}: no change of belief"
    event = str(payload.get("provider_event_id") or "-")
    signature = timeline.signature_text(payload.get("signature") or "unchecked", payload.get("signature_secret"))
    summary = (f"[b]{escape(payload['id'])}[/b] · {escape(what)} · event {escape(event)}\n"
               f"verdict [b]{escape(verdict)}[/b] · {escape(signature)} · {escape(mapped)}")
    if revealed is not None:
        summary += f"\n[b]{escape(REVEALED_NOTE)}[/b]"
        payload = {**payload, "body": revealed.body, "body_is_json": revealed.body_is_json}
    doc = Document(summary)
    body = payload["body"]
    state = payload.get("body_state")
    if state in ("locked", "purged"):  # no body to show: the service says why (and when, if purged)
        doc.section(f"── body ({'encrypted, vault locked' if state == 'locked' else 'purged'}) ──", str(body))
    else:
        doc.section("── body" + (" (encrypted at rest)" if state == "encrypted" else "")
                    + ("" if payload.get("body_is_json") else " (not JSON)") + " ──",
                    pretty_json(body) if payload.get("body_is_json") else str(body))
    doc.section("── headers ──", pretty_json(revealed.headers) if revealed is not None
                else headers_text(payload["headers"]))
    if transition:
        doc.section("── mapping result ──", pretty_json(transition))
    return doc


class PayloadScreen(DocumentScreen):
    WHERE = "Payload"
    HELP = """One delivery exactly as received (redacted: secrets never show): the body, pretty-printed,
then the headers and what the mapping made of it (mapping version, from -> to, verdict), and
its signature verdict with the name of the secret that verified it or was tried.
d compares this delivery with the record's current state. r reveals the body unredacted
(the operator role; the audit trail records who revealed which delivery, never the value);
Escape or ctrl+r hides it again."""

    BINDINGS = [Binding("d", "diff", "Diff vs state"), Binding("r", "reveal", "Reveal")]
    WRITES = frozenset({"reveal"})  # its audit entry: no reveal from a read-only store
    NEEDS = {"reveal": "reveal"}

    def __init__(self, delivery_id: str, record_id: str | None = None) -> None:
        super().__init__(f"delivery {delivery_id}", self._load)
        self.delivery_id = delivery_id
        self.record_id = record_id
        self.payload: dict[str, Any] | None = None  # as loaded (redacted), set by the fetch worker

    def _load(self, ctx: ServiceContext) -> Document:
        self.payload = timeline.delivery_payload(ctx, self.delivery_id, unlocked_vaults(self.app))
        return payload_document(self.payload)

    def action_reveal(self) -> None:
        if self.refused("Reveal") or self.denied("reveal"):
            return
        if self.payload is None:  # not loaded yet: nothing on screen to reveal
            self.app.bell()
            return
        payload = self.payload
        self.run_worker(lambda: self._reveal(payload), thread=True, group="action", exit_on_error=False)

    def _reveal(self, payload: dict[str, Any]) -> None:
        try:
            revealed = payload_reveal.reveal_payload(self.ctx, self.delivery_id, unlocked_vaults(self.app))
        except Exception as exc:  # refused, or the store failing: one line, the redacted view stays
            self._post(self.notify, f"Reveal failed: {describe_error(exc)}", severity="error", markup=False)
            return
        self._post(self.show, payload_document(payload, revealed))

    def action_diff(self) -> None:
        if self.record_id is None:
            self.app.bell()
            return
        self.wb.open_state_diff(self.delivery_id, self.record_id)
