"""The failures of one error-queue group, and the triage actions on them.

An action applies to the marked failures (space, * for all) or else to the one under the
cursor. Resolve and ignore ask for a note, assign for a name; any action on more than one
failure asks for confirmation. The service does the work (one transaction and one audit
entry per failure) in a worker thread and reports progress, shown in a bar at the bottom.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from itertools import islice
from typing import Any

from rich.markup import escape
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import Static

from workbench.services import queries, triage
from workbench.services.context import ServiceContext
from workbench.services.payload_crypto import Vaults
from workbench.services.triage import FailureGroup, Progress, TriageResult

from ..formatting import count
from ..vaults import unlocked_vaults
from ..widgets import Column, Row
from .bulk_table_screen import BulkTableScreen
from .dialogs import PromptScreen

LIMIT = 2000  # failures listed per group; actions reach the rest through marks on later refreshes

COLUMNS = [
    Column("State", 12),
    Column("Record", 16, cut="middle"),
    Column("Assignee", 10, drop_below=70),
    Column("Created", 19, drop_below=110),
    Column("Message", None, min_width=16),
]

STATE_TONES = {"open": "error", "retrying": "accent", "needs_review": "warn"}


@dataclass(frozen=True)
class TriageAction:
    name: str
    verb: str
    done: str
    prompt: str | None  # what to ask for: a note or an assignee
    required: bool
    # (context, failure IDs, note or assignee, progress, the app's unlocked vaults: re-running an
    # encrypted event opens its body)
    run: Callable[[ServiceContext, list[str], str, Progress, Vaults], TriageResult]


ACTIONS: dict[str, TriageAction] = {
    "retry": TriageAction("retry", "Retry", "retried", None, False,
                          lambda ctx, ids, text, progress, vaults: triage.retry(ctx, ids, progress=progress,
                                                                                vaults=vaults)),
    "replay": TriageAction("replay", "Replay", "replayed", None, False,
                           lambda ctx, ids, text, progress, vaults: triage.replay_records(
                               ctx, ids, progress=progress, vaults=vaults)),
    "resolve": TriageAction("resolve", "Resolve", "resolved", "Note: why is it resolved?", True,
                            lambda ctx, ids, text, progress, vaults: triage.resolve(ctx, ids, text, progress)),
    "ignore": TriageAction("ignore", "Ignore", "ignored", "Note: why can it be ignored?", True,
                           lambda ctx, ids, text, progress, vaults: triage.ignore(ctx, ids, text, progress)),
    "assign": TriageAction("assign", "Assign", "assigned", "Assignee (a name or team)", True,
                           lambda ctx, ids, text, progress, vaults: triage.assign(ctx, ids, text,
                                                                                  progress=progress)),
}


def summarise(action: TriageAction, result: TriageResult) -> str:
    text = f"{action.verb}: {len(result.done)} {action.done}"
    if len(result.done) == 1:
        text += f" ({next(iter(result.messages.values()))})"
    if result.skipped:
        reasons = sorted({reason for _, reason in result.skipped})
        text += f"; {len(result.skipped)} skipped: {'; '.join(reasons)[:120]}"
    return text


class FailuresScreen(BulkTableScreen[list[dict[str, Any]]]):
    WHERE = "Failures"
    NAME = "failures"
    COLUMNS = COLUMNS
    EMPTY = "no open failures left in this group"
    MARKABLE = True
    WRITES = frozenset({"act"})
    NEEDS = {"act": "triage"}  # and act('replay'): "replay" (see needs)
    HELP = """The open failures of one group. Space marks a failure, * marks all (or none); actions
apply to the marked failures, or to the one under the cursor:

  r  retry    re-run its event through ingest (a command: back to the outbox)
  p  replay   replay the record's stored events through the current mapping
  d  resolve  close it, with a note saying why
  i  ignore   close it as not needing action, with a note
  a  assign   give it to someone

