"""Schema migrations (Alembic) for Steward's durable state: conversations, actions and the audit log.

The knowledge catalog's tables are not migrated: they are a derived index that `steward ingest
--rebuild` recreates, and their layout follows the ingest pipeline's version.
"""

from __future__ import annotations

import logging
import threading
import weakref
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Engine

MIGRATIONS = Path(__file__).parent / "migrations"
_done: weakref.WeakSet[Engine] = weakref.WeakSet()
_lock = threading.Lock()


def upgrade(engine: Engine) -> None:
    """Bring the database to the newest schema (once per process and database; safe across replicas)."""
    with _lock:
        if engine in _done:
            return
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        # Alembic's own INFO lines ("Running upgrade …") would go to the root logger on every start.
        logging.getLogger("alembic").setLevel(logging.WARNING)
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
        _done.add(engine)
