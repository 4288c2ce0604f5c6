"""The timeline of one record: every delivery, command, attempt, transition, failure, note and
audit entry in time order. Enter opens an entry; space marks deliveries; d diffs."""

from __future__ import annotations

from datetime import datetime

from rich.markup import escape
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import Static

from workbench.services import timeline, views
from workbench.services.timeline import Timeline, TimelineEntry

from ..formatting import short_time
from ..vaults import unlocked_vaults
from ..widgets import Column, Row, VirtualTable
from .base import FILTER_BINDING
from .table_screen import TableScreen

COLUMNS = [
    Column("At", 14),
    Column("Kind", 10),
    Column("Summary", None, min_width=20),
    Column("ID", 20, cut="middle", drop_below=120),
]

# The first load reads only this many of the newest entries, so a record with 10,000 paints at once.
FIRST_WINDOW = 300

KIND_TONES = {"transition": "accent", "failure": "error", "note": "dim", "audit": "dim", "command": "ok",
              "attempt": "ok"}


class TimelineScreen(TableScreen[tuple[bool, Timeline]]):
    WHERE = "Timeline"
    NAME = "timeline"
    COLUMNS = COLUMNS
    EMPTY = "no entries"
    MARKABLE = True
    FILTER = "/ filter entries: kind or text"
    HELP = """The story of one record, oldest first: deliveries (raw events as received), commands
and attempts, transitions (changes of belief, with their cause), failures and their notes, and
audit entries (what operators did). It follows the store: actions taken elsewhere appear here.

Enter opens an entry: a delivery shows its raw payload (redacted) and what the mapping made
of it; other entries show their details. Space marks deliveries; d diffs the two marked
deliveries, or the delivery under the cursor against the record's current state. t on a
failure opens it for triage: retry, replay, resolve or ignore with a note, assign."""

    NEEDS = {"triage": "triage"}  # the failures it opens are for acting on

    BINDINGS = [
        Binding("enter", "open", "Open"),
        Binding("space", "mark", "Mark"),
        Binding("d", "diff", "Diff"),
        Binding("s", "state", "State"),
        Binding("t", "triage", "Triage"),
        FILTER_BINDING,
    ]

    def __init__(self, record_ref: str) -> None:
        super().__init__()
        self.record_ref = record_ref
        self.record: dict[str, object] | None = None
        self._timeline: Timeline | None = None
        # The first load reads only the newest entries (a record may have 10,000), so the
        # screen paints at once; the whole timeline follows in a second load.
        self._whole = False
        self._partial = False

    def compose_above(self) -> ComposeResult:
        yield Static("", id="timeline-record", classes="record-summary")

    def request(self) -> bool:
        return self._whole

    def fetch(self, whole: bool) -> tuple[bool, Timeline]:
        return whole, timeline.load_timeline(self.ctx, self.record_ref, limit=None if whole else FIRST_WINDOW)

    def show(self, data: tuple[bool, Timeline]) -> None:
        whole, loaded = data
        first = self._timeline is None
        # A full window may not be everything: read the whole timeline next (and from then on).
        self._partial = not whole and len(loaded.entries) >= FIRST_WINDOW
        self._whole = True
        if self._partial:
            self.reload()
        self._timeline = loaded
        self.record = record = loaded.record
        refs = ", ".join(str(ref["external_id"]) for ref in record["provider_refs"]) or "-"
        updated = short_time(datetime.fromisoformat(str(record["updated_at"])))
        self.query_one("#timeline-record", Static).update(
            f"[b]{escape(str(record['id']))}[/b] · {escape(str(record['connection']))} · "
            f"{escape(str(record['kind']))} · [b]{escape(str(record['status']))}[/b] v{record['version']}\n"
            f"external {escape(refs)} · updated {updated}")
        self._render_rows(cursor_to_end=first)

    def _render_rows(self, cursor_to_end: bool = False) -> None:
        if self._timeline is None:
            return
        needle = self.filter_text.strip().lower()
        entries = self._timeline.entries
        rows = [Row(entry.id, (short_time(entry.at), entry.kind, entry.summary, entry.id),
                    tone=KIND_TONES.get(entry.kind), data=entry)
                for entry in entries
                if not needle or needle in entry.kind or needle in entry.summary.lower()]
        table = self.table
        # Newest at the bottom, and the first view starts there: what just happened.
        table.set_rows(rows, cursor=len(rows) - 1 if cursor_to_end else None)
        marked = len(table.marked)
        shown = f"{len(rows):,} of {len(entries):,}" if needle else f"{len(entries):,}"
        if self._partial:
            shown = f"newest {shown} (loading the rest…)"
        self.status.set_info(f"{shown} entries" + (f" · {marked} marked" if marked else ""))

    def filter_changed(self) -> None:
        self._render_rows()  # the whole timeline is here: no need to ask the store again

    def _entry(self) -> TimelineEntry | None:
        return self.current(TimelineEntry)

    def on_virtual_table_selected(self, event: VirtualTable.Selected) -> None:
        entry = event.row.data
        if not isinstance(entry, TimelineEntry):
            return
        if entry.kind == "delivery":
            self.wb.open_payload(entry.id, str(self.record["id"]) if self.record else None)
        else:
            self.wb.open_detail(f"{entry.kind} {entry.id}", entry.as_dict())

    def action_mark(self) -> None:
        table = self.table
        entry = self._entry()
        if entry is None:
            return
        if entry.kind != "delivery":
            self.notify("Only deliveries can be marked for a diff", severity="warning")
            return
        if entry.id not in table.marked and len(table.marked) >= 2:
            self.notify("Two deliveries are marked already; unmark one first", severity="warning")
            return
        table.toggle_mark()
        table.action_cursor(1)
        self._render_rows()

    def action_diff(self) -> None:
        # Marks are kept in table order (time order): the older delivery goes on the left.
        marked = [row.key for row in self.table.marked_rows]
        record_id = str(self.record["id"]) if self.record else self.record_ref
        if len(marked) == 2:
            left, right = marked
            self.wb.open_diff(lambda ctx: views.deliveries_pair(ctx, left, right, unlocked_vaults(self.app)))
            return
        entry = self._entry()
        delivery = marked[0] if marked else (entry.id if entry is not None and entry.kind == "delivery" else None)
        if delivery is None:
            self.notify("Mark two deliveries (space), or put the cursor on one to compare it with the "
                        "record's current state", severity="warning")
            return
        self.wb.open_state_diff(delivery, record_id)

    def action_triage(self) -> None:
        """Act on the failure under the cursor (resolve, ignore, retry, ...), without leaving
        the record's story for the error queue."""
        if self.denied("triage"):
            return
        entry = self._entry()
        if entry is None or entry.kind != "failure" or self.record is None:
            self.notify("Put the cursor on a failure to triage it", severity="warning")
            return
        from workbench.services.triage import FailureGroup  # triage's imports only when used

        detail = entry.detail
        group = FailureGroup(detail["category"], str(self.record["connection"]), detail["fingerprint"], 1,
                             entry.summary, entry.at, entry.at)
        self.wb.open_group(group, str(self.record["id"]))

    def action_state(self) -> None:
        record_id = str(self.record["id"]) if self.record else self.record_ref
        self.wb.open_detail_loader(f"record {record_id} now", lambda ctx: timeline.record_state(ctx, record_id))
