"""Migrations: a fresh database gets every table, queries match the migrations, upgrades repeat safely."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine

from bot.incidents import records as incidents
from bot.store import action_requests as actions
from bot.store import catalog, conversations, digests
from bot.store.engine import create_engine
from bot.store.schema import MIGRATIONS, upgrade
from tests.conftest import ROOT
from tests.databases import StateDatabase

TABLES = [
    *conversations.metadata.sorted_tables,
    *actions.metadata.sorted_tables,
    *digests.metadata.sorted_tables,
    *incidents.metadata.sorted_tables,
]


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def _head() -> str | None:
    """The newest migration's revision."""
    return ScriptDirectory.from_config(_config()).get_current_head()


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
        version = connection.execute(sa.text("SELECT version_num FROM steward_schema_version")).scalar()
    assert version == _head()


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


def test_old_catalog_tables_leave_a_sqlite_records_database_only(state_db: StateDatabase) -> None:
    """The catalog's tables of the old layout are dropped from SQLite records (the catalog is catalog.db
    now) and kept in PostgreSQL (where the catalog shares the database in those very tables); the
    records stay either way."""
    engine = state_db.engine()
    config = _config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0006")
    catalog.metadata.create_all(engine)
    with engine.begin() as connection:
        connection.execute(sa.insert(catalog.kb_meta).values(key="generation", value="3"))
        connection.execute(sa.text("INSERT INTO slack_events (event_id, received_at) VALUES ('Ev1', 1.0)"))
    upgrade(engine)
    names = set(sa.inspect(engine).get_table_names())
    old = {table.name for table in catalog.metadata.sorted_tables}
    if state_db.schema is None:
        assert not names & old
    else:
        assert old <= names
        with engine.connect() as connection:
            assert connection.execute(sa.select(catalog.kb_meta.c.value)).scalar() == "3"
    with engine.connect() as connection:
        assert connection.execute(sa.text("SELECT count(*) FROM slack_events")).scalar() == 1


def test_alert_incidents_from_before_episodes_are_their_first_episode(state_db: StateDatabase) -> None:
    """Migration 0008 keeps alert incidents and notifications: an old incident is its alert's first
    episode (a re-fire opens the second), and old notifications still count in "noisiest alerts"."""
    engine = state_db.engine()
    config = _config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0007")
        connection.execute(
            sa.text(
                "INSERT INTO incidents (source, key, title, status, started_at, resolved_at) "
                "VALUES ('alertmanager', 'alert:abc', 'DiskFull', 'resolved', 1000.0, 1600.0)"
            )
        )
        for fingerprint, received_at in (("abc", 1000.0), ("def", 1000.0), ("abc", 1300.0)):
            connection.execute(
                sa.text(
                    "INSERT INTO alert_events (alertname, fingerprint, status, received_at) "
                    "VALUES ('DiskFull', :fingerprint, 'firing', :received_at)"
                ),
                {"fingerprint": fingerprint, "received_at": received_at},
            )
    upgrade(engine)
    store = incidents.IncidentStore(engine)
    update = incidents.AlertUpdate(
        "abc", "DiskFull", "firing", "DiskFull", None, None, 5000.0, None, None, None
    )
    store.record_alerts([update], 5000.0)
    found = store.in_period(0, float("inf"))
    assert [(i.episode, i.status, i.started_at) for i in found] == [
        (1, "resolved", 1000.0),
        (2, "open", 5000.0),
    ]
    assert store.noisiest(0, float("inf")) == ([incidents.NoisyAlert("DiskFull", 3, 2)], 1)


def test_a_brand_new_data_dir_is_migrated_once_by_the_command_that_opens_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """No store migrates itself: the commands reading records open them through wiring, which migrates a
    brand-new data dir at start-up, and each finds its tables."""
    from bot.cli import main

    monkeypatch.setenv("STEWARD_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("STEWARD_DIGESTS_FILE", str(ROOT / "digests.yaml"))
    monkeypatch.delenv("STEWARD_DATABASE_URL", raising=False)
    for argv in (
        ["digest", "run", "incidents", "--at", "2026-11-24"],
        ["digest", "run", "governance", "--at", "2026-11-24"],
        ["audit", "verify"],
        ["audit", "export"],
    ):
        assert main(argv) == 0, argv
    out = capsys.readouterr().out
    assert "incidents (2026-11-23 to 2026-11-24): all quiet" in out
    assert "governance (2026-11-17 to 2026-11-24): all quiet" in out
    engine = create_engine(f"sqlite:///{tmp_path / 'data' / 'steward.db'}")
    try:
        assert {table.name for table in TABLES} <= set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()
