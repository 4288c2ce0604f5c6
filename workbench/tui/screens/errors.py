"""Error queue: open failures grouped by category, connection and fingerprint, largest first.
Enter drills into a group; R recovers everything that matches the filter (a plan, then the
engine runs it), with running recoveries and their progress shown under the table."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rich.markup import escape
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import Static

from workbench.domain.failure_filter import BadFilter, FailureFilter, parse_failure_filter
from workbench.services import recovery, triage
from workbench.services.recovery import RecoveryInfo, RecoveryPlan
from workbench.services.triage import FailureGroup

from ..errors import describe_error
from ..formatting import count, short_time
from ..widgets import Column, Row, VirtualTable
from .base import FILTER_BINDING
from .dialogs import ConfirmScreen
from .table_screen import TableScreen

COLUMNS = [
    Column("Count", 7, align="right"),
    Column("Category", 18),
    Column("Connection", 14, drop_below=70),
    Column("Fingerprint", 11, cut="middle"),
    Column("Sample message", None, min_width=16),
    Column("Newest", 14, drop_below=120),
]


def group_key(group: FailureGroup) -> str:
    return f"{group.category}|{group.connection or ''}|{group.fingerprint}"


def group_matches(flt: FailureFilter, group: FailureGroup) -> bool:
    """The filter on a group: its terms as the store reads them; a time window keeps a group
    with any failure inside it (the plan counts exactly)."""
    if flt.since is not None and group.newest < flt.since:
        return False
    if flt.until is not None and group.oldest >= flt.until:
        return False
    return flt.matches(group.category, group.connection, group.fingerprint, group.sample_message)


def recovery_line(info: RecoveryInfo) -> str:
    asked = ", cancel asked" if info.cancel_requested_at else ""
    skipped = f", {info.skipped} skipped" if info.skipped else ""
    return (f"Recovery {info.id}: {info.done + info.skipped}/{info.total} retried{skipped}{asked} · "
            f"{info.description}")


@dataclass(frozen=True)
class ErrorsData:
    groups: list[FailureGroup]
    running: list[RecoveryInfo]


class ErrorsScreen(TableScreen[ErrorsData]):
    WHERE = "Error queue"
    NAME = "errors"
    CSS_PATH = Path(__file__).with_name("errors.tcss")
    COLUMNS = COLUMNS
    EMPTY = "the error queue is empty"
    FILTER = "/ filter: words, or category= connection= fingerprint= since= until="
    HELP = """Failures not yet resolved or ignored, grouped by category, connection and fingerprint
