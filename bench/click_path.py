"""The approval click path: which of Steward's files one deciding approval click passes through.

Drives one approval click through the real Bolt app (served on loopback by waitress, Web API pointed at
the fake Slack of `tests/support/slack`), on a private copy of the starter policies in which a
production retrain needs two ml-platform approvers. The first approval is given untraced; the second,
the deciding one, is traced: Steward counts it, runs the action (the retraining webhook, a loopback
receiver), posts the result and redraws the card.

What is counted. A profile function (`sys.setprofile`, installed with `threading.setprofile` in every
thread the bot starts, recording only in the thread that handles the click) sees every Python call and
return while the listener `on_approve` runs, from its entry to its return (the card redraw is inside
it). Only frames of functions defined in `bot/` and
`ingest/` files are kept, and only those at most DEPTH such frames below the listener (the listener is
depth 0; library frames in between do not add depth), so library internals and small helpers deep down
do not dominate. The current file is the listener's file at first; a call of a kept frame makes its
file current, and its return makes the file of the kept frame it returns to current again. Then:

- steps: how many times the current file changes along that call/return sequence;
- returns to a file already visited: how many of those changes land on a file that was current before
  (by a call or by a return);
- calls out of the Slack layer: how many of those changes go from a `bot/slack/` file to another file
  (each a call the Slack layer makes and waits for; "parse, one service call, render" makes few);
- files: the current file at each step, in order.

Run from the repository root: `.venv/bin/python -m bench.click_path [--depth N] [--json]`. To measure an
older commit, check it out in a worktree and run this file there with PYTHONPATH pointing at it:
`git worktree add /tmp/before-click COMMIT && cd /tmp/before-click && PYTHONPATH=/tmp/before-click
/work/main/.venv/bin/python /work/main/bench/click_path.py`. Results are in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import bot
from bot.config import Settings
from bot.slack.payloads import ACTION_APPROVE
from bot.wiring import Services
from tests.fakes.webhook import WebhookReceiver
from tests.slackbot import CHANNEL, USER, RunningBot, blocks_text, running_bot
from tests.support.clock import TUESDAY_NOON, RunningClock
from tests.support.embedding import FakeEmbedder

ROOT = Path(bot.__file__).resolve().parents[1]  # the checkout measured (a worktree for an old commit)
PACKAGES = ("bot/", "ingest/")
LISTENER = "on_approve"
DEPTH = 2
REQUEST = "run retrain-model model=fraud-scorer env=prod"
ONE_APPROVER = "approval: {count: 1, groups: [ml-platform], within_minutes: 240}"
TWO_APPROVERS = "approval: {count: 2, groups: [ml-platform], within_minutes: 240}"
FIRST, DECIDING = "U0000MLP01", "U0000MLP02"


def _project_file(frame: FrameType) -> str | None:
    """The frame's file relative to the checkout when it is one of Steward's, else None."""
    path = frame.f_code.co_filename
    root = str(ROOT) + os.sep
    if not path.startswith(root):
        return None
    relative = path[len(root) :]
    return relative if relative.startswith(PACKAGES) else None


@dataclass
class ClickTracer:
    """Records the current-file sequence of one listener call in one thread (see the module docstring)."""

    depth: int = DEPTH
    armed: bool = False  # set just before the traced click: threads must get the tracer when they start
    thread: int | None = None
    stack: list[tuple[FrameType, str]] = field(default_factory=list)  # kept frames, listener first
    path: list[str] = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)

    def __call__(self, frame: FrameType, event: str, arg: Any) -> None:
        if not self.armed or event not in ("call", "return") or self.done.is_set():
            return
        if self.thread is None:
            if event == "call" and frame.f_code.co_name == LISTENER and _project_file(frame):
                self.thread = threading.get_ident()
                self.stack.append((frame, str(_project_file(frame))))
                self.path.append(self.stack[0][1])
            return
        if threading.get_ident() != self.thread:
            return
        if event == "call":
            name = _project_file(frame)
            if name is not None and len(self.stack) <= self.depth:
                self.stack.append((frame, name))
                self._visit(name)
            return
        if self.stack and self.stack[-1][0] is frame:
            self.stack.pop()
            if not self.stack:
                self.done.set()
                return
            self._visit(self.stack[-1][1])

    def _visit(self, name: str) -> None:
        if self.path[-1] != name:
            self.path.append(name)

    def figures(self) -> dict[str, Any]:
        """Steps, returns to a visited file, and the files in order."""
        revisits = sum(1 for i, name in enumerate(self.path) if i and name in self.path[:i])
        slack = [name.startswith("bot/slack/") for name in self.path]
        calls_out = sum(1 for i in range(1, len(self.path)) if slack[i - 1] and not slack[i])
        return {
            "depth": self.depth,
            "steps": len(self.path) - 1,
            "returns_to_visited": revisits,
            "distinct_files": len(set(self.path)),
            "calls_out_of_slack": calls_out,
            "files": self.path,
        }


def _card(running: RunningBot, thread_ts: str) -> dict[str, Any]:
    cards = [m for m in running.bot_posts(CHANNEL, thread_ts) if "Approval needed" in blocks_text(m)]
    if len(cards) != 1:
        raise RuntimeError(f"expected one approval card, found {len(cards)}")
    return cards[0]


def measure(depth: int = DEPTH) -> dict[str, Any]:
    """Set up the bot, give the first approval, trace the deciding one; the figures."""
    with tempfile.TemporaryDirectory(prefix="steward-click-") as scratch, WebhookReceiver() as hook:
        work = Path(scratch)
        policies = Path(shutil.copytree(ROOT / "policies", work / "policies"))
        models = policies / "30-models.yaml"
        text = models.read_text(encoding="utf-8")
        if ONE_APPROVER not in text:
            raise RuntimeError(f"{models}: the retrain rule changed; update bench/click_path.py")
        models.write_text(text.replace(ONE_APPROVER, TWO_APPROVERS), encoding="utf-8")
        kb = work / "kb" / "runbooks"
        kb.mkdir(parents=True)
        shutil.copy(ROOT / "knowledge/runbooks/failed-retraining-pipeline.md", kb)
        os.environ["RETRAIN_WEBHOOK_URL"] = hook.url
        os.environ["ACTIONS_WEBHOOK_SECRET"] = "bench-webhook-key"  # noqa: S105 (a loopback receiver)
        settings = Settings(data_dir=work / "data", policies_dir=policies)
        services = Services(settings, clock=RunningClock(TUESDAY_NOON))
        services.override("embedder", FakeEmbedder())
        try:
            services.catalog.ensure_schema()  # start-up's migration, whichever code runs it
            services.ingestor.run([work / "kb"])
            tracer = ClickTracer(depth)
            threading.setprofile(tracer)  # every thread started from here on (the listener's workers)
            with running_bot(services) as running:
                running.command(REQUEST, user=USER)
                running.settle()
                thread_ts = str(running.bot_posts(CHANNEL)[-1]["ts"])
                running.click(_card(running, thread_ts), ACTION_APPROVE, user=FIRST)
                running.settle()
                card = _card(running, thread_ts)
                tracer.armed = True
                running.click(card, ACTION_APPROVE, user=DECIDING)
                running.settle()
                tracer.armed = False
                if not tracer.done.is_set():
                    raise RuntimeError("the approval listener was not traced to its end")
                if len(hook.requests) != 1:
                    raise RuntimeError(f"the action ran {len(hook.requests)} times, not once")
                if "Succeeded" not in blocks_text(running.message(CHANNEL, str(card["ts"]))):
                    raise RuntimeError("the card was not redrawn as succeeded")
        finally:
            threading.setprofile(None)
            services.close()
    return tracer.figures()


def main(argv: list[str] | None = None) -> None:
    """Print the click path's figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--depth", type=int, default=DEPTH, help="kept frames below the listener")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    figures = measure(args.depth)
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    print(f"checkout: {ROOT}")
    print(
        f"depth {figures['depth']}: {figures['steps']} steps, {figures['returns_to_visited']} returns to "
        f"a file already visited, {figures['distinct_files']} files, "
        f"{figures['calls_out_of_slack']} calls out of the Slack layer"
    )
    for number, name in enumerate(figures["files"]):
        print(f"  {number:3d} {name}")


if __name__ == "__main__":
    main()
