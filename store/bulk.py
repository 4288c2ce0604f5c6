"""Bulk reads and writes for the hot ingest path, straight to the driver.

SQLAlchemy's per-row parameter and result processing costs more than SQLite's insert itself at
tens of thousands of rows a second. This module is the one place that knows how a column's
value looks to the driver, so callers can build rows in that form directly:

* `codec(dialect)`: a `Codec` per dialect name, converters from Python values to what the
  column types store (UTC datetimes as SQLAlchemy's SQLite text or naive UTC; JSON as sorted
  compact text) and back, so SQLAlchemy reads these rows unchanged and these readers read its
  rows; `memoised` wraps a converter for values that repeat within a batch;
* `row_insert` / `row_update`: a compiled INSERT, or an UPDATE guarded by columns such as a
  version, for tuples already in driver form (`Codec` converted), run with one executemany;
* `in_lookup`: a SELECT with `col IN (...)` over many keys, in fixed-size chunks (one compiled
  statement, whatever the number of keys);
* `insert_rows`: the general path for dict rows (converted here, per column).

Compiled statements are cached per dialect name and paramstyle, table and columns.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from functools import cache
from operator import itemgetter
from typing import Any, TypeVar

import orjson
from sqlalchemy import Connection, Table, and_, bindparam, update
from sqlalchemy.engine import Dialect
from sqlalchemy.sql.elements import BindParameter

from .types import JSONText, UTCDateTime

Converter = Callable[[Any], Any]
_Statement = TypeVar("_Statement")

_SORT_KEYS = orjson.OPT_SORT_KEYS
_dumps = orjson.dumps
_loads = orjson.loads

# Positional placeholders each paramstyle's drivers accept (psycopg takes %s under pyformat too).
_PLACEHOLDERS = {"qmark": "?", "format": "%s", "pyformat": "%s"}
# Rows per multi-row INSERT (RowInsert.execute_as_one): under SQLite's 32,766 parameters for
# tables of up to 127 columns.
MULTI_ROWS = 256


def _json(value: Any) -> str | None:
    return None if value is None else _dumps(value, option=_SORT_KEYS).decode()


def _from_json(value: str | bytes | None) -> Any:
    return None if value is None else _loads(value)


def _utc_naive(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is not UTC:
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
    return value.replace(tzinfo=None)


def _sqlite_datetime(value: datetime | None) -> str | None:
    # The same text SQLAlchemy's SQLite DateTime stores: UTC, always with microseconds.
    if value is None:
        return None
    if value.tzinfo is not UTC:
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
    return value.isoformat(" ", "microseconds")[:26]


def _from_sqlite_datetime(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value).replace(tzinfo=UTC)


def _from_naive_utc(value: datetime | None) -> datetime | None:
    return None if value is None else value.replace(tzinfo=UTC)


def memoised(convert: Converter) -> Converter:
    """`convert` with a memo: for values that repeat (a batch's clock, an event's time on its
    delivery, transition and record). Unbounded: make one per batch."""
    return cache(convert)


class Codec:
    """Python values <-> driver values, for one dialect, matching the store's column types."""

    def __init__(self, dialect_name: str) -> None:
        self.dialect_name = dialect_name
        sqlite = dialect_name == "sqlite"
        # UTCDateTime: aware datetime -> SQLite text / naive UTC, and back to aware UTC.
        self.datetime: Converter = _sqlite_datetime if sqlite else _utc_naive
        self.read_datetime: Converter = _from_sqlite_datetime if sqlite else _from_naive_utc
        # JSONText: compact, key-sorted JSON text (byte-stable), and back.
        self.json: Converter = _json
        self.read_json: Converter = _from_json

    def converter(self, column_type: Any) -> Converter | None:
        """The converter for values of a column type, None where the value passes unchanged."""
        if isinstance(column_type, JSONText):
            return self.json
        if isinstance(column_type, UTCDateTime):
            return self.datetime
        return None


def codec(dialect: Dialect) -> Codec:
    """The Codec for a dialect (one per dialect name)."""
    return _codec(dialect.name)


@cache
def _codec(dialect_name: str) -> Codec:
    return Codec(dialect_name)


def _placeholder(dialect: Dialect) -> str | None:
    return _PLACEHOLDERS.get(dialect.paramstyle)


class _DriverStatement:
    """SQL in the driver's own paramstyle, run with executemany over tuples (or, for a
    named-only paramstyle, dicts keyed by `_named`)."""

    sql: str
    _named: list[str] | None

    def execute(self, conn: Connection, rows: Sequence[tuple[Any, ...]]) -> int:
        if not rows:
            return 0
        if self._named is not None:
            rows = [dict(zip(self._named, row)) for row in rows]  # type: ignore[misc]  # named-paramstyle drivers take dicts
        return conn.exec_driver_sql(self.sql, rows if isinstance(rows, list) else list(rows)).rowcount


