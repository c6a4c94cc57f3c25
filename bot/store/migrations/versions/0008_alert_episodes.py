"""Alert episodes and what Alertmanager's notifications lost.

- `incidents.fingerprint` and `incidents.episode`: an alert that fires again after it resolved is a new
  incident, its next episode; an incident is found by its alert's fingerprint, and its `key` (unique)
  names the episode. Existing alert incidents are their alert's first episode.
- `alert_events.notification`: which notification each alert came in, so "noisiest alerts" counts
  notifications. Existing rows are grouped by their arrival time (one notification's alerts share it).
- `alert_gaps`: alerts Alertmanager left out of a notification (`truncatedAlerts`), alerts Steward could
  not read, and notifications refused whole, so the incident digest says what it cannot show.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"


def upgrade() -> None:
    with op.batch_alter_table("incidents") as batch:
        batch.add_column(sa.Column("fingerprint", sa.String(128), nullable=True))
        batch.add_column(sa.Column("episode", sa.Integer, nullable=True))
    op.create_index("ix_incidents_fingerprint", "incidents", ["fingerprint"])
    # "alert:" is six characters: the fingerprint follows it in keys written before episodes
    op.execute("UPDATE incidents SET fingerprint = SUBSTR(key, 7), episode = 1 WHERE source = 'alertmanager'")
    with op.batch_alter_table("alert_events") as batch:
        batch.add_column(sa.Column("notification", sa.String(64), nullable=True))
    op.execute(
        "UPDATE alert_events SET notification = 'received-' || CAST(received_at AS VARCHAR(32)) "
        "WHERE notification IS NULL"
    )
    op.create_table(
        "alert_gaps",
        sa.Column("gap_id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("received_at", sa.Float, nullable=False, index=True),
        sa.Column("reason", sa.String(16), nullable=False),
        sa.Column("alerts", sa.BigInteger, nullable=True),
        sa.Column("detail", sa.Text, nullable=True),
    )


def downgrade() -> None:
    op.drop_table("alert_gaps")
    with op.batch_alter_table("alert_events") as batch:
        batch.drop_column("notification")
    op.drop_index("ix_incidents_fingerprint", "incidents")
    with op.batch_alter_table("incidents") as batch:
        batch.drop_column("episode")
        batch.drop_column("fingerprint")
