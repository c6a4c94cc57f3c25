"""Slack's assistant pane, end to end: signed events in, the fake's assistant.threads.* and chat.* out."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.answers.models import Answer
from bot.slack.assistant import GREETING, MAX_PROMPTS
from bot.slack.posting import WORKING
from bot.slack.questions import STATUS
from bot.wiring import Services
from tests.conftest import write_tree
from tests.slackbot import CHANNEL, USER, RunningBot, assert_valid_blocks, blocks_text, running_bot

ROOT = Path(__file__).resolve().parents[1]
ROLLBACK = "How do I roll back the fraud-scorer model in production?"


@pytest.fixture
def services(make_services: Callable[..., Services], small_kb: Path) -> Services:
    """The small knowledge base, answering what it can: these tests are about the pane, not abstention."""
    built = make_services(abstain_below=0.0)
    built.ingestor.run([small_kb])
    return built


def sections(message: dict[str, Any]) -> list[str]:
    """The texts of a message's section blocks, in order."""
    return [block["text"]["text"] for block in message.get("blocks") or [] if block["type"] == "section"]


def first_source(message: dict[str, Any]) -> str:
    """The line of the answer's source list that names source [1]."""
    return next(text for text in sections(message) if text.startswith("*[1]*"))


def runbook(title: str, reviewed: str, status: str = "accepted") -> str:
    """A runbook's Markdown with its front matter."""
    return f"""
        ---
        title: "{title}"
        kind: runbook
        status: {status}
        last_reviewed: {reviewed}
        ---
        # {title}

        Page the on-call engineer, then follow the checklist for this situation step by step.
        """


def runbooks(titles: Sequence[str]) -> dict[str, str]:
    """Current runbooks named `titles`, reviewed on successive days (the last one most recently)."""
    return {
        f"runbooks/book-{number}.md": runbook(title, f"2026-10-{10 + number:02d}")
        for number, title in enumerate(titles)
    }


def pane_for(make_services: Callable[..., Services], kb: Path) -> tuple[Services, list[dict[str, str]]]:
    """Services over `kb`, and the prompts the pane suggests on opening."""
    services = make_services()
    services.ingestor.run([kb])
    with running_bot(services) as bot:
        channel, thread = bot.open_pane()
        return services, bot.slack.assistant_thread(channel, thread).prompts


# -- opening the pane -----------------------------------------------------------------------------


def test_opening_the_pane_greets_and_suggests_questions_from_the_knowledge_base(bot: RunningBot) -> None:
    """assistant_thread_started: a greeting in the pane's thread, then up to four prompts from the runbooks
    and decision records, most recently reviewed first."""
    channel, thread = bot.open_pane()
    (greeting,) = bot.bot_posts(channel, thread)
    assert greeting["text"] == GREETING
    pane = bot.slack.assistant_thread(channel, thread)
    assert [prompt["title"] for prompt in pane.prompts] == [
        "Runbook: Model rollback",  # reviewed 2026-06-01; the others carry no review date
        "Decision: Drift thresholds, second version",
        "Runbook: Draining a GPU node",
    ]
    assert all(prompt["message"].endswith("?") for prompt in pane.prompts)
    calls = [call.method for call in bot.slack.calls()]
    assert calls.index("chat.postMessage") < calls.index("assistant.threads.setSuggestedPrompts")


def test_a_suggested_prompt_is_answered_from_the_document_it_names(bot: RunningBot) -> None:
    """Clicking a prompt sends its question in the pane; the answer's first source is that document."""
    channel, thread = bot.open_pane()
    prompts = bot.slack.assistant_thread(channel, thread).prompts
    assert prompts
    for prompt in prompts:
        channel, thread = bot.open_pane()
        asked = bot.say(prompt["message"], channel=channel, thread_ts=thread, mention=False)
        bot.settle()
        answer = bot.bot_posts(channel, thread)[-1]
        assert float(answer["ts"]) > float(asked)
        document = prompt["title"].split(": ", 1)[1]
        assert document in first_source(answer), (prompt, first_source(answer))


