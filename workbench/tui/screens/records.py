"""Records: every record, a page at a time, filtered as you type.

Pages come from `views.records_page` (keyset pages, index-backed filters), so the screen costs
the same over a thousand records or a million. The page on screen is re-read in place on every
refresh; ] and [ (or moving past the last / first row) turn pages.
"""

from __future__ import annotations

from dataclasses import dataclass

from textual.binding import Binding

from workbench.services import views
from workbench.services.views import RecordPage, Vocabulary

from ..formatting import short_time
from ..widgets import Column, Row, VirtualTable
from .base import FILTER_BINDING
from .table_screen import TableScreen

COLUMNS = [
    Column("Record", None, min_width=14, cut="middle"),
    Column("External ID", None, min_width=12, cut="middle"),
    Column("Status", 12),
    Column("Connection", 14, drop_below=70),
    Column("Kind", 8, drop_below=100),
    Column("v", 3, align="right", drop_below=100),
    Column("Updated", 14, drop_below=110),
]

STATUS_TONES = {"needs_review": "warn", "failed": "error", "completed": "ok", "cancelled": "dim"}


@dataclass(frozen=True)
class RecordsRequest:
    text: str
    anchor: tuple[str, tuple[str, ...]] | None  # ("after" | "before" | "at", keyset position)
    vocabulary: Vocabulary | None
    generation: int  # bumped by every filter change: older answers are dropped


@dataclass(frozen=True)
class RecordsResult:
    request: RecordsRequest
    page: RecordPage
    vocabulary: Vocabulary


class RecordsScreen(TableScreen[RecordsResult]):
    WHERE = "Records"
    NAME = "records"
    COLUMNS = COLUMNS
    EMPTY = "no records match"
    FILTER = "/ filter: id, external id, status, kind, connection"
    HELP = """Every record, a page at a time. Type after / to filter; every term must match:

  rec_01a2…      internal ID prefix     pi_3Ab…    external ID prefix
  needs_review   a status (exact)       payment    a kind (exact)
  acme-stripe    a connection (exact)
  explicit:      status:failed  kind:payment  conn:acme-stripe
                 id:rec_01a2…  ext:pi_3Ab…

Filtering by external ID lists records in external ID order. ] and [ turn pages (so does
moving past the last or first row). Enter opens the record's timeline."""

    BINDINGS = [
        FILTER_BINDING,
        Binding("enter", "open", "Timeline"),
        Binding("right_square_bracket", "page(1)", "Next page"),
        Binding("left_square_bracket", "page(-1)", "Prev page"),
    ]

    page_size = views.PAGE_SIZE

    def __init__(self, text: str = "") -> None:
        super().__init__(text)
        self._anchor: tuple[str, tuple[str, ...]] | None = None
        self._vocabulary: Vocabulary | None = None
        self._page: RecordPage | None = None
        self._page_number = 1
        self._cursor_to: int | None = None
        self._generation = 0
        self._turning = False  # a page turn is loading: one at a time

    # ----------------------------------------------------------------- loading

    def request(self) -> RecordsRequest:
        return RecordsRequest(self.filter_text, self._anchor, self._vocabulary, self._generation)

    def fetch(self, request: RecordsRequest) -> RecordsResult:
        vocabulary = request.vocabulary or views.filter_vocabulary(self.ctx)
        flt = views.parse_record_filter(request.text, vocabulary)
        kind, position = request.anchor if request.anchor else ("first", None)
        page = views.records_page(self.ctx, flt, after=position if kind == "after" else None,
                                  before=position if kind == "before" else None,
                                  at=position if kind == "at" else None, limit=self.page_size)
        return RecordsResult(request, page, vocabulary)

    def show(self, data: RecordsResult) -> None:
        self._vocabulary = data.vocabulary
        if data.request.generation != self._generation:
            return  # the filter changed while this page loaded; the newer query is queued
        self._turning = False
        page = data.page
        self._page = page
        rows = [Row(r.id, (r.id, ", ".join(r.external_ids) or "-", (r.status, STATUS_TONES.get(r.status, "")),
                           r.connection, r.kind, str(r.version), short_time(r.updated_at)), data=r)
                for r in page.rows]
        table = self.table
        cursor, self._cursor_to = self._cursor_to, None
        table.set_rows(rows, cursor=cursor)
        # Later refreshes re-read this page in place (new records appear where they sort).
        self._anchor = ("at", page.rows[0].position) if page.rows else None
        first = (self._page_number - 1) * page.limit + 1
        span = f"rows {first:,}–{first + len(rows) - 1:,}" if rows else "no rows"
        more = " · more ]" if page.has_after else ""
        order = " · by external ID" if page.order in ("external_id", "connection") else ""
        self.status.set_info(f"{page.filter.describe()} · p{self._page_number} {span}{order}{more}")

    def load_failed(self, exc: Exception) -> None:
        self._turning = False

    def filter_changed(self) -> None:
        self._generation += 1
        self._anchor = None
        self._page_number = 1
        self._cursor_to = 0
        self.reload()

    # ----------------------------------------------------------------- paging

    def action_page(self, direction: int) -> None:
        page = self._page
        if page is None or not page.rows or self._turning:
            return
        if direction > 0 and page.has_after:
            self._anchor = ("after", page.rows[-1].position)
            self._page_number += 1
            self._cursor_to = 0
        elif direction < 0 and page.has_before:
            self._anchor = ("before", page.rows[0].position)
            self._page_number = max(1, self._page_number - 1)
            self._cursor_to = page.limit - 1
        else:
            self.app.bell()
            return
        # A refresh of the old page may be in flight: its answer is dropped.
        self._generation += 1
        self._turning = True
        self.reload()

    def on_virtual_table_edge(self, event: VirtualTable.Edge) -> None:
        self.action_page(event.direction)

    def on_virtual_table_selected(self, event: VirtualTable.Selected) -> None:
        self.wb.open_timeline(event.row.key)
