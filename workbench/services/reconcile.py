"""Reconciliation: compare each record's belief with the provider's current view, field by
field, and keep what differs as drift findings.

A run streams: the provider's objects a page at a time (its list endpoint, or a lookup per
record where it has none), our records for that page in one query, the page's findings in one
transaction. What it keeps between pages is the set of record IDs it has matched (to find,
afterwards, the records the provider did not list) and the connection's open findings (to
keep a finding that is still true instead of writing it again): memory grows with the
records' IDs only, not with their contents.

A finding that a later full run no longer sees (the two sides agree again) is resolved
"cleared". A dry run writes its run row (dry_run true) and counts, but no finding.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, func, select, update

from adapters.protocol import CallResult, CurrentObject, ProviderClient, Reconciling
from store.bulk import codec, in_lookup
from store.database import reading, writing
from store.models import Connection as ConnectionRow, DriftFinding, ProviderRef, ReconcileRun, Record
from workbench.domain.drift import EXISTS, differences
from workbench.domain.taxonomy import Category

from . import access, audit, sync_state
from .connections import ConnectionInfo, _get as get_connection_in, get_connection
from .context import ServiceContext
from .errors import NotFound, ServiceError
from .payload_crypto import NO_VAULTS, Vaults
from .provider_calls import open_client

runs = ReconcileRun.__table__
findings = DriftFinding.__table__
records = Record.__table__
refs = ProviderRef.__table__
ConnectionTable = ConnectionRow.__table__

PAGE = 100  # objects asked for per list call (Stripe's own maximum)
RECORD_PAGE = 1000  # records read per query when looking for those the provider did not list
CHUNK = 500
UNREADABLE_KEPT = 100
Progress = Callable[[int, int], None]  # (records checked, records the connection has)


class ReconcileFailed(ServiceError):
    """The provider could not be read (the run is kept, failed, with this message)."""


@dataclass
class ReconcileReport:
    run_id: str
    connection: str
    dry_run: bool
    record: str | None = None
    status: str = "running"
    records_checked: int = 0
    provider_objects: int = 0
    findings: int = 0  # open after the run (new and still true); a dry run: what it would open
    new_findings: int = 0
    cleared: int = 0
    unreadable: list[str] = field(default_factory=list)  # the first UNREADABLE_KEPT, each in one line
    unreadable_total: int = 0
    error: str | None = None

    def note_unreadable(self, line: str) -> None:
        self.unreadable_total += 1
        if len(self.unreadable) < UNREADABLE_KEPT:  # a provider whose whole schema drifted: bounded
            self.unreadable.append(line)

    def as_dict(self) -> dict[str, Any]:
        return {"run": self.run_id, "connection": self.connection, "record": self.record, "dry_run": self.dry_run,
                "status": self.status, "records_checked": self.records_checked,
                "provider_objects": self.provider_objects, "findings": self.findings,
                "new_findings": self.new_findings, "cleared": self.cleared, "unreadable": self.unreadable,
                "unreadable_total": self.unreadable_total, "error": self.error}


# -- asking for a run -------------------------------------------------------------------------


def request_run(ctx: ServiceContext, connection_name: str, *, record_id: str | None = None,
                dry_run: bool = False) -> str:
    """Record a request (a run with status "requested") for a running engine to carry out
    (`run_requested`); audited. Returns the run's ID."""
    access.require(ctx, "reconcile")
    info = get_connection(ctx, connection_name)
    with writing(ctx.engine) as conn:
        if record_id is not None:
            _record_of(conn, info, record_id)
        run_id = _new_run(conn, ctx, info, record_id, dry_run, "requested")
        audit.append(conn, ctx, "reconcile.request", "connection", info.id,
                     after={"run": run_id, "record": record_id, "dry_run": dry_run})
    return run_id


def request_now(ctx: ServiceContext, connection_name: str, *, record_id: str | None = None,
                dry_run: bool = False, reason: str | None = None) -> str:
    """`reconcile --now` (and the Providers screen's `r`): record the run (`request_run`) and
    mark the connection for the running engines, which carry it out within a second or two.
    Returns the run's ID."""
    run_id = request_run(ctx, connection_name, record_id=record_id, dry_run=dry_run)
    why = f"{reason.strip()} (run {run_id})" if reason and reason.strip() else f"workbench reconcile --now (run {run_id})"
    sync_state.request_reconcile(ctx, connection_name, why)
    return run_id


