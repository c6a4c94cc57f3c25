"""Migrations: a fresh database gets every table, queries match the migrations, upgrades repeat safely."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from bot.store import actions, conversations, digests, incidents
from bot.store.schema import upgrade
from tests.databases import StateDatabase

TABLES = [
    *conversations.metadata.sorted_tables,
    *actions.metadata.sorted_tables,
    *digests.metadata.sorted_tables,
    *incidents.metadata.sorted_tables,
]


@pytest.fixture
def opener(state_db: StateDatabase) -> Callable[[], Engine]:
    """Opens engines (think: replicas) on one empty database."""
    return state_db.engine


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
            connection.execute(sa.text("SELECT version_num FROM steward_schema_version")).scalar() == "0005"
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
