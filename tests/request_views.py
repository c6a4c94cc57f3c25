"""Action requests as approval cards and results show them, for the tests that render one without
running the approval flow."""

from __future__ import annotations

import datetime as dt
from typing import Any

from bot.actions.approvals import RequestView

# A pending production retraining: one approver from ml-platform (policies/30-models.yaml).
RETRAIN_PROD: dict[str, Any] = {
    "request_id": "r1",
    "action": "retrain-model",
    "params": {"model": "fraud-scorer", "env": "prod"},
    "requester": "UASKER",
    "channel": "CGENERAL",
    "thread_ts": "1.0",
    "status": "pending",
    "rule": "retrain-prod-one-approver",
    "reason": "Production retraining needs one approver from ml-platform.",
    "policy_version": "v1",
    "required_count": 1,
    "required_groups": ("ml-platform",),
    "deadline": dt.datetime(2026, 11, 24, 10, 0, tzinfo=dt.UTC).timestamp(),
}


def request_view(**changes: Any) -> RequestView:
    """The pending production retraining request, with `changes` to its fields."""
    return RequestView(**{**RETRAIN_PROD, **changes})
