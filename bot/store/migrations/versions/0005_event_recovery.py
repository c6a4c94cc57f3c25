"""Events a replica claimed but did not finish (it died): who claimed each, where it was, when it was
done; and the replicas' heartbeats, so that a live replica can answer what a dead one left behind.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    present = {column["name"] for column in inspector.get_columns("slack_events")}
    wanted = [
        sa.Column("owner", sa.String(96), nullable=True),
        sa.Column("channel", sa.String(32), nullable=True),
        sa.Column("message_ts", sa.String(32), nullable=True),
        sa.Column("thread_ts", sa.String(32), nullable=True),
        sa.Column("done_at", sa.Float, nullable=True),
    ]
    missing = [column for column in wanted if column.name not in present]
    if missing:  # tables made before migrations existed may have them already
        with op.batch_alter_table("slack_events") as batch:
            for column in missing:
                batch.add_column(column)
    if not inspector.has_table("steward_replicas"):
        op.create_table(
            "steward_replicas",
            sa.Column("replica", sa.String(96), primary_key=True),
            sa.Column("seen_at", sa.Float, nullable=False, index=True),
        )


def downgrade() -> None:
    op.drop_table("steward_replicas")
    with op.batch_alter_table("slack_events") as batch:
        for column in ("done_at", "thread_ts", "message_ts", "channel", "owner"):
            batch.drop_column(column)
