"""AI agents: their tokens, and what an agent's request carries.

- `agents`: one row per agent (`steward agents add`): its owner, scopes, the actions it may request,
  its limits, and the SHA-256 of its token (the token itself is shown once and never stored).
  A revoked agent keeps its row (`revoked_at`), so the audit log's names stay resolvable.
- `action_requests`: the requester id widens to 64 characters (`agent:NAME`); an agent's request
  records the agent, its token id, its owner at the time, the reason it gave, its idempotency key
  (unique per agent: the same key is the same request, on every replica), its callback and the
  callback's delivery state, the card's link, and a reviewer's reason for a rejection.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"


def upgrade() -> None:
    op.create_table(
        "agents",
        sa.Column("name", sa.String(40), primary_key=True),
        sa.Column("token_id", sa.String(16), nullable=False, unique=True),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("owner", sa.String(32), nullable=False),
        sa.Column("scopes", sa.Text, nullable=False),  # JSON list
        sa.Column("actions", sa.Text, nullable=True),  # JSON list; NULL: every catalog action
        sa.Column("max_pending", sa.Integer, nullable=False),
        sa.Column("per_minute", sa.Integer, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("created_by", sa.String(64), nullable=True),
        sa.Column("revoked_at", sa.Float, nullable=True),
    )
    with op.batch_alter_table("action_requests") as batch:
        batch.alter_column("requester", type_=sa.String(64), existing_type=sa.String(32))
        batch.add_column(sa.Column("agent", sa.String(40), nullable=True))
        batch.add_column(sa.Column("agent_token", sa.String(16), nullable=True))
        batch.add_column(sa.Column("agent_owner", sa.String(32), nullable=True))
        batch.add_column(sa.Column("justification", sa.Text, nullable=True))
        batch.add_column(sa.Column("idempotency_key", sa.String(128), nullable=True))
        batch.add_column(sa.Column("callback_url", sa.Text, nullable=True))
        batch.add_column(sa.Column("callback_state", sa.String(16), nullable=True))
        batch.add_column(sa.Column("callback_attempts", sa.Integer, nullable=True))
        batch.add_column(sa.Column("callback_due_at", sa.Float, nullable=True))
        batch.add_column(sa.Column("card_url", sa.Text, nullable=True))
        batch.add_column(sa.Column("rejection_reason", sa.Text, nullable=True))
        batch.create_unique_constraint("one_request_per_idempotency_key", ["agent", "idempotency_key"])
    op.create_index("ix_action_requests_agent_created", "action_requests", ["agent", "created_at"])
    op.create_index(
        "ix_action_requests_callback_due", "action_requests", ["callback_state", "callback_due_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_action_requests_callback_due", "action_requests")
    op.drop_index("ix_action_requests_agent_created", "action_requests")
    with op.batch_alter_table("action_requests") as batch:
        batch.drop_constraint("one_request_per_idempotency_key", type_="unique")
        for column in (
            "rejection_reason",
            "card_url",
            "callback_due_at",
            "callback_attempts",
            "callback_state",
            "callback_url",
            "idempotency_key",
            "justification",
            "agent_owner",
            "agent_token",
            "agent",
        ):
            batch.drop_column(column)
        batch.alter_column("requester", type_=sa.String(32), existing_type=sa.String(64))
    op.drop_table("agents")
