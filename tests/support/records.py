"""A records database ready for the stores: tests that build a store on an engine of their own migrate
it here, as `steward` does once at start-up (bot/wiring.py); no store migrates on its own.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from bot.digests.reports import ReportRecords
from bot.incidents.records import IncidentStore
from bot.store.action_requests import ActionRequestStore
from bot.store.conversations import ConversationStore
from bot.store.engine import create_engine
from bot.store.schema import upgrade


def migrated(engine: Engine) -> Engine:
    """`engine`, its database brought to the newest schema (once per engine, as at start-up)."""
    upgrade(engine)
    return engine


def migrated_engine(url_or_path: str | Path) -> Engine:
    """A new engine on a records database (a URL, or a SQLite file's path), migrated to the newest schema."""
    url = str(url_or_path)
    if "://" not in url:
        url = f"sqlite:///{url}"
    return migrated(create_engine(url))


def report_records(engine: Engine) -> ReportRecords:
    """The repositories the governance and incident digests read, over `engine` (wiring's, in a test)."""
    return ReportRecords(ActionRequestStore(engine), ConversationStore(engine), IncidentStore(engine))


@pytest.fixture
def records_engine(tmp_path: Path) -> Iterator[Engine]:
    """A migrated SQLite records database in the test's directory (import this fixture explicitly)."""
    engine = migrated_engine(tmp_path / "records.db")
    yield engine
    engine.dispose()
