"""The state databases tests run against: a SQLite file, or a private schema in the local PostgreSQL."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from bot.store.engine import create_engine
from tests.audit_support import shared_key
from tests.support.records import migrated

POSTGRES = os.environ.get("STEWARD_TEST_POSTGRES_URL")


@dataclass
class StateDatabase:
    """One empty database; `engine()` opens another engine on it (think: another replica)."""

    url: str
    schema: str | None = None
    opened: list[Engine] = field(default_factory=list)

    def engine(self) -> Engine:
        """A new engine on this database (SQLite with Steward's settings, PostgreSQL on the schema)."""
        if self.schema is None:
            built = create_engine(self.url)
        else:
            built = sa.create_engine(self.url, connect_args={"options": f"-csearch_path={self.schema}"})
        shared_key(built)  # another replica: the same audit key
        self.opened.append(built)
        return built

    def migrated_engine(self) -> Engine:
        """A new engine on this database, migrated to the newest schema as `steward` does at start-up."""
        return migrated(self.engine())


@contextmanager
def state_database(kind: str, tmp_path: Path) -> Iterator[StateDatabase]:
    """A fresh database of `kind` ('sqlite' or 'postgresql'); PostgreSQL skips when CI's URL is unset."""
    if kind == "sqlite":
        database = StateDatabase(f"sqlite:///{tmp_path}/state.db")
        try:
            yield database
        finally:
            for built in database.opened:
                built.dispose()
        return
    if not POSTGRES:
        pytest.skip("STEWARD_TEST_POSTGRES_URL is not set: PostgreSQL tests skipped (CI sets it)")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(POSTGRES)
    with admin.begin() as connection:
        connection.execute(sa.text(f"CREATE SCHEMA {schema}"))
    database = StateDatabase(POSTGRES, schema)
    try:
        yield database
    finally:
        for built in database.opened:
            built.dispose()
        with admin.begin() as connection:
            connection.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


@contextmanager
def fresh_postgres_database() -> Iterator[str]:
    """A new PostgreSQL database (its URL) for processes that cannot share a schema; dropped afterwards."""
    if not POSTGRES:
        pytest.skip("STEWARD_TEST_POSTGRES_URL is not set: PostgreSQL tests skipped (CI sets it)")
    name = f"steward_test_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(POSTGRES, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = sa.engine.make_url(POSTGRES).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
