"""What went wrong with the store, in one line an operator can act on.

Driver and SQLAlchemy messages carry the failing statement and, unless hidden, its parameters
(raw headers and bodies): they are never shown. The error is classified by its code (SQLite
result code, PostgreSQL SQLSTATE) and described in our own words instead.
"""

from __future__ import annotations

import errno
import re
import sqlite3
from collections.abc import Iterator

from sqlalchemy import exc as sa_exc

from store.database import StoreError, StoreReadOnly, busy_timeout_ms

from .errors import ReadOnlyStore, StoreUnavailable

_NO_SUCH_TABLE = re.compile(r"no such table: (\w+)")
_PG_UNDEFINED_TABLE = re.compile(r'relation "(\w+)" does not exist')

# SQLite primary result codes (https://sqlite.org/rescode.html)
SQLITE_BUSY, SQLITE_LOCKED, SQLITE_READONLY, SQLITE_IOERR = 5, 6, 8, 10
SQLITE_CORRUPT, SQLITE_FULL, SQLITE_CANTOPEN, SQLITE_CONSTRAINT, SQLITE_NOTADB = 11, 13, 14, 19, 26


def _at(where: str) -> str:
    # The CLI names the store it used; the TUI, which shows its store in the title, does not.
    return f" at {where}" if where else ""


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _waited() -> str:
    try:
        seconds = busy_timeout_ms() / 1000
    except StoreError:
        return "its lock"
    return f"{seconds:g} s for its lock"


def _sqlite(error: sqlite3.Error, where: str) -> StoreUnavailable:
    code = getattr(error, "sqlite_errorcode", 0) & 0xFF
    name = getattr(error, "sqlite_errorname", "SQLITE_ERROR")
    if code == SQLITE_READONLY:
        return ReadOnlyStore(f"the store{_at(where)} is read-only: this command writes to it; run it with write "
                             "access to the file and its directory")
    if code in (SQLITE_FULL, SQLITE_IOERR):
        return StoreUnavailable(f"could not write to the store{_at(where)}: the disk is full, the file reached "
                                f"its size limit or the disk failed ({name}); free some space and run the "
                                "command again (nothing was written)")
    if code in (SQLITE_BUSY, SQLITE_LOCKED):
        return StoreUnavailable(f"the store{_at(where)} is locked by another process (waited {_waited()}); try "
                                "again when it has finished")
    if code in (SQLITE_CORRUPT, SQLITE_NOTADB):
        return StoreUnavailable(f"the store file{_at(where)} is damaged ({name}); restore it from a backup "
                                "(nothing was written)")
    if code == SQLITE_CONSTRAINT:
        return _conflict(where)
    if code == SQLITE_CANTOPEN:
        return StoreUnavailable(f"cannot open the store file{_at(where)}; check the path and its permissions")
    table = _NO_SUCH_TABLE.search(str(error))
    if table:
        return _missing_table(table.group(1), where)
    return StoreUnavailable(f"the store{_at(where)} failed ({name}); run with --verbose for details")


def _missing_table(table: str, where: str) -> StoreUnavailable:
    return StoreUnavailable(f"the store{_at(where)} has no table {table!r}: it is incomplete or not a workbench "
                            "store; restore it from a backup or point --db at the right store")


def _conflict(where: str) -> StoreUnavailable:
    return StoreUnavailable(f"the store{_at(where)} refused a conflicting change (another process changed the same "
                            "rows first); refresh and try again (nothing was written)")


def _postgres(error: BaseException, where: str, opening: bool) -> StoreUnavailable:
    state = getattr(error, "sqlstate", None) or ""
    text = str(error)
    if state == "25006":
        return ReadOnlyStore(f"the store{_at(where)} is read-only (a read-only transaction or a standby server); "
                             "run the command against the primary")
    if state == "42501":
        return ReadOnlyStore(f"the store{_at(where)} is read-only for this database user (permission denied); "
                             "use a user that may write")
    if state == "53100":
        return StoreUnavailable(f"could not write to the store{_at(where)}: the database server's disk is full; "
                                "free some space and run the command again (nothing was written)")
    if state in ("55P03", "40P01", "40001"):
        return StoreUnavailable(f"the store{_at(where)} is locked by another session; try again when it has "
                                "finished")
    if state.startswith("23"):  # integrity constraint violations
        return _conflict(where)
    if state == "XX001":
        return StoreUnavailable(f"the store{_at(where)} has damaged data; restore it from a backup")
    if state == "42P01":
        table = _PG_UNDEFINED_TABLE.search(text)
        return _missing_table(table.group(1) if table else "?", where)
    if state.startswith("28"):
        return StoreUnavailable(f"the database server refused the login{_at(where)}; check the user and password")
    if state == "3D000":
        return StoreUnavailable(f"the database{_at(where)} does not exist; create it, then run "
                                "`workbench db upgrade`")
    if state.startswith("08") or state.startswith("57P") or (opening and not state):
        if "password" in text or "authentication" in text:
            return StoreUnavailable(f"the database server refused the login{_at(where)}; check the user and "
                                    "password")
        if "does not exist" in text:
            return StoreUnavailable(f"the database{_at(where)} does not exist; create it, then run "
                                    "`workbench db upgrade`")
        return StoreUnavailable(f"cannot connect to the store{_at(where)}: the server refused the connection or "
                                "is unreachable; check that it is running and that the URL is right")
    return StoreUnavailable(f"the store{_at(where)} failed (SQLSTATE {state or 'unknown'}); run with --verbose "
                            "for details")


def explain(exc: BaseException, where: str, *, opening: bool = False) -> StoreUnavailable | None:
    """The store failure behind `exc` (anywhere in its chain), or None when it is not one."""
    links = list(_chain(exc))
    for link in links:
        if isinstance(link, StoreUnavailable):
            return link
        if isinstance(link, sa_exc.DBAPIError) and link.orig is not None:
            orig = link.orig
            if isinstance(orig, sqlite3.Error):
                return _sqlite(orig, where)
            return _postgres(orig, where, opening or link.connection_invalidated)
        if isinstance(link, sqlite3.Error):
            return _sqlite(link, where)
    for link in links:
        if isinstance(link, StoreReadOnly):
            return ReadOnlyStore(str(link))
        if isinstance(link, StoreError) and not isinstance(link.__cause__, Exception):
            return StoreUnavailable(str(link))
        if isinstance(link, sa_exc.NoResultFound):
            return StoreUnavailable(f"the store{_at(where)} is missing a row this command needs (a table that must "
                                    "hold one row, such as the audit chain head, is empty); it was changed outside "
                                    "the workbench: restore it from a backup")
        if isinstance(link, (sa_exc.ArgumentError, sa_exc.NoSuchModuleError)):
            return StoreUnavailable("cannot open store: --db is not a database URL the workbench can use (e.g. "
                                    "sqlite:///path/to/workbench.db or postgresql+psycopg://user@host/db)")
        if isinstance(link, OSError) and link.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
            return StoreUnavailable("could not write: the disk is full or a file reached its size limit; free "
                                    "some space and run the command again")
    if opening:
        return StoreUnavailable(f"cannot open store{_at(where)}: {type(exc).__name__}; run with --verbose for "
                                "details")
    return None


def store_failure(exc: BaseException, where: str, *, opening: bool = False) -> StoreUnavailable:
    """`explain`, for a failure known to come from the store."""
    explained = explain(exc, where, opening=opening)
    if explained is not None:
        return explained
    return StoreUnavailable(f"the store{_at(where)} failed: {type(exc).__name__}; run with --verbose for details")
