"""Parquet sources read by column with pyarrow: the fast path for large drift windows.

The row-by-row reader (`sources.load`) turns every cell into a Python value, about a minute for
1 million rows by 50 columns. Here each file's needed columns are read, the window is applied as an
Arrow filter and each column becomes one NumPy array, with the same meaning as the row reader:
numeric as float with NaN for empty cells, categorical as text with None. A file this path cannot
take exactly (a value that is not a number, an unusual column type) returns None, and the caller
reads that file row by row, which names the line and value at fault.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from bot.digests.drift import Kind


class NotColumnarError(Exception):
    """This file needs the row-by-row reader (it gives the precise error, or the exact conversion)."""


def read_columns(
    path: Path,
    kinds: Mapping[str, Kind],
    date_column: str | None,
    first: dt.date | None,
    last: dt.date | None,
) -> dict[str, NDArray[Any]]:
    """One file's columns in the window; raises NotColumnarError when the row reader must take it."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    windowed = date_column is not None and (first is not None or last is not None)
    names = list(kinds) + ([date_column] if windowed and date_column not in kinds else [])
    try:
        schema = pq.read_schema(path)
        if any(name not in schema.names for name in names):
            raise NotColumnarError(path)
        table = pq.read_table(path, columns=names)
        if windowed:
            days = _days(table.column(date_column))
            keep = pa.scalar(True)
            if first is not None:
                keep = pc.and_(keep, pc.greater_equal(days, pa.scalar(first, pa.date32())))
            if last is not None:
                keep = pc.and_(keep, pc.less_equal(days, pa.scalar(last, pa.date32())))
            table = table.filter(keep)
        return {name: _column(table.column(name), kind) for name, kind in kinds.items()}
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        raise NotColumnarError(path) from None


def _days(column: Any) -> Any:
    import pyarrow as pa
    import pyarrow.compute as pc

    if column.null_count:
        raise NotColumnarError("an empty date")
    kind = column.type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return pc.cast(pc.utf8_slice_codeunits(column, 0, 10), pa.date32())
    if pa.types.is_timestamp(kind) or pa.types.is_date(kind):
        return pc.cast(column, pa.date32())
    raise NotColumnarError("an unusual date type")


def _blank_as_null(column: Any) -> Any:
    import pyarrow as pa
    import pyarrow.compute as pc

    blank = pc.equal(pc.utf8_trim_whitespace(column), "")
    return pc.if_else(blank, pa.scalar(None, column.type), column)


def _column(column: Any, kind: Kind) -> NDArray[Any]:
    import pyarrow as pa
    import pyarrow.compute as pc

    text = pa.types.is_string(column.type) or pa.types.is_large_string(column.type)
    if kind == "numeric":
        if text:
            column = _blank_as_null(column)
        elif not (pa.types.is_integer(column.type) or pa.types.is_floating(column.type)):
            raise NotColumnarError("an unusual numeric type")
        values = pc.cast(column, pa.float64()).fill_null(np.nan)
        return np.asarray(values.to_numpy(), dtype=float)
    if text:
        column = _blank_as_null(column)
    elif pa.types.is_integer(column.type):  # str(12) == "12" in both readers
        column = pc.cast(column, pa.string())
    else:  # floats and booleans print differently in Arrow and Python: the row reader keeps one meaning
        raise NotColumnarError("an unusual categorical type")
    return np.asarray(column.to_numpy(zero_copy_only=False), dtype=object)
