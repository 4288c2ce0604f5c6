"""One line for the operator about anything that went wrong after the store was opened: what
failed and what to do, never a traceback.

A store error is classified by the same code the CLI uses (services.store_faults), never
printed: SQLAlchemy's text carries `[SQL: ...]` and `[parameters: ...]`, and the parameters
hold raw bodies, headers and notes. Everything else is cut to its first line and redacted.
"""

from __future__ import annotations

from sqlalchemy import exc as sa_exc

from workbench.domain.redaction import redact_text
from workbench.services.errors import ServiceError
from workbench.services.store_faults import explain

LONGEST = 160  # characters of an exception's own text that are shown


def describe_error(exc: BaseException) -> str:
    """One line: service errors speak for themselves; store errors are classified; anything
    else (a bug) names its type and first line, redacted."""
    if isinstance(exc, ServiceError):
        return _one_line(str(exc)) or type(exc).__name__
    explained = explain(exc, "")  # the title bar already names the store
    if explained is not None:
        return _one_line(str(explained))
    if isinstance(exc, sa_exc.SQLAlchemyError):  # raised by SQLAlchemy itself: no driver behind it
        return f"store error ({type(exc).__name__}): refresh (ctrl+r) and try again"
    text = _one_line(str(exc))
    return f"unexpected {type(exc).__name__}" + (f": {text}" if text else "") + " (a bug: please report it)"


def _one_line(text: str) -> str:
    first = text.strip().splitlines()[0] if text.strip() else ""
    first = redact_text(first)
    return first if len(first) <= LONGEST else first[:LONGEST - 1] + "…"
