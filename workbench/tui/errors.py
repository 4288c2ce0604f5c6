"""One line for the operator about anything that went wrong after the store was opened: what
failed and what to do, never a traceback.

A database error is classified, never printed: SQLAlchemy's text carries `[SQL: ...]` and
`[parameters: ...]`, and the parameters hold raw bodies, headers and notes. Everything else is
cut to its first line and redacted.
"""

from __future__ import annotations

from sqlalchemy import exc as sa_exc

from workbench.domain.redaction import redact_text
from workbench.services.errors import ServiceError

LONGEST = 160  # characters of an exception's own text that are shown

# (what the driver's message or SQLSTATE says, what the operator reads). First match wins;
# SQLite speaks in messages, PostgreSQL in SQLSTATE codes (psycopg's `sqlstate`).
STORE_PROBLEMS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("database is locked", "database table is locked", "55p03", "40p01", "40001"),
     "the store is busy (another process holds a lock): try again in a moment"),
    (("readonly database", "read-only", "25006"),
     "the store is read-only for this process: writes are off"),
    (("database or disk is full", "disk full", "53100"),
     "the disk holding the store is full: free some space, then try again"),
    (("malformed", "file is not a database", "xx001", "xx002"),
     "the store file is damaged: restore it from a backup"),
    (("no such table", "no such column", "42p01", "42703"),
     "the store's schema is missing a table or column: run `workbench db upgrade`"),
    (("unable to open database file", "disk i/o error", "08", "57p01", "connection refused",
      "server closed the connection"),
     "cannot reach the store: check the database is running and reachable, then refresh (ctrl+r)"),
    (("42501", "28"),
     "the database refused access: check the store's permissions"),
    (("57014", "statement timeout", "interrupted"),
     "the database cancelled a slow query: try again"),
)


def describe_error(exc: BaseException) -> str:
    """One line: service errors speak for themselves; store errors are classified; anything
    else (a bug) names its type and first line, redacted."""
    if isinstance(exc, ServiceError):
        return _one_line(str(exc)) or type(exc).__name__
    if isinstance(exc, sa_exc.SQLAlchemyError):
        return describe_store_error(exc)
    text = _one_line(str(exc))
    return f"unexpected {type(exc).__name__}" + (f": {text}" if text else "") + " (a bug: please report it)"


def describe_store_error(exc: sa_exc.SQLAlchemyError) -> str:
    if isinstance(exc, sa_exc.IntegrityError):
        return "the store refused a conflicting change: refresh (ctrl+r) and try again"
    if not isinstance(exc, sa_exc.DBAPIError):  # raised by SQLAlchemy itself: no driver behind it
        return f"store error ({type(exc).__name__}): refresh (ctrl+r) and try again"
    original = exc.orig
    # Only the driver's own message (no statement, no parameters) and its SQLSTATE are read.
    message = str(original.args[0] if original is not None and original.args else "").lower()
    state = str(getattr(original, "sqlstate", "") or "").lower()
    for signs, advice in STORE_PROBLEMS:
        for sign in signs:
            if (state.startswith(sign) if _is_sqlstate(sign) else sign in message):
                return advice
    kind = type(original).__name__ if original is not None else type(exc).__name__
    return f"store error ({kind}): refresh (ctrl+r); if it persists, check the store"


def _is_sqlstate(sign: str) -> bool:
    return len(sign) <= 5 and sign.isalnum() and any(ch.isdigit() for ch in sign)


def _one_line(text: str) -> str:
    first = text.strip().splitlines()[0] if text.strip() else ""
    first = redact_text(first)
    return first if len(first) <= LONGEST else first[:LONGEST - 1] + "…"
