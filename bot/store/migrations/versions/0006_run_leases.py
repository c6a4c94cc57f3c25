"""Run leases: the process running an action renews `heartbeat_at`; a run whose lease lapsed was
interrupted (its process died), while a long run of a live process is never taken for one.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"


def upgrade() -> None:
    present = {column["name"] for column in sa.inspect(op.get_bind()).get_columns("action_requests")}
    if "heartbeat_at" not in present:
        with op.batch_alter_table("action_requests") as batch:
            batch.add_column(sa.Column("heartbeat_at", sa.Float, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("action_requests") as batch:
        batch.drop_column("heartbeat_at")