def test_at_most_four_prompts_from_the_most_recently_reviewed(
    make_services: Callable[..., Services], tmp_path: Path
) -> None:
    """Slack shows four prompts: they are the four runbooks reviewed last, newest first."""
    titles = [
        f"Restarting service {name}" for name in ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot")
    ]
    kb = write_tree(tmp_path / "kb", runbooks(titles))
    _, prompts = pane_for(make_services, kb)
    assert len(prompts) == MAX_PROMPTS
    assert [prompt["title"] for prompt in prompts] == [f"Runbook: {title}" for title in reversed(titles[2:])]


@pytest.mark.parametrize("status", ["superseded", "deprecated", "draft", "proposed"])
def test_documents_no_longer_in_force_are_not_suggested(
    make_services: Callable[..., Services], tmp_path: Path, status: str
) -> None:
    """A newer document whose advice is not in force gives way to an older current one."""
    kb = write_tree(
        tmp_path / "kb",
        {
            "runbooks/current.md": runbook("Current rollback procedure", "2026-10-01"),
            "runbooks/newer.md": runbook("Old rollback procedure", "2026-11-01", status),
        },
    )
    _, prompts = pane_for(make_services, kb)
    assert [prompt["title"] for prompt in prompts] == ["Runbook: Current rollback procedure"]


@pytest.mark.parametrize(
    ("title", "plain"),
    [
        pytest.param("Rotate keys <!channel> now", "Rotate keys now", id="broadcast"),
        pytest.param("Ask <@U0ADMIN|admin> or @here", "Ask admin or here", id="mentions"),
        pytest.param(
            "Rollback [click here](https://evil.example/x)", "Rollback click here", id="markdown-link"
        ),
        pytest.param(
            "Rollback <https://evil.example/x|the runbook>", "Rollback the runbook", id="slack-link"
        ),
        pytest.param("Rollback: https://evil.example/x or www.evil.example", "Rollback: or", id="bare-urls"),
    ],
)
def test_document_titles_become_plain_prompts(
    make_services: Callable[..., Services], tmp_path: Path, title: str, plain: str
) -> None:
    """Titles are untrusted: a prompt, sent as the person's message when clicked, has no mention or link."""
    kb = write_tree(tmp_path / "kb", runbooks([title]))
    services, prompts = pane_for(make_services, kb)
    assert services.catalog.documents()[0].title == title  # the hostile title really was ingested
    (prompt,) = prompts
    assert prompt["title"] == f"Runbook: {plain}"
    for text in prompt.values():
        assert not {"<", ">", "@", "|"} & set(text), text
        assert "://" not in text and "www." not in text and "](" not in text, text


def test_an_empty_knowledge_base_says_so_and_suggests_nothing(make_services: Callable[..., Services]) -> None:
    """Before any ingest the greeting says the knowledge base is empty, and no prompts are set."""
    with running_bot(make_services()) as bot:
        channel, thread = bot.open_pane()
        (greeting,) = bot.bot_posts(channel, thread)
        assert "knowledge base is empty" in greeting["text"]
        assert bot.slack.calls("assistant.threads.setSuggestedPrompts") == []