Every action is written to the audit trail and shows in the record's timeline at once.
Enter opens the record's timeline; o shows the failure with its policy and notes."""

    BINDINGS = [
        Binding("enter", "open", "Open"),
        Binding("space", "mark", "Mark"),
        Binding("asterisk", "mark_all", "All", show=False),
        Binding("r", "act('retry')", "Retry"),
        Binding("p", "act('replay')", "Replay"),
        Binding("d", "act('resolve')", "Resolve"),
        Binding("i", "act('ignore')", "Ignore"),
        Binding("a", "act('assign')", "Assign"),
        Binding("o", "detail", "Detail", show=False),
    ]

    def __init__(self, group: FailureGroup, record_id: str | None = None) -> None:
        super().__init__()
        self.group = group
        self.record_id = record_id  # opened from a record's timeline: only that record's failures

    def compose_above(self) -> ComposeResult:
        g = self.group
        scope = f" · record {escape(self.record_id)}" if self.record_id else ""
        yield Static(f"[b]{escape(g.category)}[/b] · {escape(g.connection or '-')} · "
                     f"fingerprint {escape(g.fingerprint)}{scope}", classes="group-summary")

    def compose_below(self) -> ComposeResult:
        yield Static("", id="failure-detail", classes="detail-panel")
        yield from self.compose_progress()

    # ----------------------------------------------------------------- loading

    def fetch(self, request: object) -> list[dict[str, Any]]:
        g = self.group
        items = queries.iter_failures(self.ctx, category=g.category, connection=g.connection,
                                      fingerprint=g.fingerprint, open_only=True, chunk=LIMIT)
        if g.connection is None:  # the group of failures tied to no connection
            items = (item for item in items if item["connection"] is None)
        if self.record_id:
            items = (item for item in items if item["record_id"] == self.record_id)
        return list(islice(items, LIMIT))

    def show(self, data: list[dict[str, Any]]) -> None:
        rows = [Row(f["id"], ((f["state"], STATE_TONES.get(f["state"], "")), f["record_id"] or "-",
                              f["assignee"] or "-", (f["created_at"] or "")[:19].replace("T", " "), f["message"]),
                    data=f) for f in data]
        table = self.table
        table.set_rows(rows)
        self._update_info()
        self._show_detail(table.current_row)

    def _update_info(self) -> None:
        table = self.table
        marked = len(table.marked)
        shown = (f"first {count(len(table.rows))} of {count(self.group.count)}" if len(table.rows) >= LIMIT
                 else count(len(table.rows)))
        self.status.set_info(f"{shown} open" + (f" · {marked} marked" if marked else ""))

    detail_panel_id = "failure-detail"
    no_record_message = "This failure names no record"

    def detail_text(self, data: dict[str, Any]) -> str:
        return (f"{data['id']} · record {data['record_id'] or '-'} · assignee {data['assignee'] or '-'}\n"
                f"{data['message']}")

    def action_detail(self) -> None:
        failure = self.current(dict)
        if failure is not None:
            failure_id = failure["id"]
            self.wb.open_detail_loader(f"failure {failure_id}",
                                       lambda ctx: triage.failure_detail(ctx, failure_id))

    # ----------------------------------------------------------------- actions

    def needs(self, action: str, parameters: tuple[object, ...]) -> str | None:
        if action == "act" and parameters == ("replay",):
            return "replay"
        return super().needs(action, parameters)

    def action_act(self, name: str) -> None:
        action = ACTIONS[name]
        if self.refused(action.verb) or self.denied(self.needs("act", (name,))):
            return
        if self.busy():
            return
        ids = self.targets()
        if not ids:
            self.app.bell()
            return
        what = f"{len(ids)} failures" if len(ids) > 1 else f"failure {ids[0]}"
        if action.prompt is None:
            self._confirm(action, ids, "")
            return

        def prompted(text: str | None) -> None:
            if text is not None:
                self._confirm(action, ids, text)

        self.app.push_screen(PromptScreen(f"{action.verb} {what}", action.prompt, required=action.required),
                             prompted)

    def _confirm(self, action: TriageAction, ids: list[str], text: str) -> None:
        def start() -> None:
            vaults = unlocked_vaults(self.app)  # read here, on the UI thread
            self.run_bulk(action.verb, len(ids), lambda progress: action.run(self.ctx, ids, text, progress, vaults),
                          lambda result: (summarise(action, result), bool(result.skipped)))

        detail = f" with: {text}" if text else ""
        self.confirm_many(ids, f"{action.verb} {len(ids)} failures?",
                          f"This will {action.name} {len(ids)} failures{detail}.\n"
                          "Each one is written to the audit trail.", action.verb, start)