def run_requested(ctx: ServiceContext, connection_id: str, *, vaults: Vaults = NO_VAULTS,
                  client: ProviderClient | None = None) -> list[ReconcileReport]:
    """Carry out the connection's requested runs, oldest first (for the engine). A run is
    claimed by moving it from requested to running, so two engines never run the same one."""
    access.require(ctx, "reconcile")
    with reading(ctx.engine) as conn:
        name = conn.execute(select(ConnectionTable.c.name).where(ConnectionTable.c.id == connection_id)).scalar()
        if name is None:
            raise NotFound(f"no connection with ID {connection_id!r}")
        waiting = list(conn.execute(select(runs.c.id).where(runs.c.connection_id == connection_id,
                                                           runs.c.status == "requested")
                                    .order_by(runs.c.requested_at, runs.c.id)).scalars())
    reports = []
    for run_id in waiting:
        with writing(ctx.engine) as conn:
            claimed = conn.execute(update(runs).where(runs.c.id == run_id, runs.c.status == "requested")
                                   .values(status="running", started_at=ctx.clock())).rowcount
        if claimed == 1:
            reports.append(_carry_out(ctx, get_connection(ctx, name), run_id, vaults=vaults, client=client))
    return reports


# -- running one ------------------------------------------------------------------------------


def run_for_engine(ctx: ServiceContext, connection: ConnectionInfo, client: ProviderClient) -> list[ReconcileReport]:
    """What the engine does when asked to reconcile `connection` (sync_state.request_reconcile):
    the runs recorded as requested, or one full run when the request came without one."""
    reports = run_requested(ctx, connection.id, client=client)
    return reports or [reconcile(ctx, connection.name, client=client)]


def reconcile(ctx: ServiceContext, connection_name: str, *, record_id: str | None = None, dry_run: bool = False,
              vaults: Vaults = NO_VAULTS, client: ProviderClient | None = None,
              progress: Progress | None = None, page_size: int = PAGE) -> ReconcileReport:
    """Compare connection `connection_name`'s records (or the one record `record_id`) with the
    provider now. `client`: one to use instead of opening the connection's (the caller closes
    it). Raises ReconcileFailed, after recording the run as failed, when the provider cannot
    be read."""
    access.require(ctx, "reconcile")
    info = get_connection(ctx, connection_name)
    with writing(ctx.engine) as conn:
        if record_id is not None:
            _record_of(conn, info, record_id)
        run_id = _new_run(conn, ctx, info, record_id, dry_run, "running")
    report = _carry_out(ctx, info, run_id, vaults=vaults, client=client, progress=progress, page_size=page_size)
    if report.status == "failed":
        raise ReconcileFailed(f"reconciliation of {info.name} failed: {report.error}")
    return report


def _new_run(conn: Connection, ctx: ServiceContext, info: ConnectionInfo, record_id: str | None, dry_run: bool,
             status: str) -> str:
    run_id = ctx.ids.new("rcn")
    now = ctx.clock()
    conn.execute(runs.insert().values(
        id=run_id, connection_id=info.id, record_id=record_id, dry_run=dry_run, status=status,
        requested_by=ctx.actor, requested_at=now, started_at=now if status == "running" else None,
        records_checked=0, provider_objects=0, findings=0))
    return run_id


def _record_of(conn: Connection, info: ConnectionInfo, record_id: str) -> Any:
    row = conn.execute(select(records.c.id, records.c.kind, records.c.status, records.c.fields, refs.c.external_id)
                       .join(refs, refs.c.record_id == records.c.id)
                       .where(records.c.id == record_id, records.c.connection_id == info.id)).first()
    if row is None:
        raise NotFound(f"{info.name} has no record {record_id!r}")
    return row


