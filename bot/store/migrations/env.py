"""Alembic environment: runs on the connection Steward hands over (see bot/store/schema.py)."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

connection = context.config.attributes["connection"]
if connection.dialect.name == "postgresql":
    # Replicas starting together: one migrates, the others wait here and then find nothing to do.
    connection.execute(sa.text("SELECT pg_advisory_xact_lock(7427866)"))
context.configure(connection=connection, target_metadata=None, version_table="steward_schema_version")
with context.begin_transaction():
    context.run_migrations()
