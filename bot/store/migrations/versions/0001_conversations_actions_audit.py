"""Conversation state, action requests and approvals, and the audit chain.

Databases that already hold these tables (created before migrations existed) keep them: each table
is created only when missing.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None


def _missing(name: str) -> bool:
    return not sa.inspect(op.get_bind()).has_table(name)


def upgrade() -> None:
    if _missing("slack_events"):
        op.create_table(
            "slack_events",
            sa.Column("event_id", sa.String(128), primary_key=True),
            sa.Column("received_at", sa.Float, nullable=False, index=True),
        )
    if _missing("slack_threads"):
        op.create_table(
            "slack_threads",
            sa.Column("channel", sa.String(32), primary_key=True),
            sa.Column("thread_ts", sa.String(32), primary_key=True),
            sa.Column("answered_at", sa.Float, nullable=False),
        )
    if _missing("slack_channels"):
        op.create_table(
            "slack_channels",
            sa.Column("channel", sa.String(32), primary_key=True),
            sa.Column("sticky", sa.Boolean, nullable=False),
            sa.Column("changed_by", sa.String(32), nullable=False),
            sa.Column("changed_at", sa.Float, nullable=False),
        )
    if _missing("answer_log"):
        op.create_table(
            "answer_log",
            sa.Column("answer_id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("channel", sa.String(32), nullable=False),
            sa.Column("thread_ts", sa.String(32), nullable=True),
            sa.Column("asker", sa.String(32), nullable=False),
            sa.Column("question", sa.Text, nullable=False),
            sa.Column("cited", sa.Text, nullable=False),
            sa.Column("confidence", sa.Float, nullable=False),
            sa.Column("abstained", sa.Boolean, nullable=False),
            sa.Column("created_at", sa.Float, nullable=False, index=True),
        )
    if _missing("feedback"):
        op.create_table(
            "feedback",
            sa.Column("feedback_id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("answer_id", sa.Integer, nullable=False),
            sa.Column("user_id", sa.String(32), nullable=False),
            sa.Column("helpful", sa.Boolean, nullable=False),
            sa.Column("reason", sa.Text, nullable=True),
            sa.Column("created_at", sa.Float, nullable=False, index=True),
            sa.UniqueConstraint("answer_id", "user_id", name="feedback_one_per_person"),
        )
    if _missing("knowledge_gaps"):
        op.create_table(
            "knowledge_gaps",
            sa.Column("gap_id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("question", sa.Text, nullable=False),
            sa.Column("channel", sa.String(32), nullable=False),
            sa.Column("thread_ts", sa.String(32), nullable=False),
            sa.Column("asker", sa.String(32), nullable=False),
            sa.Column("owners", sa.Text, nullable=False),
            sa.Column("source", sa.String(16), nullable=False),
            sa.Column("status", sa.String(16), nullable=False, index=True),
            sa.Column("created_at", sa.Float, nullable=False),
            sa.Column("routed_by", sa.String(32), nullable=True),
            sa.Column("routed_at", sa.Float, nullable=True),
            sa.Column("expert_channel", sa.String(32), nullable=True),
            sa.Column("expert_ts", sa.String(32), nullable=True),
            sa.Column("expert", sa.String(32), nullable=True),
            sa.Column("draft_path", sa.Text, nullable=True),
            sa.Column("drafted_at", sa.Float, nullable=True),
            sa.Column("closed_by_path", sa.Text, nullable=True),
            sa.Column("closed_at", sa.Float, nullable=True),
        )
    if _missing("action_requests"):
        op.create_table(
            "action_requests",
            sa.Column("request_id", sa.String(36), primary_key=True),
            sa.Column("action", sa.String(64), nullable=False),
            sa.Column("params", sa.Text, nullable=False),
            sa.Column("requester", sa.String(32), nullable=False),
            sa.Column("channel", sa.String(32), nullable=True),
            sa.Column("thread_ts", sa.String(32), nullable=True),
            sa.Column("status", sa.String(16), nullable=False, index=True),
            sa.Column("rule", sa.Text, nullable=True),
            sa.Column("reason", sa.Text, nullable=False),
            sa.Column("policy_version", sa.String(64), nullable=False),
            sa.Column("fingerprint", sa.String(64), nullable=False),
            sa.Column("required_count", sa.Integer, nullable=False),
            sa.Column("required_groups", sa.Text, nullable=False),
            sa.Column("deadline", sa.Float, nullable=True),
            sa.Column("created_at", sa.Float, nullable=False),
            sa.Column("updated_at", sa.Float, nullable=False),
            sa.Column("claimed_at", sa.Float, nullable=True),
            sa.Column("result_summary", sa.Text, nullable=True),
            sa.Column("result_output", sa.Text, nullable=True),
            sa.Column("duration_seconds", sa.Float, nullable=True),
        )
    if _missing("action_approvals"):
        op.create_table(
            "action_approvals",
            sa.Column("approval_id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("request_id", sa.String(36), nullable=False, index=True),
            sa.Column("approver", sa.String(32), nullable=False),
            sa.Column("fingerprint", sa.String(64), nullable=False),
            sa.Column("decided_at", sa.Float, nullable=False),
            sa.Column("revoked_at", sa.Float, nullable=True),
            sa.UniqueConstraint("request_id", "approver", "fingerprint", name="one_approval_per_person"),
        )
    if _missing("audit_log"):
        op.create_table(
            "audit_log",
            sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
            sa.Column("at", sa.Float, nullable=False),
            sa.Column("kind", sa.String(32), nullable=False),
            sa.Column("request_id", sa.String(36), nullable=True, index=True),
            sa.Column("actor", sa.String(64), nullable=True),
            sa.Column("data", sa.Text, nullable=False),
            sa.Column("prev_hash", sa.String(64), nullable=False),
            sa.Column("hash", sa.String(64), nullable=False),
        )
    if _missing("audit_head"):
        head = op.create_table(
            "audit_head",
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
            sa.Column("seq", sa.Integer, nullable=False),
            sa.Column("hash", sa.String(64), nullable=False),
        )
        op.bulk_insert(head, [{"id": 1, "seq": 0, "hash": "0" * 64}])


def downgrade() -> None:
    for name in (
        "audit_head",
        "audit_log",
        "action_approvals",
        "action_requests",
        "knowledge_gaps",
        "feedback",
        "answer_log",
        "slack_channels",
        "slack_threads",
        "slack_events",
    ):
        op.drop_table(name)