(failures with the same cause share a fingerprint), largest group first.
Type after / to narrow the groups: free words match the category, connection, fingerprint or
message; key=value terms (category=timeout connection=acme since=2h until=2026-11-29T10:00)
match exactly, the same filter language as `workbench failures retry --filter`.
Enter lists the failures of a group, where you retry, replay, resolve, ignore or assign them.
R recovers every open failure in the store that matches the filter (not only the groups shown):
it shows the plan (how many failures, commands and deliveries, which connections, how long at
their pace) and, once confirmed, a running engine retries them in the background. Running
recoveries and their progress show under the table; C cancels the first one (what it has not
retried yet stays as it is)."""

    WRITES = frozenset({"recover_matching", "cancel_recovery"})
    NEEDS = {"recover_matching": "recover", "cancel_recovery": "recover"}

    BINDINGS = [
        Binding("enter", "open", "Failures"),
        Binding("R", "recover_matching", "Recover all matching"),
        Binding("C", "cancel_recovery", "Cancel recovery", show=False),
        FILTER_BINDING,
    ]

    def __init__(self, text: str = "") -> None:
        super().__init__(text)
        self._data = ErrorsData([], [])

    def compose_below(self) -> ComposeResult:
        panel = Static("", id="errors-recoveries", classes="errors-recoveries")
        panel.display = False  # until a recovery runs
        yield panel

    def fetch(self, request: object) -> ErrorsData:
        running = [info for info in recovery.status(self.ctx, limit=10) if info.state == recovery.RUNNING]
        return ErrorsData(triage.groups(self.ctx), running)

    def show(self, data: ErrorsData) -> None:
        self._data = data
        panel = self.query_one("#errors-recoveries", Static)
        panel.update("\n".join(escape(recovery_line(info)) for info in data.running))
        panel.display = bool(data.running)
        self._render_rows()

    def _filter(self) -> FailureFilter | str:
        """The filter typed, or why it cannot be read."""
        try:
            return parse_failure_filter(self.filter_text, self.ctx.clock())
        except BadFilter as exc:
            return str(exc)

    def _render_rows(self) -> None:
        flt = self._filter()
        all_groups = self._data.groups
        groups = [g for g in all_groups if isinstance(flt, FailureFilter) and group_matches(flt, g)]
        rows = [Row(group_key(g), (count(g.count), (g.category, "error"), g.connection or "-", g.fingerprint,
                                   g.sample_message, short_time(g.newest)), data=g) for g in groups]
        self.table.set_rows(rows)
        if isinstance(flt, str):
            self.status.set_info(f"filter: {flt}")
            return
        total = sum(g.count for g in all_groups)
        shown = f"{len(groups)} of {len(all_groups)}" if self.filter_text.strip() else f"{len(all_groups)}"
        self.status.set_info(f"{count(total)} open failure(s) in {shown} group(s)")

    def filter_changed(self) -> None:
        self._render_rows()  # the groups are all here: no need to ask the store again

    def on_virtual_table_selected(self, event: VirtualTable.Selected) -> None:
        if isinstance(event.row.data, FailureGroup):
            self.wb.open_group(event.row.data)

    # ----------------------------------------------------------------- recovery by filter

    def action_recover_matching(self) -> None:
        if self.refused("Recover") or self.denied("recover"):
            return
        flt = self._filter()
        if isinstance(flt, str):
            self.notify(f"filter: {flt}", severity="warning", markup=False)
            return
        self.run_worker(lambda: self._plan(flt), thread=True, group="action", exit_on_error=False)

    def _plan(self, flt: FailureFilter) -> None:
        try:
            plan = recovery.plan(self.ctx, flt)
        except Exception as exc:
            self._post(self.notify, describe_error(exc), severity="warning", markup=False)
            return
        self._post(self._ask, plan)

    def _ask(self, plan: RecoveryPlan) -> None:
        if plan.failures == 0:
            self.notify(f"nothing to recover: no open failure matches {plan.filter.describe()}", markup=False)
            return
        lines = [f"{plan.failures} open failure(s) matching {plan.filter.describe()}:"]
        for part in plan.connections:
            pace = f"{part.rate_per_s:g}/s, ~{part.expected_s or 0:.0f}s" if part.rate_per_s else "no pace set"
            lines.append(f"  {part.name or '(no connection)'}: {part.commands} command(s) back to the outbox, "
                         f"{part.deliveries} delivery(ies) re-run ({pace})")
        lines.append(f"Expected: ~{plan.expected_s:.0f}s; a running engine carries it out.")

        def confirmed(ok: bool | None) -> None:
            if ok:
                self.run_worker(lambda: self._submit(plan), thread=True, group="action", exit_on_error=False)

        self.app.push_screen(ConfirmScreen("Recover all matching", "\n".join(lines), "Recover"), confirmed)

    def _submit(self, plan: RecoveryPlan) -> None:
        try:
            started = recovery.submit(self.ctx, plan)
        except Exception as exc:
            self._post(self.notify, describe_error(exc), severity="warning", markup=False)
            return
        self._post(self.notify, f"recovery {started.id} started: {started.total} failure(s)", markup=False)
        self._post(self.reload)

    def action_cancel_recovery(self) -> None:
        if self.refused("Cancel recovery") or self.denied("recover"):
            return
        if not self._data.running:
            self.notify("no recovery is running", markup=False)
            return
        info = self._data.running[0]

        def confirmed(ok: bool | None) -> None:
            if ok:
                self.run_worker(lambda: self._cancel(info.id), thread=True, group="action", exit_on_error=False)

        self.app.push_screen(ConfirmScreen("Cancel recovery", recovery_line(info) +
                                           "\nWhat it has not retried yet stays as it is.", "Cancel it"), confirmed)

    def _cancel(self, recovery_id: str) -> None:
        try:
            info = recovery.cancel(self.ctx, recovery_id)
        except Exception as exc:
            self._post(self.notify, describe_error(exc), severity="warning", markup=False)
            return
        self._post(self.notify, f"recovery {info.id}: cancel asked after {info.done + info.skipped} of {info.total}",
                   markup=False)
        self._post(self.reload)
