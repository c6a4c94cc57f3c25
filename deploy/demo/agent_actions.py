"""The AI-agent demo: a LangGraph agent asks Steward for a production rollback and waits for people.

    .venv/bin/python -m deploy.demo.agent_actions --data-dir .steward-demo

Run after deploy.demo.guarded_actions (same data dir: its MLflow registry has fraud-scorer on version
2). Steward serves on loopback with its agent API, its Web API pointed at the local fake Slack. An
agent `release-bot` gets a token (`steward agents add`); a LangGraph agent, with a scripted chat model
in place of an LLM, checks the runbook and calls the `rollback-model` tool. The policy wants two
approvers, so the card appears in Slack naming the agent, its owner and its reason, and the tool call
waits; two people approve, the rollback runs once, and the agent receives the result.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

from bot.agents.client import StewardClient
from bot.config import Settings
from bot.slack.payloads import ACTION_APPROVE
from bot.wiring import Services
from deploy.demo.guarded_actions import (
    FIRST,
    SECOND,
    _production,
    _registry,
    _show,
    _status_line,
    _text,
    finish,
)
from docs.examples.langgraph_agent import ScriptedChatModel, build_agent, run
from tests.slackbot import CHANNEL, RunningBot, running_bot

ROOT = Path(__file__).resolve().parents[2]
OWNER = "U0000MLP03"  # ml-platform's on-call owns the agent (policies/00-groups.yaml)
ROLLBACK = {
    "model": "fraud-scorer",
    "version": 1,
    "env": "prod",
    "reason": "v2 doubled the shadow error rate since 09:00; the rollback runbook says go back one version",
}


def _card(bot: RunningBot, deadline: float) -> dict[str, Any] | None:
    while time.monotonic() < deadline:
        cards = [m for m in bot.bot_posts(CHANNEL) if "Approval needed" in str(m.get("text"))]
        if cards:
            return cards[-1]
        time.sleep(0.1)
    return None


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-dir", type=Path, default=ROOT / ".steward-demo")
    args = parser.parse_args()
    args.data_dir.mkdir(parents=True, exist_ok=True)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    os.environ["MLFLOW_TRACKING_URI"] = uri = _registry(args.data_dir, production="2")
    services = Services(
        Settings(data_dir=args.data_dir, policies_dir=ROOT / "policies", agent_channel=CHANNEL)
    )
    name = f"release-bot-{int(time.time())}"  # a fresh agent each run (names are never reused)
    agent, token = services.agent_registry.add(name, OWNER, actions=["rollback-model"])
    print(f"$ steward agents add {name} --owner {OWNER} --actions rollback-model")
    print(f"  agent {name} (token id {agent.token_id}); its token: stw_{agent.token_id}_… (shown once)\n")
    print(f"MLflow registry: fraud-scorer `production` -> version {_production(uri)}\n")
    with running_bot(services, agents=True) as bot, StewardClient(bot.base, token) as steward:
        model = ScriptedChatModel(
            plan=[
                ("ask_knowledge_base", {"question": "How do we roll back a production model?"}),
                ("rollback-model", ROLLBACK),
            ]
        )
        agent_graph = build_agent(steward, model, timeout=120)
        print("The agent (LangGraph, a scripted model in place of an LLM) is asked to roll back:\n")
        finished: list[bool] = []
        worker = threading.Thread(
            target=lambda: (
                run(agent_graph, "fraud-scorer v2 is failing in production"),
                finished.append(True),
            ),
            daemon=True,
        )
        worker.start()
        card = _card(bot, time.monotonic() + 60)
        if card is None:
            print("no approval card after 60 s", file=sys.stderr)
            return 1
        print("\n#general in the local Slack workspace:")
        _show("Steward", _text(card))
        for approver in (FIRST, SECOND):
            print(f"\n<@{approver}> (ml-platform) clicks Approve:")
            bot.click(card, ACTION_APPROVE, user=approver)
            bot.settle()
            card = next(m for m in bot.bot_posts(CHANNEL) if m["ts"] == card["ts"])
            _show("card", _status_line(card))
        print()
        worker.join(timeout=60)
        if not finished:
            print("the agent did not finish within 60 s", file=sys.stderr)
            return 1
    return finish(services, uri, expected="1")


if __name__ == "__main__":
    sys.exit(main())
