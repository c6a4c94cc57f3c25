"""The guarded-actions demo: a production rollback requested, refused, approved and run, in a local Slack.

    .venv/bin/python -m deploy.demo.guarded_actions --data-dir .steward-demo

Steward's real Slack app serves on loopback (real HTTP, signed requests) with its Web API pointed at
the local fake Slack workspace from the tests, the starter policies, the state database in the data
dir, and a real MLflow registry there (fraud-scorer versions 1 to 3, `production` on 3). An SRE asks
to roll production back to version 2; the policy wants two approvers from ml-platform or SRE. The
thread is printed as it happens, then the registry's alias and `steward audit verify`.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

from bot.config import Settings
from bot.slack.mrkdwn import to_plain
from bot.slack.payloads import ACTION_APPROVE
from bot.store.action_requests import verify_chain
from bot.wiring import Services
from tests.slackbot import CHANNEL, RunningBot, running_bot

ROOT = Path(__file__).resolve().parents[2]

REQUESTER, FIRST, SECOND = "U0000SRE01", "U0000MLP01", "U0000MLP02"  # from policies/00-groups.yaml
REQUEST = "run rollback-model model=fraud-scorer version=2 env=prod"


def _registry(data_dir: Path, production: str = "3") -> str:
    """A real SQLite-backed MLflow registry: fraud-scorer versions 1-3, `production` on `production`."""
    from mlflow import MlflowClient

    logging.getLogger("mlflow").setLevel(logging.WARNING)  # after the import, which sets its own level
    uri = f"sqlite:///{(data_dir / 'mlflow.db').resolve()}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    if not client.search_registered_models(filter_string="name = 'fraud-scorer'"):
        client.create_registered_model("fraud-scorer")
        for number in (1, 2, 3):
            client.create_model_version("fraud-scorer", source=str(data_dir / "models" / str(number)))
    client.set_registered_model_alias("fraud-scorer", "production", production)
    return uri


def _production(uri: str) -> str:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    return str(client.get_model_version_by_alias("fraud-scorer", "production").version)


def _text(message: dict[str, Any]) -> str:
    """What a person would read: the blocks' text, without the buttons."""
    parts = []
    for block in message.get("blocks") or []:
        if block.get("type") in ("section", "header"):
            parts.append(str((block.get("text") or {}).get("text") or ""))
            fields = [
                str(field.get("text") or "").replace("\n", ": ", 1) for field in block.get("fields") or []
            ]
            parts.extend(fields)
        elif block.get("type") == "context":
            parts.extend(str(element.get("text") or "") for element in block.get("elements") or [])
    text = to_plain("\n".join(parts) or str(message.get("text") or ""))
    return re.sub(r"<!date\^\d+\^[^|>]*\|([^>]*)>", r"\1", text).replace("```", "")


def _show(who: str, text: str) -> None:
    lines = text.strip().splitlines() or [""]
    print(f"  {who}: {lines[0]}")
    for line in lines[1:]:
        print(f"  {' ' * len(who)}  {line}")


def _card(bot: RunningBot, thread: str) -> dict[str, Any]:
    return next(m for m in bot.bot_posts(CHANNEL, thread) if "Approval needed" in str(m.get("text")))


def _whisper_to(bot: RunningBot, user: str) -> str:
    return str([c.args for c in bot.slack.calls("chat.postEphemeral") if c.args["user"] == user][-1]["text"])


def _status_line(card: dict[str, Any]) -> str:
    lines = _text(card).splitlines()
    return "\n".join(line for line in lines if line.startswith(("Approvals:", ":")) and "needed" not in line)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-dir", type=Path, default=ROOT / ".steward-demo")
    args = parser.parse_args()
    args.data_dir.mkdir(parents=True, exist_ok=True)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    os.environ["MLFLOW_TRACKING_URI"] = uri = _registry(args.data_dir)
    services = Services(Settings(data_dir=args.data_dir, policies_dir=ROOT / "policies"))
    print(f"MLflow registry {uri}: fraud-scorer `production` -> version {_production(uri)}\n")
    with running_bot(services) as bot:
        bot.slack.add_user(REQUESTER, "sam.sre")
        print(f"#general in a local Slack workspace. <@{REQUESTER}> types:  /steward {REQUEST}\n")
        assert bot.command(REQUEST, user=REQUESTER).status == 200
        bot.settle()
        thread = str(bot.bot_posts(CHANNEL)[-1]["ts"])
        _show("Steward", _text(bot.bot_posts(CHANNEL)[-1]))
        _show("Steward", _text(_card(bot, thread)))
        print(f"\n<@{REQUESTER}> clicks Approve on their own request:")
        bot.click(_card(bot, thread), ACTION_APPROVE, user=REQUESTER)
        bot.settle()
        _show("Steward (only they see it)", _whisper_to(bot, REQUESTER))
        for approver in (FIRST, SECOND):
            print(f"\n<@{approver}> (ml-platform) clicks Approve:")
            bot.click(_card(bot, thread), ACTION_APPROVE, user=approver)
            bot.settle()
            _show("card", _status_line(_card(bot, thread)))
        deadline = time.monotonic() + 30
        while len(bot.bot_posts(CHANNEL, thread)) < 2:  # the card, then the result
            if time.monotonic() > deadline:
                print("no result after 30 s", file=sys.stderr)
                return 1
            time.sleep(0.1)
        print()
        _show("Steward", _text(bot.bot_posts(CHANNEL, thread)[-1]))
    return finish(services, uri, expected="2")


def finish(services: Services, uri: str, expected: str) -> int:
    """Show the registry's alias and `steward audit verify`; 0 when the alias is `expected` and the
    log is intact."""
    print(f"\nMLflow registry: fraud-scorer `production` -> version {_production(uri)}")
    with services.records.connect() as connection:
        checked, problems = verify_chain(connection)
    print(f"$ steward audit verify\n  {checked} entries, {problems if problems else 'intact'}")
    services.close()
    return 0 if _production(uri) == expected and not problems else 1


if __name__ == "__main__":
    sys.exit(main())