def _carry_out(ctx: ServiceContext, info: ConnectionInfo, run_id: str, *, vaults: Vaults,
               client: ProviderClient | None, progress: Progress | None = None, page_size: int = PAGE) -> ReconcileReport:
    with reading(ctx.engine) as conn:
        run = conn.execute(select(runs).where(runs.c.id == run_id)).one()
    report = ReconcileReport(run_id, info.name, bool(run.dry_run), run.record_id)
    adapter = ctx.adapters.get(info.provider)
    own_client = client is None
    try:
        if adapter.capabilities.reconcile_by is None:
            raise ReconcileFailed(f"the {info.provider} adapter cannot read its provider's current objects")
        if client is None:
            client = open_client(ctx, info.name, vaults)
        if not isinstance(client, Reconciling):
            raise ReconcileFailed(f"the {info.provider} client cannot read its provider's current objects")
        _Comparison(ctx, info, report, client, progress, page_size,
                    by_list=adapter.capabilities.reconcile_by == "list").run()
        report.status = "finished"
    except ServiceError as exc:
        report.status, report.error = "failed", str(exc)
    except BaseException as exc:  # a bug, ctrl+c, the store gone: the run must not stay "running"
        report.status, report.error = "failed", f"stopped by {type(exc).__name__}"
        try:
            _finish(ctx, info, report)
        except Exception:  # the store itself failing: the original error is the one to see
            pass
        raise
    finally:
        if own_client and client is not None:
            client.close()
    _finish(ctx, info, report)
    return report


def _finish(ctx: ServiceContext, info: ConnectionInfo, report: ReconcileReport) -> None:
    with writing(ctx.engine) as conn:
        conn.execute(update(runs).where(runs.c.id == report.run_id).values(
            status=report.status, finished_at=ctx.clock(), records_checked=report.records_checked,
            provider_objects=report.provider_objects, findings=report.findings, error=report.error))
        summary = report.as_dict()
        del summary["unreadable"]  # the total stays; the lines are the run's output, not the trail's
        audit.append(conn, ctx, "reconcile.run", "connection", info.id, after=summary)


def _failed_call(call: CallResult) -> ReconcileFailed:
    outcome = call.outcome
    return ReconcileFailed(f"{call.method} {call.path}: {outcome.category} ({outcome.message})")


def _load_statement(in_params: list[Any]) -> Any:
    return (select(refs.c.external_id, records.c.id, records.c.status, records.c.fields)
            .join(records, records.c.id == refs.c.record_id)
            .where(refs.c.connection_id == bindparam("connection_id"), refs.c.kind == bindparam("kind"),
                   refs.c.external_id.in_(in_params)))


Key = tuple[str, str]  # (record ID, or "provider:<ID>" for an object we have no record of; field)


