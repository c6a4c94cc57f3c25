"""Rows for a drift monitor: CSV or Parquet files (a glob, date-partitioned or not) or a SQL query, as typed
columns.

A window (`from`/`to`, or the `last_days` full days before the digest's day) keeps the rows whose date
column falls inside it; files whose path holds a date (`2026-10-03.csv`, `day=2026-10-03/part.csv`)
outside the window are not read at all. Every problem names the file, line and column at fault.
"""

from __future__ import annotations

import csv
import datetime as dt
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from bot.digests.config import Source
from bot.digests.drift import Kind
from bot.errors import Unavailable

_DATE_IN_PATH = re.compile(r"(\d{4})-(\d{2})-(\d{2})")
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class SourceError(Unavailable):
    """A data source could not be read; the message says which and why (the digest reports it)."""


def window(source: Source, today: dt.date) -> tuple[dt.date | None, dt.date | None]:
    """The first and last day a source covers (None: open), for a digest made on `today`."""
    if source.last_days is not None:
        return today - dt.timedelta(days=source.last_days), today - dt.timedelta(days=1)
    return source.start, source.end


def describe(source: Source, today: dt.date) -> str:
    """The source and its window, as a digest names it."""
    where = source.csv or source.parquet or "SQL query"
    first, last = window(source, today)
    if first is None and last is None:
        return str(where)
    return f"{where}, {first or '…'} to {last or '…'}"


def load(
    source: Source,
    kinds: Mapping[str, Kind],
    date_column: str | None,
    today: dt.date,
    base: Path,
) -> dict[str, NDArray[Any]]:
    """The columns named in `kinds` (numeric as float with NaN, categorical as text or None)."""
    first, last = window(source, today)
    if source.parquet:
        return _parquet_columns(source.parquet, kinds, date_column, base, first, last)
    if source.csv:
        rows = _csv_rows(source.csv, base, first, last)
    else:
        rows = _sql_rows(str(source.sql), str(source.url), first, last)
    return _typed(rows, kinds, date_column, first, last)


def _typed(
    rows: Iterable[tuple[str, dict[str, Any]]],
    kinds: Mapping[str, Kind],
    date_column: str | None,
    first: dt.date | None,
    last: dt.date | None,
) -> dict[str, NDArray[Any]]:
    """Rows as typed columns: the window applied, every cell checked (errors name its place)."""
    columns: dict[str, list[Any]] = {name: [] for name in kinds}
    for where, row in rows:
        if date_column is not None and (first or last):
            day = _day(row.get(date_column), where, date_column)
            if (first and day < first) or (last and day > last):
                continue
        for name, kind in kinds.items():
            if name not in row:
                raise SourceError(f"{where}: no column {name!r} (it has: {', '.join(sorted(row))})")
            columns[name].append(_value(row[name], kind, where, name))
    return {
        name: np.array(values, dtype=float if kinds[name] == "numeric" else object)
        for name, values in columns.items()
    }


def _value(raw: Any, kind: Kind, where: str, column: str) -> Any:
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return math.nan if kind == "numeric" else None
    if kind == "categorical":
        return str(raw)
    try:
        return float(raw)
    except (TypeError, ValueError):
        raise SourceError(f"{where}: column {column!r} holds {raw!r}, which is not a number") from None


def _day(raw: Any, where: str, column: str) -> dt.date:
    if isinstance(raw, dt.datetime):
        return raw.date()
    if isinstance(raw, dt.date):
        return raw
    try:
        return dt.date.fromisoformat(str(raw)[:10])
    except ValueError:
        raise SourceError(f"{where}: date column {column!r} holds {raw!r}, not a date (YYYY-MM-DD)") from None


def _files(pattern: str, base: Path, first: dt.date | None, last: dt.date | None) -> list[Path]:
    """The files the glob matches, without those whose path holds a date outside the window."""
    root = Path(pattern) if Path(pattern).is_absolute() else base / pattern
    anchor = Path(root.anchor)
    matched = sorted(anchor.glob(str(root.relative_to(anchor))))
    kept = []
    for path in matched:
        found = _DATE_IN_PATH.search(str(path.relative_to(anchor)))
        if found and (first or last):
            day = dt.date(*(int(part) for part in found.groups()))
            if (first and day < first) or (last and day > last):
                continue
        kept.append(path)
    if not matched:
        raise SourceError(f"{pattern}: no file matches (looked in {root.parent})")
    return kept


def _csv_rows(
    pattern: str, base: Path, first: dt.date | None, last: dt.date | None
) -> Iterable[tuple[str, dict[str, str]]]:
    for path in _files(pattern, base, first, last):
        try:
            with path.open(newline="", encoding="utf-8-sig") as handle:  # Excel writes a BOM
                reader = csv.DictReader(handle)
                for row in reader:
                    yield f"{path}, line {reader.line_num}", row
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            raise SourceError(f"{path}: cannot be read as CSV ({exc})") from None


def _parquet_columns(
    pattern: str,
    kinds: Mapping[str, Kind],
    date_column: str | None,
    base: Path,
    first: dt.date | None,
    last: dt.date | None,
) -> dict[str, NDArray[Any]]:
    """Each file read by column (fast); a file the columnar reader cannot take exactly, row by row."""
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise SourceError(f"{pattern}: reading Parquet needs pyarrow (`pip install pyarrow`)") from None
    from bot.digests.parquet import NotColumnarError, read_columns

    parts: list[dict[str, NDArray[Any]]] = []
    for path in _files(pattern, base, first, last):
        try:
            parts.append(read_columns(path, kinds, date_column, first, last))
            continue
        except NotColumnarError:
            pass
        except OSError as exc:
            raise SourceError(f"{path}: cannot be read as Parquet ({exc})") from None
        try:
            table = pq.read_table(path)
        except Exception as exc:  # pyarrow raises several kinds for a bad file
            raise SourceError(f"{path}: cannot be read as Parquet ({exc})") from None
        rows = ((f"{path}, row {number}", row) for number, row in enumerate(table.to_pylist(), start=1))
        parts.append(_typed(rows, kinds, date_column, first, last))
    return {
        name: np.concatenate([part[name] for part in parts])
        if parts
        else np.array([], dtype=float if kind == "numeric" else object)
        for name, kind in kinds.items()
    }


def _sql_rows(
    query: str, url: str, first: dt.date | None, last: dt.date | None
) -> Iterable[tuple[str, dict[str, Any]]]:
    import sqlalchemy as sa

    missing = [name for name in _ENV.findall(url) if name not in os.environ]
    if missing:
        raise SourceError(f"the SQL source's url uses ${{{missing[0]}}}, which is not set")
    resolved = _ENV.sub(lambda match: os.environ[match.group(1)], url)
    try:
        engine = sa.create_engine(resolved)
    except Exception as exc:
        raise SourceError(f"the SQL source's url cannot be used ({type(exc).__name__}: {exc})") from None
    statement = sa.text(query)
    params = {name: value for name, value in (("start", first), ("end", last)) if f":{name}" in query}
    try:
        with engine.connect() as connection:
            result = connection.execute(statement, params)
            names: Sequence[str] = list(result.keys())
            rows = [dict(zip(names, row, strict=True)) for row in result]
    except Exception as exc:
        raise SourceError(
            f"the SQL query failed ({type(exc).__name__}: {str(exc).splitlines()[0]})"
        ) from None
    finally:
        engine.dispose()
    yield from (("SQL query", row) for row in rows)