class RowInsert(_DriverStatement):
    """INSERT INTO table (columns...) for rows given as tuples in `columns` order, with values
    already in driver form (see `Codec`)."""

    def __init__(self, dialect: Dialect, table: Table, columns: Sequence[str]) -> None:
        self.columns = tuple(columns)
        for name in self.columns:
            table.c[name]  # noqa: B018 -- an unknown column fails here, not at execution
        mark = _placeholder(dialect)
        quote = dialect.identifier_preparer
        names = ", ".join(quote.quote(name) for name in self.columns)
        if mark is not None:
            self.sql = f"INSERT INTO {quote.format_table(table)} ({names}) VALUES ({', '.join([mark] * len(columns))})"
            self._named = None
        else:  # a named-only paramstyle: let SQLAlchemy render it, pass dicts
            stmt = table.insert().values({name: bindparam(f"v_{name}") for name in self.columns})
            self.sql = str(stmt.compile(dialect=dialect))
            self._named = [f"v_{name}" for name in self.columns]
        self._row_marks = f"({', '.join([mark] * len(columns))})" if mark is not None else None
        self._multi_sql: dict[int, str] = {}  # by row count: at most MULTI_ROWS statements

    def execute_as_one(self, conn: Connection, rows: Sequence[tuple[Any, ...]]) -> int:
        """Insert `rows` with one statement per MULTI_ROWS rows (`VALUES (...), (...)`), not one
        executemany step per row: the driver gives up the GIL at every step, and a thread
        sharing the GIL with a busy event loop waits for it back each time (the receiver's
        writer). Falls back to executemany for a named-only paramstyle."""
        if self._row_marks is None:
            return self.execute(conn, rows)
        done = 0
        for start in range(0, len(rows), MULTI_ROWS):
            chunk = rows[start:start + MULTI_ROWS]
            sql = self._multi_sql.get(len(chunk))
            if sql is None:
                sql = self._multi_sql[len(chunk)] = self.sql[:self.sql.index(" VALUES ")] + " VALUES " + ", ".join(
                    [self._row_marks] * len(chunk))
            done += conn.exec_driver_sql(sql, tuple(value for row in chunk for value in row)).rowcount
        return done

class RowUpdate(_DriverStatement):
    """UPDATE table SET columns... WHERE guards... for tuples (set values, then guard values),
    values in driver form. Returns the number of rows changed (or -1 where the driver can't)."""

    def __init__(self, dialect: Dialect, table: Table, columns: Sequence[str], guards: Sequence[str]) -> None:
        self.columns, self.guards = tuple(columns), tuple(guards)
        mark = _placeholder(dialect)
        quote = dialect.identifier_preparer
        if mark is not None:
            sets = ", ".join(f"{quote.quote(name)} = {mark}" for name in self.columns)
            where = " AND ".join(f"{quote.quote(name)} = {mark}" for name in self.guards)
            self.sql = f"UPDATE {quote.format_table(table)} SET {sets} WHERE {where}"
            self._named = None
        else:
            stmt = (update(table)
                    .where(and_(*(table.c[name] == bindparam(f"w_{name}") for name in self.guards)))
                    .values({name: bindparam(f"v_{name}") for name in self.columns}))
            self.sql = str(stmt.compile(dialect=dialect))
            self._named = [f"v_{n}" for n in self.columns] + [f"w_{n}" for n in self.guards]


class InLookup:
    """A SELECT whose WHERE has `key IN (...)`, run over any number of keys in chunks of
    `size`: `build(in_params)` returns the statement, given the bind parameters to put in the IN
    list; other bind parameters are named and passed to `rows()`. A chunk is padded with its
    last key (harmless in IN) up to a power of two (at least MIN_IN, at most `size`), so a few
    compiled statements serve every batch and a handful of keys is not looked up with
    hundreds of parameters. Rows come back as the driver gives them: convert with
    `Codec.read_*`."""

    MIN_IN = 8

    def __init__(self, dialect: Dialect, build: Callable[[list[BindParameter[Any]]], Any], size: int) -> None:
        self.size = size
        self._dialect, self._build = dialect, build
        # By IN-list length: the SQL, its parameter order (positional drivers), the IN names.
        self._by_length: dict[int, tuple[str, list[str] | None, list[str]]] = {}

    def _statement(self, length: int) -> tuple[str, list[str] | None, list[str]]:
        found = self._by_length.get(length)
        if found is None:
            in_names = [f"in_{i}" for i in range(length)]
            compiled = self._build([bindparam(name) for name in in_names]).compile(dialect=self._dialect)
            positions = list(compiled.positiontup) if compiled.positional else None
            found = self._by_length[length] = (str(compiled), positions, in_names)
        return found

    def _length(self, count: int) -> int:
        length = self.MIN_IN
        while length < count:
            length *= 2
        return min(length, self.size)

    def rows(self, conn: Connection, keys: Iterable[Any], **params: Any) -> list[Any]:
        keys = list(keys)
        size = self.size
        out: list[Any] = []
        for start in range(0, len(keys), size):
            chunk = keys[start:start + size]
            sql, positions, in_names = self._statement(self._length(len(chunk)))
            chunk += [chunk[-1]] * (len(in_names) - len(chunk))
            values = dict(params)
            values.update(zip(in_names, chunk))
            args: Any = tuple(values[name] for name in positions) if positions is not None else values
            out.extend(conn.exec_driver_sql(sql, args).fetchall())
        return out


