"""Text from people and documents reaches Slack escaped for mrkdwn: special mentions, user and channel
mentions and links they type are shown as text, never rendered live, and `&` is escaped; an incident's
title is unescaped once (as Slack sends it) and escaped once."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.actions.approvals import ApprovalService
from bot.actions.executors.dispatch import ExecutionResult
from bot.digests.config import load_digests
from bot.digests.publishing import DigestPublisher
from bot.incidents.records import IncidentStore
from bot.slack.action_cards import result_message
from bot.slack.digests import DigestPoster
from bot.slack.pacing import ChannelPacer
from bot.slack.payloads import (
    ACTION_ASK_EXPERT,
    ACTION_NOT_HELPFUL,
    ACTION_PICK_ACTION,
    ACTION_REJECT,
    BLOCK_CHANNEL,
    BLOCK_PARAM_PREFIX,
    BLOCK_PICK_ACTION,
    BLOCK_REASON,
    BLOCK_REJECT_REASON,
    INPUT_CHANNEL,
    INPUT_PARAM,
    INPUT_REASON,
    INPUT_REJECT_REASON,
    SHORTCUT_REQUEST_ACTION,
)
from bot.slack.posting import Poster
from bot.store.action_requests import ActionRequestStore
from bot.store.digests import DigestRuns
from bot.wiring import Services
from tests.conftest import ROOT, write_tree
from tests.request_views import request_view
from tests.slackbot import CHANNEL, USER, RunningBot, blocks_text, interaction, running_bot
from tests.support.clock import SettableClock

TUESDAY = dt.datetime(2026, 11, 24, 10, 0, tzinfo=dt.UTC).timestamp()
APPROVER = "U0000MLP02"  # in ml-platform (policies/00-groups.yaml)
EXPERTS = "CEXPERTS"

# What a person types (or a document says): each markup would render live if posted as is. The
# distinctive ids tell these apart from the mentions Steward writes on purpose (`<@asker>` …).
HOSTILE = (
    "<!channel> <!here> <!everyone> <!subteam^S0HOSTILE> <@U0HOSTILE> <#C0HOSTILE> "
    "<https://evil.example/x0|runbook> AT&T"
)
LIVE = (
    "<!channel",
    "<!here",
    "<!everyone",
    "<!subteam^S0HOSTILE",
    "<@U0HOSTILE",
    "<#C0HOSTILE",
    "<https://evil.example",
    "<http://evil.example",
)
SHOWN = ("&lt;!channel&gt;", "AT&amp;T")  # the markup shown as text
# Where text is posted: messages, updates, whispers, views and response_url posts.
POSTING = (
    "chat.postMessage",
    "chat.update",
    "chat.postEphemeral",
    "views.open",
    "views.update",
    "views.push",
    "views.publish",
    "response_url",
)


def slack_escaped(text: str) -> str:
    """Text as Slack sends what a person typed in a message or a slash command."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


@pytest.fixture
def kb(small_kb: Path) -> Path:
    """The small knowledge base and the retraining runbook (retrain-model's governing runbook)."""
    shutil.copy(ROOT / "knowledge/runbooks/failed-retraining-pipeline.md", small_kb / "runbooks")
    return small_kb


@pytest.fixture
def services(make_services: Callable[..., Services], kb: Path, tmp_path: Path) -> Services:
    """Services over the knowledge base, the starter policies, an experts channel, a Tuesday clock."""
    policies = shutil.copytree(ROOT / "policies", tmp_path / "policies")
    built = make_services(policies_dir=policies, experts_channel=EXPERTS, guidance_inbox=kb / "inbox")
    built.ingestor.run([kb])
    built.override(
        "approvals",
        ApprovalService(
            ActionRequestStore(built.records), lambda: built.policy(), clock=SettableClock(TUESDAY)
        ),
    )
    return built


@pytest.fixture
def escaping_bot(services: Services) -> Iterator[RunningBot]:
    with running_bot(services) as bot:
        yield bot


def _answer(bot: RunningBot, question: str) -> dict[str, Any]:
    ts = bot.say(question)
    bot.settle()
    posts = bot.bot_posts(CHANNEL, ts)
    assert posts, "no answer posted"
    return posts[-1]


def _submit(bot: RunningBot, view: dict[str, Any], values: dict[str, Any], user: str = USER) -> None:
    assert bot.submit_view(view, values, user=user).status == 200
    bot.settle()


def _typed_command(text: str) -> Callable[[RunningBot], None]:
    """`/steward` followed by `text` as a person typed it (Slack escapes its `&`, `<` and `>`)."""

    def drive(bot: RunningBot) -> None:
        bot.command(slack_escaped(text))
        bot.settle()

    return drive


