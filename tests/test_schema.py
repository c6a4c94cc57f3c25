"""Migrations: a fresh database gets every table, queries match the migrations, upgrades repeat safely."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from bot.store import actions, conversations
from bot.store.engine import create_engine
from bot.store.schema import upgrade

POSTGRES = os.environ.get("STEWARD_TEST_POSTGRES_URL")
TABLES = [*conversations.metadata.sorted_tables, *actions.metadata.sorted_tables]


@pytest.fixture(params=["sqlite", "postgresql"])
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], Engine]]:
    """Opens engines (think: replicas) on one empty SQLite file or one empty private PostgreSQL schema."""
    opened: list[Engine] = []
    if request.param == "sqlite":

        def open_sqlite() -> Engine:
            opened.append(create_engine(f"sqlite:///{tmp_path}/state.db"))
            return opened[-1]

        yield open_sqlite
        for built in opened:
            built.dispose()
        return
    if not POSTGRES:
        pytest.skip("STEWARD_TEST_POSTGRES_URL is not set: PostgreSQL tests skipped")
    schema = f"m_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(POSTGRES)
    with admin.begin() as connection:
        connection.execute(sa.text(f"CREATE SCHEMA {schema}"))

    def open_postgres() -> Engine:
        assert POSTGRES is not None
        opened.append(sa.create_engine(POSTGRES, connect_args={"options": f"-csearch_path={schema}"}))
        return opened[-1]

    try:
        yield open_postgres
    finally:
        for built in opened:
            built.dispose()
        with admin.begin() as connection:
            connection.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


@pytest.mark.parametrize("table", TABLES, ids=lambda table: table.name)
def test_the_migrations_create_what_the_queries_use(opener: Callable[[], Engine], table: sa.Table) -> None:
    """Every column the code queries exists, with the same nullability, after `upgrade`."""
    engine = opener()
    upgrade(engine)
    columns = {column["name"]: column for column in sa.inspect(engine).get_columns(table.name)}
    assert set(columns) == {column.name for column in table.columns}
    for column in table.columns:
        assert columns[column.name]["nullable"] == column.nullable or column.primary_key, column.name


def test_upgrading_again_changes_nothing(opener: Callable[[], Engine]) -> None:
    """A second process (another replica, a restart) finds the schema current and keeps the rows."""
    first = opener()
    upgrade(first)
    with first.begin() as connection:
        connection.execute(sa.text("INSERT INTO slack_events (event_id, received_at) VALUES ('Ev1', 1.0)"))
    second = opener()
    upgrade(second)
    with second.begin() as connection:
        assert connection.execute(sa.text("SELECT count(*) FROM slack_events")).scalar() == 1
        assert (
            connection.execute(sa.text("SELECT version_num FROM steward_schema_version")).scalar() == "0001"
        )


def test_tables_made_before_migrations_existed_are_kept(opener: Callable[[], Engine]) -> None:
    """A database whose tables were created directly is brought under migrations without losing rows."""
    engine = opener()
    conversations.metadata.create_all(engine)
    with engine.begin() as connection:
        connection.execute(sa.text("INSERT INTO slack_events (event_id, received_at) VALUES ('Ev1', 1.0)"))
    upgrade(engine)
    with engine.begin() as connection:
        assert connection.execute(sa.text("SELECT count(*) FROM slack_events")).scalar() == 1
        assert connection.execute(sa.text("SELECT seq FROM audit_head")).scalar() == 0