# Compiled statements by (dialect name, paramstyle, what, table or name, columns...). Not
# functools.cache over the dialect: every engine has its own dialect object (one per CLI run,
# per test, per store the TUI opens) and the SQL is the same for all of one name and paramstyle;
# keyed by the objects, the cache would keep every engine's dialect alive and compile again for
# each. An InLookup is keyed by its name, not by its `build` function, which may be a closure.
_statements: dict[tuple[Any, ...], Any] = {}


def _compiled(dialect: Dialect, key: tuple[Any, ...], make: Callable[[], _Statement]) -> _Statement:
    full_key = (dialect.name, dialect.paramstyle, *key)
    found: _Statement | None = _statements.get(full_key)
    if found is None:
        found = _statements[full_key] = make()
    return found


def row_insert(conn: Connection, table: Table, columns: Sequence[str]) -> RowInsert:
    dialect = conn.dialect
    return _compiled(dialect, ("insert", table.name, tuple(columns)), lambda: RowInsert(dialect, table, columns))


def row_update(conn: Connection, table: Table, columns: Sequence[str], guards: Sequence[str]) -> RowUpdate:
    dialect = conn.dialect
    return _compiled(dialect, ("update", table.name, tuple(columns), tuple(guards)),
                     lambda: RowUpdate(dialect, table, columns, guards))


def in_lookup(conn: Connection, name: str, build: Callable[[list[BindParameter[Any]]], Any],
              size: int = 500) -> InLookup:
    """The cached InLookup called `name` (one per statement shape) for this dialect."""
    dialect = conn.dialect
    return _compiled(dialect, ("lookup", name, size), lambda: InLookup(dialect, build, size))


# --------------------------------------------------------------------------- dict rows


class BulkStatement:
    """A compiled INSERT and the converters for its parameters (dict rows)."""

    def __init__(self, dialect: Dialect, table: Table, columns: Sequence[str]) -> None:
        """`columns` are set from the row keys of the same names."""
        stmt = table.insert().values({name: bindparam(f"v_{name}") for name in columns})
        names = [f"v_{n}" for n in columns]
        types = [table.c[n].type for n in columns]
        compiled = stmt.compile(dialect=dialect)
        self.sql = str(compiled)
        self.positional = bool(compiled.positional)
        order = list(compiled.positiontup) if self.positional and compiled.positiontup else names
        index = {name: i for i, name in enumerate(names)}
        conversions = codec(dialect)
        self._names = order
        self._converters = [conversions.converter(types[index[name]]) for name in order]
        self._keys = [name[2:] for name in order]
        self._datetime = conversions.datetime

    def params(self, rows: Sequence[dict[str, Any]]) -> list[Any]:
        # itemgetter pulls each row's values in C; only the columns whose type needs it are
        # converted, each distinct timestamp once.
        extract = itemgetter(*self._keys)
        converting = [(i, memoised(conv) if conv is self._datetime else conv)
                      for i, conv in enumerate(self._converters) if conv is not None]
        out: list[Any] = []
        append = out.append
        single = len(self._keys) == 1
        for row in rows:
            values = [extract(row)] if single else list(extract(row))
            for i, conv in converting:
                values[i] = conv(values[i])
            append(tuple(values) if self.positional else dict(zip(self._names, values)))
        return out

    def execute(self, conn: Connection, rows: Sequence[dict[str, Any]]) -> int:
        if not rows:
            return 0
        result = conn.exec_driver_sql(self.sql, self.params(rows))
        return result.rowcount


def bulk(conn: Connection, table: Table, columns: Sequence[str]) -> BulkStatement:
    """The cached BulkStatement for this dialect, table and column set."""
    dialect = conn.dialect
    return _compiled(dialect, ("dicts", table.name, tuple(columns)), lambda: BulkStatement(dialect, table, columns))


def insert_rows(conn: Connection, table: Table, rows: Sequence[dict[str, Any]]) -> int:
    """Insert dict rows (all with the same keys) in one executemany."""
    if not rows:
        return 0
    return bulk(conn, table, list(rows[0])).execute(conn, rows)
