"""The guarded-actions part of `make demo` works from an empty data dir (and again on the same one)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT


def test_the_actions_demo_rolls_production_back_with_two_approvals(tmp_path: Path) -> None:
    """The requester is refused, two approvers approve, the registry's alias moves, the audit verifies."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "deploy.demo.guarded_actions", "--data-dir", str(tmp_path)]
    for _run in range(2):
        done = subprocess.run(
            command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=180, check=False
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert "you are the requester" in done.stdout
        assert "fraud-scorer `production` -> version 2" in done.stdout
        assert "intact" in done.stdout


def test_the_agent_demo_waits_for_two_approvals_and_hands_the_agent_the_result(tmp_path: Path) -> None:
    """A LangGraph agent's rollback request shows its card (agent, owner, reason), waits for two people,
    runs once, and the agent receives the result; the audit verifies."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "deploy.demo.agent_actions", "--data-dir", str(tmp_path)]
    done = subprocess.run(
        command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=180, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Requested by: agent release-bot-" in done.stdout and "(owner <@U0000MLP03>)" in done.stdout
    assert "rollback-model [success]: fraud-scorer alias production -> version 1 (was 2)" in done.stdout
    assert "fraud-scorer `production` -> version 1" in done.stdout and "intact" in done.stdout
