"""Audit: the trail, newest first, searchable, with the chain's verification status."""

from __future__ import annotations

from typing import Any

from rich.markup import escape
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import Static

from workbench.services import audit
from workbench.services.audit import VerifyResult

from ..errors import describe_error
from ..formatting import clock_time, count
from ..widgets import Column, Row, VirtualTable
from .document import json_document
from .table_screen import TableScreen

SEARCH_LIMIT = 500

COLUMNS = [
    Column("Seq", 6, align="right"),
    Column("At", 14),
    Column("Actor", 14, drop_below=70),
    Column("Action", 18),
    Column("Target", None, min_width=12, cut="middle"),
    Column("Reason", None, min_width=16, drop_below=100),
]


class AuditScreen(TableScreen[list[dict[str, Any]]]):
    WHERE = "Audit"
    NAME = "audit"
    COLUMNS = COLUMNS
    EMPTY = "no audit entries match"
    FILTER = "/ search: actor, action, target, reason"
    HELP = f"""The audit trail: who did what to which target, when and why, newest first (the
newest {SEARCH_LIMIT} matches). Type after / to search actor, action, target or reason.

The trail is hash-chained: each entry's hash covers the one before, so an altered, deleted
or reordered entry breaks the chain there. The line above the table shows the last
verification; v verifies again. Enter shows an entry with its before and after."""

    BINDINGS = [
        Binding("enter", "open", "Entry"),
        Binding("slash", "focus_filter", "Search", priority=True),
        Binding("v", "verify", "Verify"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self._verifying = False

    def compose_above(self) -> ComposeResult:
        yield Static("audit verify: not run yet", id="audit-verify", classes="verify-line")

    def on_mount(self) -> None:
        super().on_mount()
        self.action_verify()

    def request(self) -> str:
        return self.filter_text.strip()

    def fetch(self, request: str) -> list[dict[str, Any]]:
        return audit.search(self.ctx, request or None, limit=SEARCH_LIMIT)

    def show(self, data: list[dict[str, Any]]) -> None:
        rows = [Row(str(e["seq"]), (str(e["seq"]), e["at"][5:19].replace("T", " "), e["actor"], e["action"],
                                    f"{e['target_type']} {e['target_id'] or ''}".strip(), e["reason"] or ""),
                    data=e) for e in data]
        self.table.set_rows(rows)
        search = self.filter_text.strip()
        limit = f" (newest {SEARCH_LIMIT})" if len(rows) >= SEARCH_LIMIT else ""
        self.status.set_info(f"{count(len(rows))} entr{'y' if len(rows) == 1 else 'ies'}{limit}"
                             + (f" matching {search!r}" if search else ""))

    def on_virtual_table_selected(self, event: VirtualTable.Selected) -> None:
        entry = event.row.data
        if isinstance(entry, dict):
            self.wb.open_document(f"audit entry {entry['seq']}",
                                  json_document(f"[b]#{entry['seq']}[/b] " + escape(
                                      f"{entry['actor']} {entry['action']} {entry['target_type']} "
                                      f"{entry['target_id'] or ''}"), entry))

    # ----------------------------------------------------------------- verification

    def action_verify(self) -> None:
        if self._verifying:
            return
        self._verifying = True
        self.query_one("#audit-verify", Static).update("audit verify: checking the chain…")
        self.run_worker(self._verify, thread=True, group="verify", exit_on_error=False)

    def _verify(self) -> None:
        try:
            result: VerifyResult | str = audit.verify(self.ctx)
        except Exception as exc:
            result = describe_error(exc)
        self._post(self._verified, result)

    def _verified(self, result: VerifyResult | str) -> None:
        self._verifying = False
        if not self.is_attached:
            return
        line = self.query_one("#audit-verify", Static)
        at = clock_time(self.wb.now())
        if isinstance(result, str):
            line.update(escape(f"audit verify: could not run ({result})"))
            line.set_class(True, "-broken")
        elif result.ok:
            line.update(f"audit verify: OK · {count(result.checked)} entries chained · checked {at}")
            line.set_class(False, "-broken")
        else:
            where = f" at entry {result.broken_seq}" if result.broken_seq is not None else ""
            line.update(escape(f"audit verify: BROKEN{where}: {result.problem} · checked {at}"))
            line.set_class(True, "-broken")
