"""Bulk writes for the hot ingest path, straight to the driver's executemany.

SQLAlchemy's per-row parameter processing costs more than SQLite's insert itself at tens of
thousands of rows a second. Here each statement is compiled once per dialect and each value is
converted by one small function per column, producing exactly what the column types would
store, so the ORM reads these rows back unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from operator import itemgetter
from typing import Any

import orjson
from sqlalchemy import Connection, Table, and_, bindparam, update
from sqlalchemy.engine import Dialect

from .types import JSONText, UTCDateTime

Converter = Callable[[Any], Any]


def _json(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def _utc_naive(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is not timezone.utc:
        value = value.astimezone(timezone.utc)
    return value.replace(tzinfo=None)


def _sqlite_datetime(value: datetime | None) -> str | None:
    # The same text SQLAlchemy's SQLite DateTime stores: UTC, always with microseconds.
    if value is None:
        return None
    if value.tzinfo is not timezone.utc:
        value = value.astimezone(timezone.utc)
    return value.isoformat(sep=" ", timespec="microseconds")[:26]


def _memoised(convert: Converter) -> Converter:
    memo: dict[Any, Any] = {}

    def cached(value: Any) -> Any:
        try:
            return memo[value]
        except KeyError:
            result = memo[value] = convert(value)
            return result

    return cached


def _identity(value: Any) -> Any:
    return value


def _converter(column_type: Any, dialect: Dialect) -> Converter:
    if isinstance(column_type, JSONText):
        return _json
    if isinstance(column_type, UTCDateTime):
        return _sqlite_datetime if dialect.name == "sqlite" else _utc_naive
    return _identity


class BulkStatement:
    """A compiled INSERT (or guarded UPDATE) and the converters for its parameters."""

    def __init__(self, dialect: Dialect, table: Table, columns: Sequence[str], *,
                 where: Mapping[str, str] | None = None) -> None:
        """`columns` are set from the row keys of the same names; `where` (column -> row key)
        turns the INSERT into an UPDATE guarded by those columns."""
        if where:
            stmt = (update(table)
                    .where(and_(*(table.c[col] == bindparam(f"w_{key}") for col, key in where.items())))
                    .values({name: bindparam(f"v_{name}") for name in columns}))
            names = [f"v_{n}" for n in columns] + [f"w_{key}" for key in where.values()]
            types = [table.c[n].type for n in columns] + [table.c[col].type for col in where]
        else:
            stmt = table.insert().values({name: bindparam(f"v_{name}") for name in columns})
            names = [f"v_{n}" for n in columns]
            types = [table.c[n].type for n in columns]
        compiled = stmt.compile(dialect=dialect)
        self.sql = str(compiled)
        self.positional = bool(compiled.positional)
        order = list(compiled.positiontup) if self.positional and compiled.positiontup else names
        index = {name: i for i, name in enumerate(names)}
        self._order = [index[name] for name in order]
        self._names = order
        self._converters = [_converter(types[index[name]], dialect) for name in order]
        self._keys = [name[2:] for name in order]

    def params(self, rows: Sequence[dict[str, Any]]) -> list[Any]:
        # itemgetter pulls each row's values in C; only the columns whose type needs it are
        # converted. Timestamps repeat across a batch (the batch's clock, an event's time on its
        # delivery, transition and record): each distinct one is converted once.
        extract = itemgetter(*self._keys)
        converting = [(i, _memoised(conv) if conv in (_sqlite_datetime, _utc_naive) else conv)
                      for i, conv in enumerate(self._converters) if conv is not _identity]
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


_cache: dict[tuple[Any, ...], BulkStatement] = {}


def bulk(conn: Connection, table: Table, columns: Sequence[str], where: Mapping[str, str] | None = None) -> BulkStatement:
    """The cached BulkStatement for this dialect, table and column set."""
    key = (conn.dialect.name, table.name, tuple(columns), tuple((where or {}).items()))
    statement = _cache.get(key)
    if statement is None:
        statement = _cache[key] = BulkStatement(conn.dialect, table, columns, where=where)
    return statement


def insert_rows(conn: Connection, table: Table, rows: Sequence[dict[str, Any]]) -> int:
    """Insert dict rows (all with the same keys) in one executemany."""
    if not rows:
        return 0
    return bulk(conn, table, list(rows[0])).execute(conn, rows)
