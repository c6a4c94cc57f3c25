"""Digest runs (one row per digest and scheduled fire time, claimed once across replicas) and the drift
results of posted digests (their trend).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    op.create_table(
        "digest_runs",
        sa.Column("digest", sa.String(64), primary_key=True),
        sa.Column("fire_time", sa.String(32), primary_key=True),
        sa.Column("claimed_at", sa.Float, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("detail", sa.Text, nullable=True),
    )

    op.create_table(
        "drift_results",
        sa.Column("digest", sa.String(64), primary_key=True),
        sa.Column("model", sa.String(128), primary_key=True),
        sa.Column("day", sa.String(10), primary_key=True),
        sa.Column("feature", sa.String(128), primary_key=True),
        sa.Column("method", sa.String(16), nullable=False),
        sa.Column("score", sa.Float, nullable=False),
        sa.Column("level", sa.String(8), nullable=False),
        sa.Column("missing_current", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("drift_results")
    op.drop_table("digest_runs")