class _Comparison:
    """One run's state between pages."""

    def __init__(self, ctx: ServiceContext, info: ConnectionInfo, report: ReconcileReport, client: Reconciling,
                 progress: Progress | None, page_size: int, *, by_list: bool) -> None:
        self.ctx, self.info, self.report, self.client = ctx, info, report, client
        self.progress, self.page_size, self.by_list = progress, page_size, by_list
        self.matched: set[str] = set()
        self.unreadable_ids: set[str] = set()
        self.listing_began = ctx.clock()
        self.open: dict[Key, tuple[str, Any, Any]] = {}  # open finding: (ID, ours, theirs)
        self.still: set[Key] = set()  # open findings this run saw again
        self.total = 0

    def run(self) -> None:
        report = self.report
        with reading(self.ctx.engine) as conn:
            self._load_open(conn)
            if report.record is None:
                self.total = conn.execute(select(func.count()).select_from(records)
                                          .where(records.c.connection_id == self.info.id)).scalar_one()
            else:
                self.total = 1
        if report.record is not None:
            with reading(self.ctx.engine) as conn:
                row = _record_of(conn, self.info, report.record)
            self._lookup_page([row])
        elif self.by_list:
            self._list_all()
            self._unlisted()
        else:
            self._lookup_all()
        self._clear_gone()

    # -- reading both sides ----------------------------------------------------------------

    def _list_all(self) -> None:
        self.listing_began = self.ctx.clock()
        cursor: str | None = None
        while True:
            page = self.client.list_current(cursor, self.page_size)
            if page.call.outcome.category is not None:
                raise _failed_call(page.call)
            self.report.provider_objects += len(page.objects) + len(page.unreadable)
            for problem in page.unreadable:
                self.report.note_unreadable(f"{problem.provider_id or '?'}: {problem.reason}")
                if problem.provider_id is not None:  # listed, though unreadable: not "unknown to them"
                    self.unreadable_ids.add(problem.provider_id)
            self._compare_objects(page.objects)
            cursor = page.next_cursor
            if cursor is None:
                return

    def _compare_objects(self, objects: list[CurrentObject]) -> None:
        by_kind: dict[str, list[str]] = {}
        for obj in objects:
            by_kind.setdefault(obj.kind, []).append(obj.provider_id)
        ours: dict[tuple[str, str], tuple[str, str, Any]] = {}
        with reading(self.ctx.engine) as conn:
            lookup = in_lookup(conn, "reconcile.records", _load_statement, CHUNK)
            read_json = codec(conn.dialect).read_json
            for kind, ids in by_kind.items():
                for external_id, record_id, status, fields in lookup.rows(conn, sorted(set(ids)),
                                                                          connection_id=self.info.id, kind=kind):
                    ours[(kind, external_id)] = (record_id, status, read_json(fields))
        rows: list[dict[str, Any]] = []
        for obj in objects:
            mine = ours.get((obj.kind, obj.provider_id))
            if mine is None:
                rows.extend(self._found(None, obj.kind, obj.provider_id, [(EXISTS, False, _snapshot(obj))]))
                continue
            record_id, status, fields = mine
            if record_id in self.matched:  # listed twice (a page boundary moved): once is enough
                continue
            self.matched.add(record_id)
            self.report.records_checked += 1
            rows.extend(self._found(record_id, obj.kind, obj.provider_id,
                                    differences(status, fields, obj.status, obj.provider_status, obj.fields)))
        self._write(rows)

    def _unlisted(self) -> None:
        """Records of the connection the provider's list did not show, in keyset pages. Only
        those made before the listing began: one made since may be newer than the page that
        would have shown it."""
        after = ""
        while True:
            with reading(self.ctx.engine) as conn:
                page = conn.execute(
                    select(records.c.id, records.c.kind, records.c.status, refs.c.external_id)
                    .join(refs, refs.c.record_id == records.c.id)
                    .where(records.c.connection_id == self.info.id, records.c.id > after,
                           records.c.created_at < self.listing_began)
                    .order_by(records.c.id).limit(RECORD_PAGE)).all()
            if not page:
                return
            rows: list[dict[str, Any]] = []
            for row in page:
                if row.id not in self.matched and row.external_id not in self.unreadable_ids:
                    self.report.records_checked += 1
                    rows.extend(self._found(row.id, row.kind, row.external_id, [(EXISTS, True, False)]))
            self._write(rows)
            after = page[-1].id

    def _lookup_all(self) -> None:
        after = ""
        while True:
            with reading(self.ctx.engine) as conn:
                page = conn.execute(
                    select(records.c.id, records.c.kind, records.c.status, records.c.fields, refs.c.external_id)
                    .join(refs, refs.c.record_id == records.c.id)
                    .where(records.c.connection_id == self.info.id, records.c.id > after)
                    .order_by(records.c.id).limit(self.page_size)).all()
            if not page:
                return
            self._lookup_page(list(page))
            after = page[-1].id

    def _lookup_page(self, page: list[Any]) -> None:
        rows: list[dict[str, Any]] = []
        for row in page:
            try:
                looked = self.client.fetch_current(row.external_id)
            except ValueError as exc:  # an ID the client refuses to put in a URL
                self.report.note_unreadable(f"{row.external_id[:40]}: {exc}")
                continue
            self.report.records_checked += 1
            if looked.found is None:
                if looked.call.outcome.category is not Category.MISSING_DEPENDENCY:
                    raise _failed_call(looked.call)
                rows.extend(self._found(row.id, row.kind, row.external_id, [(EXISTS, True, False)]))
                continue
            self.report.provider_objects += 1
            obj = looked.found
            fields = row.fields if isinstance(row.fields, dict) else {}
            rows.extend(self._found(row.id, row.kind, row.external_id,
                                    differences(row.status, fields, obj.status, obj.provider_status, obj.fields)))
        self._write(rows)

    # -- findings ---------------------------------------------------------------------------

    def _load_open(self, conn: Connection) -> None:
        query = select(findings.c.id, findings.c.record_id, findings.c.provider_id, findings.c.field,
                       findings.c.ours, findings.c.theirs).where(findings.c.connection_id == self.info.id,
                                                                 findings.c.state == "open")
        if self.report.record is not None:
            query = query.where(findings.c.record_id == self.report.record)
        for row in conn.execute(query):
            self.open[(row.record_id or f"provider:{row.provider_id}", row.field)] = (row.id, row.ours, row.theirs)

    def _found(self, record_id: str | None, kind: str, provider_id: str | None,
               diffs: list[tuple[str, Any, Any]]) -> Iterator[dict[str, Any]]:
        owner = record_id or f"provider:{provider_id}"
        for name, ours, theirs in diffs:
            key = (owner, name)
            self.report.findings += 1
            known = self.open.get(key)
            if known is not None and known[1] == ours and known[2] == theirs:
                self.still.add(key)  # the same drift as before: it stays open, since then
                continue
            self.report.new_findings += 1
            yield {"id": self.ctx.ids.new("drf"), "run_id": self.report.run_id, "connection_id": self.info.id,
                   "record_id": record_id, "kind": kind, "provider_id": provider_id, "field": name,
                   "ours": ours, "theirs": theirs, "since": self.ctx.clock(), "state": "open"}

    def _write(self, rows: list[dict[str, Any]]) -> None:
        if rows and not self.report.dry_run:
            with writing(self.ctx.engine) as conn:
                conn.execute(findings.insert(), rows)
        if self.progress is not None:
            self.progress(self.report.records_checked, max(self.total, self.report.records_checked))

    def _clear_gone(self) -> None:
        """Open findings this run did not see again: the sides agree now (or the value moved:
        the new difference is a new finding). Resolved "cleared", by the run."""
        gone = [found[0] for key, found in self.open.items() if key not in self.still]
        self.report.cleared = len(gone)
        if not gone or self.report.dry_run:
            return
        now = self.ctx.clock()
        with writing(self.ctx.engine) as conn:
            for start in range(0, len(gone), CHUNK):
                conn.execute(update(findings).where(findings.c.id.in_(gone[start:start + CHUNK]),
                                                    findings.c.state == "open")
                             .values(state="resolved", resolution="cleared", resolved_by=self.ctx.actor,
                                     resolved_at=now, note=f"no longer differs (run {self.report.run_id})"))


