"""The knowledge catalog moved out of a SQLite records database: its old tables there are dropped.

The catalog (`kb_*` tables) is an index derived from the knowledge base, and now has a store of its own
(STEWARD_CATALOG_URL). Beside SQLite records it is always another file (Settings refuses the records
file), so `kb_*` tables left in a SQLite records database are the old layout's copy: dropped here, and
`steward ingest PATH...` builds the catalog once in its new place. In PostgreSQL the catalog shares the
records database by default, in these very tables: nothing is dropped there (with STEWARD_CATALOG_URL
pointing elsewhere, docs/operations.md, "Where Steward keeps its state", says how to drop them by hand).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"

# Children first (no foreign keys today, but the order a schema with them would need).
OLD_CATALOG_TABLES = ("kb_unit_vectors", "kb_chunks", "kb_documents", "kb_meta")


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        return
    present = set(sa.inspect(bind).get_table_names())
    for name in OLD_CATALOG_TABLES:
        if name in present:
            op.drop_table(name)


def downgrade() -> None:
    """Nothing to restore: an older Steward recreates its catalog tables on its next ingest."""