def _ask_with_slack_mentions(bot: RunningBot) -> None:
    """The same, with the command's "escape channels, users and links" on: Slack's own markup arrives."""
    sent = "<!here> <!subteam^S0HOSTILE|@team> <@U0HOSTILE|eve> <#C0HOSTILE|general>"
    bot.command(f"ask is {sent} <https://evil.example/x1|runbook> AT&amp;T current?")
    bot.settle()


def _mention(bot: RunningBot) -> None:
    _answer(bot, slack_escaped(f"is {HOSTILE} the current runbook?"))


def _document(bot: RunningBot) -> None:
    """A document whose title, owner and text are hostile, cited in an answer."""
    kb = Path(bot.services.settings.guidance_inbox).parent
    title = HOSTILE.replace('"', "")
    write_tree(
        kb,
        {
            "runbooks/hostile.md": f"""
                ---
                title: "Quarantine the hostile queue {title}"
                owner: "{title}"
                review_by: 2027-06-01
                ---
                # Quarantine the hostile queue

                To quarantine the hostile queue, pause its consumers and tell {HOSTILE} about it.
                """
        },
    )
    bot.services.ingestor.run([kb])
    _answer(bot, "how do I quarantine the hostile queue?")


def _mention_request(bot: RunningBot) -> None:
    bot.say(slack_escaped(f'retrain-model model=fraud-scorer env=prod reason="{HOSTILE}"'))
    bot.settle()


def _rejection(bot: RunningBot) -> None:
    bot.command("run retrain-model model=fraud-scorer env=prod")
    bot.settle()
    (root,) = bot.bot_posts(CHANNEL)
    card = next(m for m in bot.bot_posts(CHANNEL, root["ts"]) if "Approval needed" in blocks_text(m))
    bot.click(card, ACTION_REJECT, user=APPROVER)
    bot.settle()
    view = bot.slack.calls("views.open")[-1].args["view"]
    values = {BLOCK_REJECT_REASON: {INPUT_REJECT_REASON: {"type": "plain_text_input", "value": HOSTILE}}}
    _submit(bot, view, values, user=APPROVER)


def _feedback(bot: RunningBot) -> None:
    answer = _answer(bot, "how do I roll back a model?")
    bot.click(answer, ACTION_NOT_HELPFUL)
    bot.settle()
    view = bot.slack.calls("views.open")[-1].args["view"]
    values = {BLOCK_REASON: {INPUT_REASON: {"type": "plain_text_input", "value": HOSTILE}}}
    _submit(bot, view, values)
    # the reason is stored; the governance digest quotes it (the week up to tomorrow holds today's vote)
    digests = DigestPoster(
        DigestPublisher(
            config=lambda: load_digests(ROOT / "digests.yaml"),
            runs=DigestRuns(bot.services.records),
            catalog=lambda: bot.services.catalog,
            records=lambda: bot.services.report_records,
        ),
        Poster(ChannelPacer(50.0)),
    )
    tomorrow = dt.datetime.now(dt.UTC).date() + dt.timedelta(days=1)
    assert digests.post(bot.app.bolt.client, "governance", tomorrow)


def _expert(bot: RunningBot) -> None:
    answer = _answer(bot, slack_escaped(f"who signs the vendor lunch budget for {HOSTILE}?"))
    bot.click(answer, ACTION_ASK_EXPERT)
    bot.settle()


def _form(bot: RunningBot) -> None:
    shortcut = interaction(
        "shortcut", USER, "trigger-3", callback_id=SHORTCUT_REQUEST_ACTION, action_ts="1.0"
    )
    assert bot.interact(shortcut).status == 200
    bot.settle()
    opened = bot.slack.calls("views.open")[-1].args["view"]
    picked = {
        BLOCK_PICK_ACTION: {
            ACTION_PICK_ACTION: {"type": "static_select", "selected_option": {"value": "retrain-model"}}
        }
    }
    pick = interaction(
        "block_actions",
        USER,
        "trigger-4",
        container={"type": "view", "view_id": "V1"},
        view={**opened, "id": "V1", "hash": "h1", "state": {"values": picked}},
        actions=[
            {
                "type": "static_select",
                "action_id": ACTION_PICK_ACTION,
                "block_id": BLOCK_PICK_ACTION,
                "selected_option": {"value": "retrain-model"},
                "action_ts": "2.0",
            }
        ],
    )
    assert bot.interact(pick).status == 200
    bot.settle()
    form = bot.slack.calls("views.update")[-1].args["view"]
    values: dict[str, Any] = {
        **picked,
        BLOCK_CHANNEL: {INPUT_CHANNEL: {"type": "conversations_select", "selected_conversation": CHANNEL}},
    }
    params = {
        "model": {"type": "plain_text_input", "value": "fraud-scorer"},
        "env": {"type": "static_select", "selected_option": {"value": "prod"}},
        "reason": {"type": "plain_text_input", "value": HOSTILE},
    }
    for name, element in params.items():
        values[BLOCK_PARAM_PREFIX + name] = {INPUT_PARAM: element}
    _submit(bot, form, values)