def test_a_thread_started_delivered_twice_is_greeted_once(bot: RunningBot) -> None:
    """Slack's retry of assistant_thread_started gets no second greeting."""
    event = bot.slack.open_assistant_thread(USER, CHANNEL)
    bot.event(event, event_id="EvPANE")
    bot.event(event, event_id="EvPANE", headers={"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "timeout"})
    bot.settle()
    thread = event["assistant_thread"]
    assert len(bot.bot_posts(thread["channel_id"], thread["thread_ts"])) == 1


def test_a_context_change_is_acknowledged_with_no_web_api_call(bot: RunningBot) -> None:
    """assistant_thread_context_changed (the person moved to another channel) costs Slack nothing."""
    channel, thread = bot.open_pane()
    bot.slack.reset_calls()
    bot.event(bot.slack.change_assistant_context(channel, thread, "COTHER"))
    bot.settle()
    assert bot.slack.calls() == []


# -- asking in the pane ---------------------------------------------------------------------------


def test_a_question_in_the_pane_shows_the_status_then_the_answer(bot: RunningBot) -> None:
    """The pane's status says Steward is searching, the cited answer follows in the thread, and the status
    goes when it is posted; no working reaction in the pane."""
    channel, thread = bot.open_pane()
    bot.say(ROLLBACK, channel=channel, thread_ts=thread, mention=False)
    bot.settle()
    (status,) = bot.slack.calls("assistant.threads.setStatus")
    assert (status.args["channel_id"], status.args["thread_ts"], status.args["status"]) == (
        channel,
        thread,
        STATUS,
    )
    answer = bot.bot_posts(channel, thread)[-1]
    (posted,) = bot.slack.calls("chat.postMessage")[1:]  # after the greeting
    assert status.at < posted.at and posted.args["thread_ts"] == thread
    assert "Model rollback" in first_source(answer)
    assert_valid_blocks(answer["blocks"])
    assert bot.slack.status(channel, thread) == ""
    assert WORKING not in json.dumps([call.args for call in bot.slack.calls("reactions.add")])


def test_the_first_question_titles_the_thread_and_a_follow_up_reads_it_in_context(bot: RunningBot) -> None:
    """The pane's history shows the first question as the thread's title; "what about the thresholds?"
    is answered about the rollback thresholds, as in a direct message."""
    channel, thread = bot.open_pane()
    bot.say(ROLLBACK, channel=channel, thread_ts=thread, mention=False)
    bot.settle()
    bot.say("what about the thresholds?", channel=channel, thread_ts=thread, mention=False)
    bot.settle()
    assert bot.slack.assistant_thread(channel, thread).title == ROLLBACK
    assert len(bot.slack.calls("assistant.threads.setTitle")) == 1
    answers = bot.bot_posts(channel, thread)[1:]  # after the greeting
    assert len(answers) == 2
    assert "shadow error rate doubles" in blocks_text(answers[1])


def test_the_pane_and_a_mention_make_the_same_answer_service_call(
    bot: RunningBot, services: Services
) -> None:
    """One answer path: the same question asked in a channel and in the pane reaches the answer service
    the same way and gets the same answer."""
    asked: list[tuple[str, tuple[str, ...]]] = []
    real_ask = services.answers.ask

    def recording(
        question: str, filters: Any = None, earlier: Sequence[str] = (), on_text: Any = None
    ) -> Answer:
        asked.append((question, tuple(earlier)))
        return real_ask(question, filters, earlier, on_text)

    services.answers.ask = recording  # type: ignore[method-assign]
    root = bot.say(ROLLBACK)
    channel, thread = bot.open_pane()
    bot.say(ROLLBACK, channel=channel, thread_ts=thread, mention=False)
    bot.settle()
    assert asked == [(ROLLBACK, ()), (ROLLBACK, ())]
    in_channel, in_pane = bot.bot_posts(CHANNEL, root)[0], bot.bot_posts(channel, thread)[-1]
    assert sections(in_channel) == sections(in_pane)


def test_a_failure_in_the_pane_is_told_and_clears_the_status(bot: RunningBot, services: Services) -> None:
    """An error while answering is said in the pane's thread, and the status does not linger."""

    def broken(*_args: object, **_kwargs: object) -> object:
        raise RuntimeError("index exploded")

    services.answers.ask = broken  # type: ignore[method-assign]
    channel, thread = bot.open_pane()
    bot.say(ROLLBACK, channel=channel, thread_ts=thread, mention=False)
    bot.settle()
    assert "Something went wrong" in bot.bot_posts(channel, thread)[-1]["text"]
    assert bot.slack.status(channel, thread) == ""


def test_the_slack_manifest_turns_the_pane_on() -> None:
    """deploy/slack/manifest.yaml enables the assistant view, its scope and its events."""
    manifest = yaml.safe_load((ROOT / "deploy" / "slack" / "manifest.yaml").read_text(encoding="utf-8"))
    view = manifest["features"]["assistant_view"]
    assert view["assistant_description"].strip()
    assert "assistant:write" in manifest["oauth_config"]["scopes"]["bot"]
    events = set(manifest["settings"]["event_subscriptions"]["bot_events"])
    assert {"assistant_thread_started", "assistant_thread_context_changed", "message.im"} <= events
