"""Approve-and-execute clicks from another process: imported by a spawned child in the concurrency test."""

from __future__ import annotations

import os
import random
from pathlib import Path

import sqlalchemy as sa

from bot.actions.approvals import ApprovalService
from bot.actions.policy.gate import PolicyFolder
from bot.actions.runner import execute_once
from bot.store.action_requests import ActionRequestStore
from bot.store.engine import create_engine
from tests.audit_support import shared_key
from tests.support.clock import TUESDAY_NOON, RunningClock


def click_storm(
    url: str,
    schema: str | None,
    policies: str,
    request_ids: list[str],
    approvers: list[str],
    env: dict[str, str],
    seed: int,
    start: float = TUESDAY_NOON,
) -> int:
    """Approve every request a few times as random approvers, then try to run it; returns the runs won.

    The policy reads a clock that starts at `start` (never the machine's weekday: the weekend freeze)."""
    os.environ.update(env)
    engine = shared_key(
        create_engine(url)
        if schema is None
        else sa.create_engine(url, connect_args={"options": f"-csearch_path={schema}"})
    )
    folder = PolicyFolder(Path(policies))
    service = ApprovalService(ActionRequestStore(engine), folder, clock=RunningClock(start))
    rng = random.Random(seed)
    won = 0
    for request_id in rng.sample(request_ids, len(request_ids)):
        for _click in range(rng.randint(2, 4)):
            service.approve(request_id, rng.choice(approvers))
            if execute_once(service, folder(), request_id) is not None:
                won += 1
    engine.dispose()
    return won


def claim_and_run(
    url: str, policies: str, request_id: str, env: dict[str, str], start: float = TUESDAY_NOON
) -> None:
    """Claim and run one request (the kill test kills this process while the executor waits); the
    policy reads a clock that starts at `start`."""
    os.environ.update(env)
    engine = shared_key(create_engine(url))
    folder = PolicyFolder(Path(policies))
    execute_once(
        ApprovalService(ActionRequestStore(engine), folder, clock=RunningClock(start)), folder(), request_id
    )


def slow_action(params: dict[str, object], request_id: str) -> str:
    """A python-executor entry point that takes `seconds` to finish (the timeout test)."""
    import time

    time.sleep(float(str(params.get("seconds", 5))))
    return f"done {request_id}"
