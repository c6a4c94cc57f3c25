"""One way to open the state database, with SQLite set up for several threads and processes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DatabaseError

# What SQLite says about a file that is not (or no longer) a sound database.
_DAMAGE_SIGNS = ("file is not a database", "malformed", "file is encrypted", "unsupported file format")


def create_engine(url: str) -> Engine:
    """A SQLAlchemy engine; SQLite gets WAL, a busy timeout and write-locking transactions.

    SQLite's default deferred transactions fail at once with "database is locked" when two writers
    both read first and then write. `BEGIN IMMEDIATE` takes the write lock up front, so writers queue
    (up to the busy timeout) instead; WAL keeps readers from waiting on them.
    """
    engine = sa.create_engine(url, future=True, pool_pre_ping=True)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
    return engine


def sqlite_file(url: str) -> Path | None:
    """The file of a SQLite URL, resolved (None: not SQLite, in memory, or not a URL)."""
    try:
        parsed = sa.engine.make_url(url)
    except sa.exc.ArgumentError:
        return None
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    return Path(parsed.database).expanduser().resolve()


def damaged_file(exc: DatabaseError) -> bool:
    """Whether SQLite's error says the database file itself is damaged (not locked, not unreachable)."""
    return any(sign in str(exc.orig).lower() for sign in _DAMAGE_SIGNS)


def same_file(first: Path, second: Path) -> bool:
    """Whether two paths name one file (the same path, or links to one file)."""
    if first == second:
        return True
    try:
        return first.samefile(second)
    except OSError:  # one of them does not exist yet
        return False


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None  # SQLAlchemy emits BEGIN itself (below)
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA busy_timeout = 30000")
    if cursor.execute("PRAGMA database_list").fetchone()[2]:  # a file, not :memory:
        cursor.execute("PRAGMA journal_mode = WAL")
    cursor.close()


def _sqlite_begin(connection: Any) -> None:
    connection.exec_driver_sql("BEGIN IMMEDIATE")