ENTRY_POINTS: dict[str, Callable[[RunningBot], None]] = {
    "/steward ask": _typed_command(f"ask is {HOSTILE} the current runbook?"),
    "/steward ask (Slack's markup)": _ask_with_slack_mentions,
    "mention question": _mention,
    "document title, owner and text": _document,
    "/steward run reason": _typed_command(
        f'run retrain-model model=fraud-scorer env=prod reason="{HOSTILE}"'
    ),
    "/steward run unknown action": _typed_command(f"run {HOSTILE}"),
    "mention request": _mention_request,
    "/steward incident open": _typed_command(f'incident open "{HOSTILE}" sev=2 service=checkout'),
    "/steward incident open with bad fields": _typed_command(f'incident open "x" sev="{HOSTILE}" <!here>=1'),
    "rejection reason": _rejection,
    "feedback reason": _feedback,
    "ask an expert": _expert,
    "request form": _form,
}
# A question is answered, never repeated: nothing of it is posted (its markup must still never be live).
NOT_POSTED = (_mention,)


def _mrkdwn_texts(value: Any, key: str = "") -> Iterator[str]:
    """Every text Slack renders as mrkdwn in a posted payload (plain_text objects cannot render markup)."""
    if isinstance(value, str) and key in ("blocks", "view", "attachments") and value[:1] in "[{":
        yield from _mrkdwn_texts(json.loads(value), key)
    elif isinstance(value, dict):
        if value.get("type") == "plain_text":
            return
        for name, inner in value.items():
            if name == "text" and isinstance(inner, str):
                yield inner
            elif name not in ("value", "private_metadata", "initial_value"):  # never rendered
                yield from _mrkdwn_texts(inner, name)
    elif isinstance(value, list):
        for inner in value:
            yield from _mrkdwn_texts(inner, key)


def _posted(bot: RunningBot) -> list[str]:
    return [
        text for method in POSTING for call in bot.slack.calls(method) for text in _mrkdwn_texts(call.args)
    ]


@pytest.mark.parametrize("drive", ENTRY_POINTS.values(), ids=list(ENTRY_POINTS))
def test_typed_markup_is_shown_as_text_never_rendered(
    escaping_bot: RunningBot, drive: Callable[[RunningBot], None]
) -> None:
    """No posted mrkdwn holds a live mention or link from the input, nor a raw `&`; the input is shown."""
    drive(escaping_bot)
    texts = _posted(escaping_bot)
    live = [(marker, text) for text in texts for marker in LIVE if marker in text]
    assert not live, live
    raw = [text for text in texts if "AT&T" in text]
    assert not raw, raw
    if drive not in NOT_POSTED:
        assert any(shown in text for text in texts for shown in SHOWN), texts


def test_an_incident_title_is_unescaped_once_and_escaped_once(escaping_bot: RunningBot) -> None:
    """`DB <primary> down & failover`, as Slack sends it, is stored as typed and posted escaped once."""
    escaping_bot.command(slack_escaped('incident open "DB <primary> down & failover" sev=2'))
    escaping_bot.settle()
    (post,) = escaping_bot.bot_posts(CHANNEL)
    assert "DB &lt;primary&gt; down &amp; failover," in post["text"], post["text"]
    store = IncidentStore(escaping_bot.services.records)
    [incident] = store.in_period(0.0, 1e12)
    assert incident.title == "DB <primary> down & failover"


def test_a_run_result_shows_the_executor_words_as_text() -> None:
    """An executor's summary (a webhook's or a program's words) is escaped in the blocks and the fallback."""
    view = request_view(status="running")
    message = result_message(view, ExecutionResult(False, HOSTILE, HOSTILE, 0.2, 1))
    texts = [message.text, *_mrkdwn_texts(message.blocks)]
    assert not [(marker, text) for text in texts for marker in LIVE if marker in text]
    assert all("AT&T" not in text and "AT&amp;T" in text for text in texts), texts