def _snapshot(obj: CurrentObject) -> dict[str, Any]:
    """What the provider holds for an object we have no record of: enough to make the record."""
    return {"status": str(obj.status) if obj.status is not None else None, "provider_status": obj.provider_status,
            "fields": obj.fields, "reference": obj.reference, "mapping_version": obj.mapping_version}


def latest_runs(ctx: ServiceContext, *, connection: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
    """The newest runs, newest first (for `workbench drift` and the Drift screen)."""
    access.require(ctx, "read")
    query = (select(runs, ConnectionTable.c.name).join(ConnectionTable, ConnectionTable.c.id == runs.c.connection_id)
             .order_by(runs.c.requested_at.desc(), runs.c.id.desc()).limit(limit))
    if connection is not None:
        query = query.where(ConnectionTable.c.name == connection)
    with reading(ctx.engine) as conn:
        if connection is not None:
            get_connection_in(conn, connection)  # an unknown name is a mistake, not "no runs"
        return [{"id": row.id, "connection": row.name, "record": row.record_id, "dry_run": bool(row.dry_run),
                 "status": row.status, "requested_by": row.requested_by, "requested_at": _iso(row.requested_at),
                 "started_at": _iso(row.started_at), "finished_at": _iso(row.finished_at),
                 "records_checked": row.records_checked, "provider_objects": row.provider_objects,
                 "findings": row.findings, "error": row.error}
                for row in conn.execute(query)]


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None
