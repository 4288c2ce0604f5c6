"""A store that fails under the running TUI: every failure is one line on screen that says
what failed and what to do, with no SQL, no parameters and no secret; the app keeps running
and recovers once the store does. Real failures on both backends: a table renamed away
under the app, so the database itself raises."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, text

from tests.tui.conftest import make_app, notices, settle, type_text
from workbench.services import audit, triage
from workbench.services.context import ServiceContext
from workbench.services.health import ConnectionHealth
from workbench.tui.errors import describe_error
from workbench.tui.screens.failures import FailuresScreen
from workbench.tui.screens.records import RecordsScreen
from workbench.tui.widgets import VirtualTable

# Looks like nothing the workbench would ever print by itself: it can only reach the screen
# through a statement's parameters. No underscore, so PostgreSQL's escaped LIKE keeps it whole.
CANARY = "CANARY7f3e9a"


@contextmanager
def table_gone(engine: Engine, table: str) -> Iterator[None]:
    """`table` is renamed away (the database raises on every statement that names it), then
    put back."""
    with engine.begin() as conn:
        conn.execute(text(f"ALTER TABLE {table} RENAME TO {table}_gone"))
    try:
        yield
    finally:
        with engine.begin() as conn:
            conn.execute(text(f"ALTER TABLE {table}_gone RENAME TO {table}"))


def assert_one_clean_line(message: str) -> None:
    assert "\n" not in message
    for leak in ("[SQL", "parameters", "SELECT", "INSERT", CANARY, "Traceback"):
        assert leak not in message, message


def errors_shown(app: Any) -> list[str]:
    return [n.message for n in app._notifications if n.severity == "error"]


@pytest.mark.asyncio
async def test_a_failing_load_is_one_line_and_the_screen_recovers(db_ctx: ServiceContext) -> None:
    app = make_app(db_ctx)
    async with app.run_test(notifications=True) as pilot:
        await settle(pilot)
        await pilot.press("2")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, RecordsScreen) and screen.table.rows
        with table_gone(db_ctx.engine, "provider_refs"):
            # The external ID prefix typed goes into the failing statement's parameters.
            await pilot.press("slash")
            await type_text(pilot, CANARY)
            await settle(pilot)
            [message] = errors_shown(app)
            assert message.startswith("Could not load Records: the store has no table 'provider_refs'")
            assert_one_clean_line(message)
            assert "refresh failed" in str(screen.query_one(".status-refreshed").render())
        # The app kept running: with the store back, the next refresh shows the data.
        await pilot.press("ctrl+u", "enter", "ctrl+r")
        await settle(pilot)
        assert screen.is_current and screen.table.rows
        assert "refreshed" in str(screen.query_one(".status-refreshed").render())


@pytest.mark.asyncio
async def test_a_failing_triage_action_is_one_line_and_nothing_is_half_written(db_ctx: ServiceContext) -> None:
    group = next(g for g in triage.groups(db_ctx) if g.category == "contract_mismatch")
    app = make_app(db_ctx)
    async with app.run_test(notifications=True) as pilot:
        await settle(pilot)
        app.open_group(group)
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, FailuresScreen)
        failure_id = screen.table.rows[0].key
        before = triage.failure_detail(db_ctx, failure_id)
        with table_gone(db_ctx.engine, "failure_notes"):
            await pilot.press("d")
            await type_text(pilot, f"closed with {CANARY}")  # the note goes into the INSERT
            await pilot.press("enter")
            await settle(pilot)
            [message] = errors_shown(app)
            assert message.startswith("Resolve failed: the store has no table 'failure_notes'")
            assert_one_clean_line(message)
            assert screen.is_current and screen.running is None
        # The failure's transaction was rolled back whole: still open, no audit entry.
        assert triage.failure_detail(db_ctx, failure_id) == before
        assert not [e for e in audit.search(db_ctx, "failure.resolve") if e["target_id"] == failure_id]
        # And once the store is whole again the same action works.
        await pilot.press("d")
        await type_text(pilot, "closed after the outage")
        await pilot.press("enter")
        await settle(pilot)
        assert triage.failure_detail(db_ctx, failure_id)["state"] == "resolved"
        assert any(text.startswith("Resolve: 1 resolved") for text in notices(app))


@pytest.mark.asyncio
async def test_a_failing_pause_is_one_line(db_ctx: ServiceContext) -> None:
    app = make_app(db_ctx)
    async with app.run_test(notifications=True) as pilot:
        await settle(pilot)
        with table_gone(db_ctx.engine, "connection_versions"):
            await pilot.press("p")
            await type_text(pilot, f"maintenance {CANARY}")
            await pilot.press("enter")
            await settle(pilot)
            [message] = errors_shown(app)
            assert message.startswith("Pause acme failed: ")
            assert_one_clean_line(message)
        await pilot.press("ctrl+r")
        await settle(pilot)
        shown = [row.data for row in app.screen.query_one(VirtualTable).rows]
        assert shown and all(isinstance(item, ConnectionHealth) and not item.paused for item in shown)


def test_errors_other_than_the_stores_are_one_redacted_line() -> None:
    message = describe_error(ValueError("sk_live_abcdefghijklmnop\nsecond line"))
    assert message.startswith("unexpected ValueError: ") and "sk_live_abcdefghijklmnop" not in message
    assert "\n" not in message and "second line" not in message


def store_error(engine: Engine, statement: str, *, first: str | None = None) -> BaseException:
    """What the database really raises for `statement` (after `first`, in the same
    transaction), through SQLAlchemy as the services see it."""
    try:
        with engine.begin() as conn:
            if first:
                conn.execute(text(first))
            conn.execute(text(statement), {"canary": CANARY})
    except Exception as exc:
        return exc
    raise AssertionError(f"{statement!r} did not fail")


def test_a_locked_sqlite_store_reads_as_busy(tmp_path: Path) -> None:
    path = tmp_path / "locked.db"
    holder = create_engine(f"sqlite:///{path}")
    waiter = create_engine(f"sqlite:///{path}", connect_args={"timeout": 0.05})
    with holder.connect() as conn:
        conn.execute(text("CREATE TABLE notes (body TEXT)"))
        conn.commit()
        conn.exec_driver_sql("BEGIN IMMEDIATE")  # another process's write lock, held
        message = describe_error(store_error(waiter, "INSERT INTO notes VALUES (:canary)"))
        conn.rollback()
    holder.dispose()
    waiter.dispose()
    assert message.startswith("the store is locked by another process") and "try again" in message
    assert_one_clean_line(message)


def test_a_read_only_sqlite_store_reads_as_read_only(tmp_path: Path) -> None:
    path = tmp_path / "ro.db"
    writable = create_engine(f"sqlite:///{path}")
    with writable.begin() as conn:
        conn.execute(text("CREATE TABLE notes (body TEXT)"))
    writable.dispose()
    read_only = create_engine(f"sqlite:///file:{path}?mode=ro&uri=true")
    message = describe_error(store_error(read_only, "INSERT INTO notes VALUES (:canary)"))
    read_only.dispose()
    assert message.startswith("the store is read-only")
    assert_one_clean_line(message)


def test_a_damaged_sqlite_file_reads_as_damaged(tmp_path: Path) -> None:
    path = tmp_path / "damaged.db"
    path.write_bytes(b"this is not a database " * 512)
    engine = create_engine(f"sqlite:///{path}")
    message = describe_error(store_error(engine, "SELECT * FROM notes WHERE body = :canary"))
    engine.dispose()
    assert message.startswith("the store file is damaged")
    assert_one_clean_line(message)


def test_store_errors_read_the_same_on_each_backend(engine: Engine) -> None:
    missing = describe_error(store_error(engine, "SELECT * FROM no_such_table WHERE x = :canary"))
    assert missing.startswith("the store has no table 'no_such_table'")
    assert_one_clean_line(missing)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE notes (body TEXT UNIQUE)"))
        conn.execute(text("INSERT INTO notes VALUES (:canary)"), {"canary": CANARY})
    conflict = describe_error(store_error(engine, "INSERT INTO notes VALUES (:canary)"))
    assert conflict.startswith("the store refused a conflicting change")
    assert_one_clean_line(conflict)
    read_only = "SET TRANSACTION READ ONLY" if engine.dialect.name == "postgresql" else "PRAGMA query_only = ON"
    refused = describe_error(store_error(engine, "INSERT INTO notes VALUES ('x' || :canary)", first=read_only))
    assert refused.startswith("the store is read-only")
    assert_one_clean_line(refused)


