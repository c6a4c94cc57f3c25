"""Schema migrations (Alembic) for Steward's records: conversations, actions and the audit log, digests,
incidents. Records are never derived: no command deletes, truncates or recreates their database.

The knowledge catalog's tables are not migrated: they are a derived index in a store of their own
(bot/store/catalog.py) that `steward ingest --rebuild` recreates, and their layout follows the ingest
pipeline's version.
"""

from __future__ import annotations

import logging
import threading
import weakref
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DatabaseError

from bot.errors import Unavailable
from bot.store.engine import damaged_file, sqlite_file

MIGRATIONS = Path(__file__).parent / "migrations"
_done: weakref.WeakSet[Engine] = weakref.WeakSet()
_lock = threading.Lock()


class StateStoreError(Unavailable):
    """The records database cannot be used; the message says what to check."""


class RecordsDamagedError(StateStoreError):
    """The records database's file is damaged: it must be restored, never recreated."""


def damaged_records(engine: Engine, exc: DatabaseError) -> RecordsDamagedError | None:
    """The error to report when `exc` says the records database's SQLite file is damaged (else None)."""
    file = sqlite_file(engine.url.render_as_string(hide_password=False))
    if file is None or not damaged_file(exc):
        return None
    reason = str(exc.orig).strip()
    return RecordsDamagedError(
        f"the records database {file} is damaged ({reason}). It holds the action requests, approvals, "
        "the audit log and the conversations, so Steward leaves it as it is and no command rebuilds it "
        "(`steward ingest --rebuild` rebuilds only the knowledge index). Stop Steward, then restore the "
        f"file from your latest backup, or salvage what is readable with `sqlite3 {file} .recover | "
        f"sqlite3 {file}.recovered` and put the recovered file in its place; `steward audit verify` "
        "then checks the audit log (docs/operations.md: Where Steward keeps its state)."
    )


def upgrade(engine: Engine) -> None:
    """Bring the database to the newest schema (once per process and database; safe across replicas).

    `steward` calls it once, at start-up, when bot/wiring.py opens the records; no store calls it."""
    with _lock:
        if engine in _done:
            return
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        # Alembic's own INFO lines ("Running upgrade …") would go to the root logger on every start.
        logging.getLogger("alembic").setLevel(logging.WARNING)
        try:
            with engine.begin() as connection:
                config.attributes["connection"] = connection
                command.upgrade(config, "head")
        except DatabaseError as exc:
            damaged = damaged_records(engine, exc)
            if damaged is not None:
                raise damaged from None
            where = engine.url.render_as_string(hide_password=True)
            raise StateStoreError(
                f"cannot create or upgrade Steward's tables in {where} ({str(exc.orig).strip()}); "
                "check STEWARD_DATABASE_URL and the database user's rights"
            ) from None
        _done.add(engine)
